"""The per-process cache of live sessions and API keys: what it remembers, that every
revocation makes it forget at once, its bounds, and the database when Redis is gone."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import update

from tests.conftest import bearer, login, make_settings, register
from tests.support.revocations import PATHS, play
from tests.support.upstream import free_port
from vektor.app import create_app
from vektor.auth.models import UserSession
from vektor.core.credential_cache import CredentialCache, LocalEpochs, RedisEpochs
from vektor.state import state_of


async def _revoke_behind_the_app(app: FastAPI, session_id: str) -> None:
    """Revoke a session in the database only, as if from a process that tells no one."""
    async with state_of(app).sessionmaker() as session, session.begin():
        await session.execute(
            update(UserSession)
            .where(UserSession.id == uuid.UUID(session_id))
            .values(revoked_at=datetime.now(UTC), revoked_reason="test")
        )


def _session_id(app: FastAPI, tokens: dict[str, Any]) -> str:
    from vektor.core.security import decode_access_token

    settings = state_of(app).settings
    claims = decode_access_token(
        tokens["access_token"],
        secret_key=settings.secret_key,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    return str(claims.session_id)


async def _served(settings: Any) -> tuple[FastAPI, LifespanManager, httpx.AsyncClient]:
    application = create_app(settings)
    manager = LifespanManager(application)
    await manager.__aenter__()
    transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 50000))
    client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
    return application, manager, client


async def test_a_live_session_is_remembered_and_only_the_database_forgets_it_when_off(
    app: FastAPI, client: httpx.AsyncClient, database_url: str, tmp_path: Path
) -> None:
    await register(client, "alice")
    tokens = await login(client, "alice")
    assert (await client.get("/chat/models", headers=bearer(tokens))).status_code == 200
    # A revocation nobody announces is not seen while the entry lives: the cache answered.
    await _revoke_behind_the_app(app, _session_id(app, tokens))
    assert (await client.get("/chat/models", headers=bearer(tokens))).status_code == 200

    # With SESSION_CACHE off the same database change is seen on the next request.
    settings = make_settings(database_url, tmp_path, session_cache=False)
    application, manager, other = await _served(settings)
    try:
        fresh = await login(other, "alice")
        assert (await other.get("/chat/models", headers=bearer(fresh))).status_code == 200
        await _revoke_behind_the_app(application, _session_id(app, fresh))
        assert (await other.get("/chat/models", headers=bearer(fresh))).status_code == 401
    finally:
        await other.aclose()
        await manager.__aexit__(None, None, None)


@pytest.mark.parametrize("path", PATHS)
async def test_every_revocation_takes_effect_at_once(client: httpx.AsyncClient, path: str) -> None:
    await play(client, client, f"user{PATHS.index(path)}", path)


async def test_the_public_revocation_function_makes_the_user_credentials_stale(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """What disabling a user calls once the change is committed."""
    from vektor.auth.dependencies import credentials_revoked

    await register(client, "alice")
    tokens = await login(client, "alice")
    assert (await client.get("/chat/models", headers=bearer(tokens))).status_code == 200
    await _revoke_behind_the_app(app, _session_id(app, tokens))

    class Connection:  # what the function reads: the app
        def __init__(self, application: FastAPI) -> None:
            self.app = application

    await credentials_revoked(Connection(app), uuid.uuid4())  # type: ignore[arg-type]
    assert (await client.get("/chat/models", headers=bearer(tokens))).status_code == 401


def _found(user: uuid.UUID, expires: float | None = None) -> Any:
    async def load() -> tuple[uuid.UUID, str, float | None]:
        load.calls += 1  # type: ignore[attr-defined]
        return user, "v", expires

    load.calls = 0  # type: ignore[attr-defined]
    return load


async def test_entries_are_bounded_in_number_and_end_with_their_expiry() -> None:
    cache: CredentialCache[str, str] = CredentialCache(LocalEpochs(), max_entries=3, lifetime_s=60)
    user = uuid.uuid4()
    loads = {name: _found(user) for name in "abcd"}
    for name in "abcd":
        assert await cache.get(name, user, loads[name]) == (user, "v")
    assert len(cache) == 3
    await cache.get("a", user, loads["a"])  # the oldest was evicted: asked again
    await cache.get("d", user, loads["d"])  # still held: not asked
    assert loads["a"].calls == 2
    assert loads["d"].calls == 1

    # An expired credential is not kept; one expiring soon is kept only until then.
    gone, soon = _found(user, time.time() - 1), _found(user, time.time() + 0.2)
    await cache.get("gone", user, gone)
    await cache.get("gone", user, gone)
    assert gone.calls == 2
    await cache.get("soon", user, soon)
    await cache.get("soon", user, soon)
    assert soon.calls == 1
    await asyncio.sleep(0.3)
    await cache.get("soon", user, soon)
    assert soon.calls == 2


async def test_an_owner_learned_from_the_database_is_confirmed_once_more() -> None:
    """An API key's owner is known only after the database answered: the epoch read after
    that answer cannot vouch for it, so the next use asks the database once more."""
    cache: CredentialCache[str, str] = CredentialCache(LocalEpochs(), max_entries=10, lifetime_s=60)
    load = _found(uuid.uuid4())
    for _ in range(4):
        await cache.get("key", None, load)
    assert load.calls == 2


async def test_with_redis_unreachable_the_database_answers(
    app: FastAPI, database_url: str, tmp_path: Path
) -> None:
    """A Redis on a port nobody listens on: every request asks the database, nothing is
    cached meanwhile, a revocation still works, no 500."""
    port = free_port()
    epochs = RedisEpochs(Redis.from_url(f"redis://127.0.0.1:{port}/0"), "t")
    cache: CredentialCache[str, str] = CredentialCache(epochs, max_entries=10, lifetime_s=60)
    user = uuid.uuid4()
    load = _found(user)
    for _ in range(3):
        assert await cache.get("s", user, load) == (user, "v")
    assert load.calls == 3
    assert len(cache) == 0
    await epochs.bump(user)  # logged, not raised
    await epochs.aclose()

    settings = make_settings(database_url, tmp_path, redis_url=f"redis://127.0.0.1:{port}/0")
    _, manager, client = await _served(settings)
    try:
        await register(client, "alice")
        tokens = await login(client, "alice")
        for _ in range(2):
            assert (await client.get("/users/me", headers=bearer(tokens))).status_code == 200
        out = await client.post("/auth/logout", json={"refresh_token": tokens["refresh_token"]})
        assert out.status_code == 200
        assert (await client.get("/users/me", headers=bearer(tokens))).status_code == 401
    finally:
        await client.aclose()
        await manager.__aexit__(None, None, None)
