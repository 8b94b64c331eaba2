"""PostgreSQL restarted under a serving process: 503 at once while it is down, recovery by
itself, no committed write lost. The database server is the test's own."""

import collections
import itertools
import json
import threading
import time

import httpx
import pytest

from tests.conftest import parse_sse, scripted
from tests.support import postgres
from tests.support.processes import serve_vektor, stop, vektor_env, wait_healthy
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


def _serve(url, folder, **extra):
    port = free_port()
    env = vektor_env(folder, DATABASE_URL=url, LOG_DIR=str(folder), **extra)
    return serve_vektor(port, env, folder), f"http://127.0.0.1:{port}"


def _sign_in(client: httpx.Client, username: str) -> dict[str, str]:
    """Register `username` and log in; the bearer header."""
    account = {"email": f"{username}@example.com", "username": username, "password": PASSWORD}
    assert client.post("/auth/register", json=account).status_code == 201
    login = client.post("/auth/login", data={"username": username, "password": PASSWORD})
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def test_postgres_restart_while_serving(own_postgres, tmp_path):
    process, base = _serve(own_postgres.url(), tmp_path)
    try:
        wait_healthy(f"{base}/health/ready", process, deadline_s=60)
        with httpx.Client(base_url=base, timeout=10) as client:
            headers = _sign_in(client, "pgrestart")
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


def test_postgres_restart_under_load(own_postgres, tmp_path, upstream):
    """Logins (each one a committed session and device) and reads keep coming, and an
    answer is being streamed, while the database stops and starts: every answer is a 200
    or a fast 503, every login that got its 200 is still there afterwards, and the answer
    that finished during the outage is stored once the database is back."""
    config = tmp_path / "config"
    config.mkdir()
    models = [
        scripted(upstream, "chunks=40;delay=0.05;text=w", name="slow"),
        scripted(upstream, "chunks=2;text=w", name="quick"),
    ]
    (config / "model_configs.json").write_text(json.dumps(models))
    process, base = _serve(
        own_postgres.url(),
        tmp_path,
        RATE_LIMIT_AUTH="100000/minute",
        VEKTOR_CONFIG_DIR=str(config),
    )
    stopping = threading.Event()
    streamed: list[dict] = []
    completed: list[str] = []
    answers: list[tuple[str, int, float]] = []  # (device or "read", status, seconds)

    def writer(name: str) -> None:
        with httpx.Client(base_url=base, timeout=10) as client:
            for i in itertools.count():
                if stopping.is_set():
                    return
                device = f"{name}-{i}"
                form = {"username": "loaded", "password": PASSWORD, "device_id": device}
                started = time.monotonic()
                status = client.post("/auth/login", data=form).status_code
                answers.append((device, status, time.monotonic() - started))

    def reader(headers: dict[str, str]) -> None:
        with httpx.Client(base_url=base, timeout=10) as client:
            while not stopping.is_set():
                started = time.monotonic()
                status = client.get("/users/me", headers=headers).status_code
                answers.append(("read", status, time.monotonic() - started))

    def chat(headers: dict[str, str]) -> None:
        """One answer of about two seconds, started just before the outage."""
        time.sleep(1.0)
        body = {"messages": [{"role": "user", "content": "hello"}], "model": "slow"}
        with httpx.stream(
            "POST", f"{base}/chat/stream", json=body, headers=headers, timeout=30
        ) as response:
            assert response.status_code == 200
            streamed.extend(parse_sse(response.read().decode()))

    def completion(headers: dict[str, str]) -> None:
        """The same through /v1, which stores only its usage row."""
        time.sleep(1.0)
        body = {"messages": [{"role": "user", "content": "hi"}], "model": "slow", "stream": True}
        with httpx.stream(
            "POST", f"{base}/v1/chat/completions", json=body, headers=headers, timeout=30
        ) as response:
            assert response.status_code == 200
            completed.append(response.read().decode())

    try:
        wait_healthy(f"{base}/health/ready", process, deadline_s=60)
        with httpx.Client(base_url=base, timeout=10) as client:
            headers = _sign_in(client, "loaded")
            # a first /v1 row: the connection usage rows are written on is now held
            quick = {"messages": [{"role": "user", "content": "hi"}], "model": "quick"}
            assert client.post("/v1/chat/completions", json=quick, headers=headers).is_success
        threads = [threading.Thread(target=writer, args=(f"w{n}",)) for n in range(3)]
        threads.append(threading.Thread(target=reader, args=(headers,)))
        threads.append(threading.Thread(target=chat, args=(headers,)))
        threads.append(threading.Thread(target=completion, args=(headers,)))
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        own_postgres.stop()
        outage = len(answers)
        time.sleep(2)
        own_postgres.start()
        restarted = len(answers)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if sum(status == 200 for _, status, _ in answers[restarted:]) >= 20:
                break
            time.sleep(0.2)
        stopping.set()
        for thread in threads:
            thread.join(timeout=15)

        statuses = collections.Counter(status for _, status, _ in answers)
        assert set(statuses) <= {200, 503}, statuses
        assert statuses[503] > 0, statuses  # the outage was seen
        assert all(status == 200 for _, status, _ in answers[:outage][:50])
        assert sum(status == 200 for _, status, _ in answers[restarted:]) >= 20, statuses
        slowest = max(seconds for _, _, seconds in answers)
        assert slowest < 5, slowest  # fails fast, never hangs
        acknowledged = {d for d, status, _ in answers if d != "read" and status == 200}
        with httpx.Client(base_url=base, timeout=10) as client:
            devices = client.get("/sync/devices", headers=headers).json()
        missing = acknowledged - {d["id"] for d in devices}
        assert not missing, f"{len(missing)} acknowledged logins lost"

        assert streamed[-1]["type"] == "done", streamed[-3:]
        assert "error" not in {e["type"] for e in streamed}, streamed
        conversation_id = streamed[0]["conversation_id"]
        deadline = time.monotonic() + 20
        with httpx.Client(base_url=base, timeout=10) as client:
            while time.monotonic() < deadline:
                stored = client.get(f"/chat/history/{conversation_id}", headers=headers)
                if stored.status_code == 200:
                    break
                time.sleep(0.2)
        messages = stored.json()["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant"]
        assert messages[1]["content"] == "".join(
            e["content"] for e in streamed if e["type"] == "delta"
        )
        # Both answers' usage rows: the /v1 one was written when its end was sent.
        assert completed[0].rstrip().endswith("data: [DONE]"), completed[0][-200:]
        with httpx.Client(base_url=base, timeout=10) as client:
            usage = client.get("/users/me/usage", headers=headers).json()
        assert usage["totals"]["requests"] == 3, usage
    finally:
        stopping.set()
        stop(process)


async def test_idle_connection_is_pinged_after_a_restart(own_postgres, monkeypatch):
    """A pooled connection idle past IDLE_PING_SECONDS is pinged before use, so the first
    request after a restart gets a fresh connection; without the ping it would fail."""
    from sqlalchemy import text

    from vektor.core import database

    async def first_query_after_restart(idle_ping_s: float) -> str:
        monkeypatch.setattr(database, "IDLE_PING_SECONDS", idle_ping_s)
        engine = database.create_engine(own_postgres.url(), pool_size=1, max_overflow=0)
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            own_postgres.stop()
            own_postgres.start()
            try:
                async with engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))
            except Exception as exc:
                return type(exc).__name__
            return "ok"
        finally:
            await engine.dispose()

    assert await first_query_after_restart(0.0) == "ok"
    assert await first_query_after_restart(3600.0) != "ok"
