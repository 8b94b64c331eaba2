"""The `vektor` command: serve, init-config, init-db, create-user, admin."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vektor.core.config import (
    EPHEMERAL_KEY_ENV,
    Settings,
    SettingsError,
    generate_secret_key,
    get_settings,
)

DEFAULT_MODEL_CONFIGS = [
    {
        "name": "smollm2",
        "provider": "local",
        "model": "smollm2-135m-instruct",
        "description": "SmolLM2 135M Instruct, runs on this machine",
    }
]


def _load_settings(production: bool = False) -> Settings:
    if production:
        os.environ["VEKTOR_ENV"] = "production"
    get_settings.cache_clear()
    try:
        return get_settings()
    except (SettingsError, ValidationError) as exc:
        raise SystemExit(f"vektor: invalid settings: {exc}") from None


SHARED_STATE_WARNING = (
    "vektor: %d workers without REDIS_URL: each keeps its own chat streams, change feed and "
    "rate limits, so resuming or cancelling an answer, /sync/events and the limits only "
    "work within one worker; set REDIS_URL to share them"
)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the HTTP server (Uvicorn; Gunicorn with Uvicorn workers for --workers > 1 or --prod)."""
    settings = _load_settings(production=args.prod)
    if settings.secret_key_is_ephemeral:
        # Every worker process must sign with the same key.
        os.environ[EPHEMERAL_KEY_ENV] = settings.secret_key
    if settings.auto_migrate:
        from vektor.core.migrations import upgrade

        upgrade(settings.database_url)
    if args.prod or args.workers > 1:
        from vektor.server import run_gunicorn

        if args.workers > 1 and not settings.redis_url:
            print(SHARED_STATE_WARNING % args.workers, file=sys.stderr)
            # A revocation in one worker could not reach another's cached sessions.
            os.environ["SESSION_CACHE"] = "off"

        run_gunicorn(
            host=args.host,
            port=args.port,
            workers=args.workers,
            graceful_timeout=int(settings.shutdown_grace_seconds) + 10,
        )
        return 0
    import uvicorn

    from vektor.server import WS_OPTIONS

    uvicorn.run(
        "vektor.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        reload=args.reload,
        reload_dirs=[str(Path(__file__).resolve().parent)] if args.reload else None,
        log_config=None,
        access_log=False,
        # X-Forwarded-For is the app's to judge (TRUSTED_PROXIES); Uvicorn's own middleware
        # would believe it from any loopback caller.
        proxy_headers=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds) + 10,
        **WS_OPTIONS,
    )
    return 0


def _write_new(path: Path, content: str, *, mode: int = 0o644) -> bool:
    """Create a file only if it does not exist yet."""
    if path.exists():
        print(f"kept     {path}")
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content)
    print(f"created  {path}")
    return True


def cmd_init_config(args: argparse.Namespace) -> int:
    """Write `.env` with a new SECRET_KEY and a default config folder; never overwrite."""
    env_lines = [
        "# Vektor settings; see README.md for every key.",
        f"SECRET_KEY={generate_secret_key()}",
        "DATABASE_URL=sqlite+aiosqlite:///./vektor.db",
        "LOG_LEVEL=INFO",
        "LOG_FORMAT=structured",
        "",
    ]
    _write_new(Path(args.env_file), "\n".join(env_lines), mode=0o600)
    config_dir = Path(args.config_dir or os.environ.get("VEKTOR_CONFIG_DIR", "./config"))
    _write_new(config_dir / "model_configs.json", json.dumps(DEFAULT_MODEL_CONFIGS, indent=2))
    _write_new(config_dir / "mcp_servers.json", "[]\n")
    (config_dir / "adapters").mkdir(parents=True, exist_ok=True)
    return 0


def cmd_init_db(args: argparse.Namespace) -> int:
    """Apply every migration (alembic upgrade head)."""
    from vektor.core.migrations import upgrade

    settings = _load_settings()
    upgrade(settings.database_url)
    print("database is at the latest schema")
    return 0


def cmd_create_user(args: argparse.Namespace) -> int:
    """Create an account (optionally an admin) with the same rules as /auth/register."""
    from vektor.auth.schemas import UserCreate

    settings = _load_settings()
    try:
        body = UserCreate(email=args.email, username=args.username, password=args.password)
    except ValidationError as exc:
        print(f"vektor: invalid user: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_create_user(settings, body, admin=args.admin))


async def _create_user(settings: Settings, body: object, *, admin: bool) -> int:
    from vektor.auth.schemas import UserCreate
    from vektor.auth.service import create_user
    from vektor.core.database import create_engine, create_sessionmaker, session_scope
    from vektor.core.errors import Conflict

    assert isinstance(body, UserCreate)
    engine = create_engine(settings.database_url)
    try:
        async for session in session_scope(create_sessionmaker(engine)):
            user = await create_user(
                session,
                settings=settings,
                email=body.email,
                username=body.username,
                password=body.password,
                is_admin=admin,
            )
        print(f"created {'admin ' if admin else ''}user {user.username} ({user.id})")
        return 0
    except Conflict as exc:
        print(f"vektor: {exc.detail}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()


QUOTA_OPTIONS = ("tokens_per_day", "requests_per_day", "budget_per_month")


def _limit(convert: Any) -> Any:
    """An argparse type: a number, or `default` (None: the DEFAULT_* setting)."""

    def parse(text: str) -> object:
        if text.strip().lower() == "default":
            return None
        try:
            return convert(text)
        except (ValueError, InvalidOperation):
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None

    return parse


def cmd_admin(args: argparse.Namespace) -> int:
    """`vektor admin users|set-quota|disable|enable`: the service functions behind
    /admin/users, on the database of the settings."""
    from vektor.admin.schemas import AdminUserUpdate

    settings = _load_settings()
    changes: AdminUserUpdate | None = None
    try:
        if args.action == "set-quota":
            quota = {name: getattr(args, name) for name in QUOTA_OPTIONS if hasattr(args, name)}
            if not quota:
                print("vektor: give at least one limit to set", file=sys.stderr)
                return 2
            changes = AdminUserUpdate.model_validate({"quota": quota})
        elif args.action in ("disable", "enable"):
            changes = AdminUserUpdate(disabled=args.action == "disable")
    except ValidationError as exc:
        print(f"vektor: invalid quota: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_admin(settings, args, changes))


async def _forget_credentials(settings: Settings, user_id: uuid.UUID) -> None:
    """Make running instances that share Redis forget the account's cached sessions and
    keys at once; a server without Redis holds them at most SESSION_CACHE's minute."""
    from vektor.core.credential_cache import revocation_epochs

    epochs = revocation_epochs(settings)
    await epochs.bump(user_id)
    redis = getattr(epochs, "redis", None)
    if redis is not None:
        await redis.aclose()


async def _admin(settings: Settings, args: argparse.Namespace, changes: object) -> int:
    from vektor.admin import service
    from vektor.admin.schemas import AdminUserUpdate
    from vektor.core.database import create_engine, create_sessionmaker, session_scope
    from vektor.core.errors import Conflict, NotFound

    engine = create_engine(settings.database_url)
    try:
        async for session in session_scope(create_sessionmaker(engine)):
            if isinstance(changes, AdminUserUpdate):
                user_id = await service.user_id_by_email(session, email=args.email)
                users = [await service.update_user(session, user_id=user_id, changes=changes)]
                if changes.disabled:
                    await session.commit()
                    await _forget_credentials(settings, user_id)
            else:
                users = await service.list_users(
                    session, query=args.q, limit=args.limit, offset=args.offset
                )
        for user in users:
            print(user.model_dump_json() if args.json else _user_line(user))
        return 0
    except (NotFound, Conflict) as exc:
        print(f"vektor: {exc.detail}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()


def _user_line(user: Any) -> str:
    flags = ",".join(f for f, on in (("admin", user.is_admin), ("disabled", user.disabled)) if on)
    quota = " ".join(
        f"{name}={'default' if value is None else value}"
        for name, value in user.quota.model_dump().items()
    )
    month = user.usage_month
    return (
        f"{user.email}\t{user.username}\t{flags or '-'}\t{quota}\t"
        f"month: {month.requests} requests, {month.tokens} tokens, ${month.cost}"
    )


def _admin_parser(sub: Any) -> None:
    admin = sub.add_parser("admin", help="list and change accounts (as /admin/users does)")
    actions = admin.add_subparsers(dest="action", required=True)
    users = actions.add_parser("users", help="list accounts with their quotas and usage")
    users.add_argument("--q", default=None, help="part of an email or username")
    users.add_argument("--limit", type=int, default=500)
    users.add_argument("--offset", type=int, default=0)
    quota = actions.add_parser("set-quota", help="set a user's limits (`default`: the default)")
    quota.add_argument("email")
    for name, convert in zip(QUOTA_OPTIONS, (int, int, Decimal), strict=True):
        option = "--" + name.replace("_", "-")
        quota.add_argument(option, dest=name, type=_limit(convert), default=argparse.SUPPRESS)
    for action, text in (("disable", "disable an account"), ("enable", "enable an account")):
        actions.add_parser(action, help=text).add_argument("email")
    for parser in actions.choices.values():
        parser.add_argument("--json", action="store_true", help="one JSON object per line")
    admin.set_defaults(func=cmd_admin)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="vektor", description="Vektor backend")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    serve.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "1")))
    serve.add_argument("--reload", action="store_true", help="restart on code changes")
    serve.add_argument("--prod", action="store_true", help="production mode under Gunicorn")
    serve.set_defaults(func=cmd_serve)

    init_config = sub.add_parser("init-config", help="write .env and config/ if missing")
    init_config.add_argument("--env-file", default=".env")
    init_config.add_argument("--config-dir", default=None)
    init_config.set_defaults(func=cmd_init_config)

    init_db = sub.add_parser("init-db", help="apply database migrations")
    init_db.set_defaults(func=cmd_init_db)

    create = sub.add_parser("create-user", help="create an account")
    create.add_argument("--email", required=True)
    create.add_argument("--username", required=True)
    create.add_argument("--password", required=True)
    create.add_argument("--admin", action="store_true")
    create.set_defaults(func=cmd_create_user)
    _admin_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `vektor` command."""
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
