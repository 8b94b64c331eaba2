"""PostgreSQL restarted under a serving process: 503 at once while it is down, recovery by
itself, no committed write lost. The database server is the test's own."""

import os
import time

import httpx
import pytest

from tests.support import postgres
from tests.support.processes import serve_vektor, stop, wait_healthy
from tests.support.upstream import free_port

pytestmark = pytest.mark.skipif(not postgres.available(), reason="needs initdb and pg_ctl")
PASSWORD = "long enough password"


@pytest.fixture
def own_postgres():
    server = postgres.OwnPostgres()
    server.init()
    server.start()
    yield server
    server.remove()


def _serve(url, folder):
    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "BCRYPT_ROUNDS": "4", "LOG_DIR": str(folder)}
    return serve_vektor(port, env, folder), f"http://127.0.0.1:{port}"


def test_postgres_restart_while_serving(own_postgres, tmp_path):
    process, base = _serve(own_postgres.url(), tmp_path)
    try:
        wait_healthy(f"{base}/health/ready", process, deadline_s=60)
        with httpx.Client(base_url=base, timeout=10) as client:
            account = {"email": "pg@example.com", "username": "pgrestart", "password": PASSWORD}
            assert client.post("/auth/register", json=account).status_code == 201
            login = client.post("/auth/login", data={"username": "pgrestart", "password": PASSWORD})
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            saved = client.put("/users/preferences", headers=headers, json={"theme": "light"})
            assert saved.status_code == 200  # committed before the outage

            own_postgres.stop()
            for path in ("/users/me", "/users/preferences", "/chat/history"):
                started = time.monotonic()
                response = client.get(path, headers=headers)
                assert response.status_code == 503, (path, response.text)
                assert time.monotonic() - started < 5  # fails fast, does not hang
            assert client.get("/health").status_code == 503
            assert client.get("/health/ready").status_code == 503
            assert client.get("/health/live").status_code == 200

            own_postgres.start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if client.get("/users/preferences", headers=headers).status_code == 200:
                    break
                time.sleep(0.2)
            preferences = client.get("/users/preferences", headers=headers)
            assert preferences.status_code == 200  # the pool recovered by itself
            assert preferences.json()["theme"] == "light"  # nothing committed was lost
            assert client.get("/health").status_code == 200
    finally:
        stop(process)
