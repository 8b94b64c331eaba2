"""The container files: what can be checked without a Docker engine. The compose file
parses and wires migrations before the backend; the entrypoint runs outside Docker."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from tests.support.processes import spawn, stop, wait_healthy
from tests.support.upstream import free_port
from tests.test_cli import STRONG_KEY

ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
VEKTOR_BIN = str(Path(sys.executable).parent / "vektor")


def test_compose_file_wires_the_services():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "migrate", "backend"}
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"]
    backend = services["backend"]
    assert backend["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert backend["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["migrate"]["command"] == ["migrate"]
    assert backend["environment"]["DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert backend["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert set(compose["volumes"]) >= {"postgres-data", "backups"}


def test_dockerfile_is_slim_and_non_root():
    text = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    assert "USER vektor" in text
    assert "uv sync --locked --no-dev" in text
    assert "HEALTHCHECK" in text
    assert "/health/ready" in text


def _environment(tmp_path, **extra):
    return {
        **os.environ,
        "VEKTOR_BIN": VEKTOR_BIN,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'vektor.db'}",
        "SECRET_KEY": STRONG_KEY,
        "BCRYPT_ROUNDS": "4",
        "LOG_DIR": str(tmp_path / "logs"),
        **extra,
    }


def test_entrypoint_migrates_then_serves_without_migrating(tmp_path):
    env = _environment(tmp_path)
    migrated = subprocess.run(
        ["sh", str(ENTRYPOINT), "migrate"], env=env, cwd=tmp_path, capture_output=True, timeout=120
    )
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    with sqlite3.connect(tmp_path / "vektor.db") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert {"alembic_version", "user", "api_key"} <= tables

    port = free_port()
    server = spawn(
        ["sh", str(ENTRYPOINT), "serve"],
        {**env, "HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "1"},
        tmp_path,
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health/ready", server, deadline_s=60)
        assert httpx.get(f"http://127.0.0.1:{port}/health/live").json() == {"status": "ok"}
    finally:
        stop(server)


def test_entrypoint_refuses_a_weak_key_in_production(tmp_path):
    env = _environment(tmp_path, SECRET_KEY="changeme", HOST="127.0.0.1", PORT=str(free_port()))
    refused = subprocess.run(
        ["sh", str(ENTRYPOINT), "serve"], env=env, cwd=tmp_path, capture_output=True, timeout=60
    )
    assert refused.returncode != 0
    assert b"SECRET_KEY" in refused.stderr
