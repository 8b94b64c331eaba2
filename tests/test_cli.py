"""The `vektor` command, the seed scripts and `main.py`, run as a user would."""

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.databases import backends, temporary_database
from tests.support.processes import spawn, stop, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
STRONG_KEY = "Zx8qqqqqqqqqqKp2-w7VbN4mT_a9LcR5s-extra"


def run(args, cwd, env=None, timeout=60):
    environment = {**os.environ, "BCRYPT_ROUNDS": "4", **(env or {})}
    return subprocess.run(
        args,
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def vektor(*args, cwd, env=None):
    return run([sys.executable, "-m", "vektor", *args], cwd, env)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_init_config_creates_and_never_overwrites(tmp_path):
    result = vektor("init-config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    env = (tmp_path / ".env").read_text()
    key_line = next(line for line in env.splitlines() if line.startswith("SECRET_KEY="))
    assert len(key_line.split("=", 1)[1]) >= 40
    assert (tmp_path / ".env").stat().st_mode & 0o077 == 0
    models = json.loads((tmp_path / "config" / "model_configs.json").read_text())
    assert models[0]["provider"] == "local"
    assert json.loads((tmp_path / "config" / "mcp_servers.json").read_text()) == []
    assert (tmp_path / "config" / "adapters").is_dir()

    (tmp_path / "config" / "mcp_servers.json").write_text('[{"url": "http://127.0.0.1:9/mcp"}]')
    again = vektor("init-config", cwd=tmp_path)
    assert again.returncode == 0
    assert (tmp_path / ".env").read_text() == env
    assert "9/mcp" in (tmp_path / "config" / "mcp_servers.json").read_text()


def test_seed_init_config_script(tmp_path):
    result = run([sys.executable, str(ROOT / "scripts" / "init_config.py")], tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / ".env").exists()


@pytest.mark.parametrize("backend", backends())
async def test_init_db_and_create_user(tmp_path, backend):
    async with temporary_database(backend, tmp_path) as url:
        await asyncio.to_thread(_init_db_and_create_user, tmp_path, {"DATABASE_URL": url})


def _init_db_and_create_user(tmp_path, env):
    assert vektor("init-db", cwd=tmp_path, env=env).returncode == 0
    created = vektor(
        "create-user",
        "--email",
        "root@example.com",
        "--username",
        "rootadmin",
        "--password",
        "a long password",
        "--admin",
        cwd=tmp_path,
        env=env,
    )
    assert created.returncode == 0, created.stderr
    assert "admin" in created.stdout
    duplicate = vektor(
        "create-user",
        "--email",
        "ROOT@example.com",
        "--username",
        "other",
        "--password",
        "a long password",
        cwd=tmp_path,
        env=env,
    )
    assert duplicate.returncode == 1
    weak = vektor(
        "create-user",
        "--email",
        "w@example.com",
        "--username",
        "weak",
        "--password",
        "short",
        cwd=tmp_path,
        env=env,
    )
    assert weak.returncode == 2
    seeded = run(
        [
            sys.executable,
            str(ROOT / "scripts" / "startup.py"),
            "--user",
            "--email",
            "seed@example.com",
            "--username",
            "seedadmin",
            "--password",
            "another long one",
        ],
        tmp_path,
        env,
    )
    assert seeded.returncode == 0, seeded.stderr
    script_db = run([sys.executable, str(ROOT / "scripts" / "init_db.py")], tmp_path, env)
    assert script_db.returncode == 0, script_db.stderr


def test_production_refuses_weak_secret(tmp_path):
    result = run(
        [sys.executable, str(ROOT / "main.py"), "prod"], tmp_path, {"SECRET_KEY": "changethis"}
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr + result.stdout
    missing = run([sys.executable, str(ROOT / "main.py"), "prod"], tmp_path)
    assert missing.returncode != 0
    cors = run(
        [sys.executable, str(ROOT / "main.py"), "prod"],
        tmp_path,
        {"SECRET_KEY": STRONG_KEY, "BACKEND_CORS_ORIGINS": "*", "CORS_ALLOW_CREDENTIALS": "true"},
    )
    assert cors.returncode != 0
    assert "CORS" in cors.stderr + cors.stdout


@pytest.mark.parametrize(
    ("command", "extra_env"),
    [
        (["-m", "vektor", "serve"], {}),
        (["main.py", "prod", "--workers", "2"], {"SECRET_KEY": STRONG_KEY}),
    ],
    ids=["uvicorn", "gunicorn"],
)
def test_server_starts_with_no_env_file_and_serves(tmp_path, command, extra_env):
    """The embedded default: no .env, SQLite created and migrated on start."""
    port = free_port()
    args = [sys.executable, *[str(ROOT / c) if c == "main.py" else c for c in command]]
    args += ["--port", str(port), "--host", "127.0.0.1"]
    environment = {**os.environ, "BCRYPT_ROUNDS": "4", **extra_env}
    process = spawn(args, environment, tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(f"{base}/health", process)
        registered = httpx.post(
            f"{base}/auth/register",
            json={"email": "e2e@example.com", "username": "e2e", "password": "long enough pw"},
        )
        assert registered.status_code == 201
        tokens = httpx.post(
            f"{base}/auth/login", data={"username": "e2e", "password": "long enough pw"}
        ).json()
        # With several workers, any worker accepts the token (one shared key).
        for _ in range(6):
            me = httpx.get(
                f"{base}/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
            )
            assert me.status_code == 200
            assert me.json()["username"] == "e2e"
        # /metrics counts every request of every worker, whichever worker answers.
        for _ in range(4):
            scraped = httpx.get(f"{base}/metrics").text
            line = next(
                row
                for row in scraped.splitlines()
                if row.startswith("vektor_http_requests_total{")
                and 'route="/users/me"' in row
                and 'status="200"' in row
            )
            assert float(line.rsplit(" ", 1)[1]) == 6
    finally:
        stop(process)
    assert (tmp_path / "vektor.db").exists()
    for name in ("app.log", "api.log", "error.log"):
        assert (tmp_path / "logs" / name).exists()


@pytest.mark.parametrize(
    ("workers", "redis_url", "warned"),
    [(2, None, True), (1, None, False), (2, "redis://127.0.0.1:6379/0", False)],
)
def test_several_workers_without_redis_are_warned_about(
    monkeypatch, capsys, tmp_path, workers, redis_url, warned
):
    """Each worker would keep its own streams, feed and limits: say so before serving."""
    import vektor.server
    from vektor import cli

    served: list[int] = []
    monkeypatch.setattr(vektor.server, "run_gunicorn", lambda **kw: served.append(kw["workers"]))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTO_MIGRATE", "false")
    monkeypatch.setenv("SECRET_KEY", STRONG_KEY)
    if redis_url:
        monkeypatch.setenv("REDIS_URL", redis_url)
    else:
        monkeypatch.delenv("REDIS_URL", raising=False)
    assert cli.main(["serve", "--prod", "--workers", str(workers)]) == 0
    assert served == [workers]
    assert ("without REDIS_URL" in capsys.readouterr().err) is warned
