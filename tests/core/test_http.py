"""Cross-cutting HTTP behaviour: request ids, body cap, CORS, errors, logs."""

import json
from datetime import datetime

import httpx
import pytest
from asgi_lifespan import LifespanManager
from loguru import logger

from tests.conftest import PASSWORD, make_settings


async def test_request_id_generated_and_echoed(client):
    generated = await client.get("/health")
    assert len(generated.headers["x-request-id"]) >= 16
    echoed = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    unsafe = await client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert unsafe.headers["x-request-id"] != "bad id\twith spaces"


async def test_request_id_on_errors(client):
    response = await client.get("/users/me")
    assert response.status_code == 401
    assert response.headers["x-request-id"]
    missing = await client.get("/no/such/route")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Not Found"}
    assert missing.headers["x-request-id"]


async def test_logs_exist_with_one_api_line_per_request_and_no_secrets(client, settings):
    await client.post(
        "/auth/register",
        json={"email": "log@example.com", "username": "logger", "password": PASSWORD},
    )
    tokens = (
        await client.post("/auth/login", data={"username": "logger", "password": PASSWORD})
    ).json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}", "X-Request-ID": "req-42"}
    me = (await client.get("/users/me?x=1", headers=headers)).json()
    await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    await logger.complete()

    log_dir = settings.log_dir
    for name in ("app.log", "api.log", "error.log"):
        assert (log_dir / name).exists(), name
    lines = [json.loads(line) for line in (log_dir / "api.log").read_text().splitlines()]
    entry = next(line for line in lines if line["request_id"] == "req-42")
    assert entry["method"] == "GET"
    assert entry["path"] == "/users/me"
    assert entry["status"] == 200
    assert entry["duration_ms"] >= 0
    assert entry["user_id"] == me["id"]
    assert entry["client"] == "127.0.0.1"
    assert (entry["level"], entry["logger"], entry["channel"]) == (
        "INFO",
        "vektor.core.middleware",
        "api",
    )
    assert entry["message"].startswith("GET /users/me 200 ")
    assert datetime.fromisoformat(entry["time"]).tzinfo is not None
    everything = "".join(p.read_text() for p in log_dir.iterdir() if p.is_file())
    for secret in (PASSWORD, tokens["access_token"], tokens["refresh_token"]):
        assert secret not in everything


async def test_simple_log_format(database_url, tmp_path):
    from vektor.app import create_app

    settings = make_settings(database_url, tmp_path, log_format="simple")
    app = create_app(settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await client.get("/health", headers={"X-Request-ID": "simple-1"})
    await logger.complete()
    line = (tmp_path / "logs" / "api.log").read_text().splitlines()[-1]
    assert not line.startswith("{")
    assert "GET /health 200" in line
    assert "simple-1" in line


async def test_openapi_has_tags_and_operation_ids(client):
    schema = (await client.get("/openapi.json")).json()
    login = schema["paths"]["/auth/login"]["post"]
    assert login["tags"] == ["auth"]
    assert login["operationId"] == "login"
    assert schema["paths"]["/users/me"]["get"]["tags"] == ["users"]
    assert (await client.get("/docs")).status_code == 200
    assert (await client.get("/redoc")).status_code == 200


async def test_logs_rotate_and_compress(database_url, tmp_path):
    from vektor.app import create_app

    settings = make_settings(database_url, tmp_path, log_rotation="2 KB")
    app = create_app(settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for _ in range(40):
                await client.get("/health")
    await logger.complete()
    rotated = list((tmp_path / "logs").glob("api.*.gz"))
    assert rotated, list((tmp_path / "logs").iterdir())
    assert (tmp_path / "logs" / "api.log").exists()


async def test_collector_is_settled_after_start(database_url, tmp_path):
    """Served processes freeze what start-up built and collect young objects less often."""
    import gc

    from vektor.app import GC_THRESHOLD, create_app

    threshold = gc.get_threshold()
    app = create_app(make_settings(database_url, tmp_path, gc_freeze=True))
    try:
        async with LifespanManager(app):
            assert gc.get_freeze_count() > 0
            assert gc.get_threshold() == GC_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


async def test_log_lines_are_written_by_a_thread_in_order_and_together():
    import time

    from vektor.core.logging import LineWriter, QueuedSink

    written: list[str] = []

    def slow_disk(line: str) -> None:
        time.sleep(0.05)
        written.append(line)

    writer = LineWriter()
    sink_id = logger.add(
        QueuedSink(writer, slow_disk), format="{message}", filter=lambda r: "qs" in r["extra"]
    )
    try:
        started = time.perf_counter()
        for n in range(5):
            logger.bind(qs=True).info("line {}", n)
        assert time.perf_counter() - started < 0.05  # nobody waited on the disk
        await logger.complete()
        # in order; lines queued together are written together
        assert "".join(written) == "".join(f"line {n}\n" for n in range(5))
        assert len(written) < 5
        logger.bind(qs=True).info("last")
    finally:
        logger.remove(sink_id)  # writes what is queued first
    assert written[-1] == "last\n"
    writer.stop()


@pytest.mark.parametrize("path", ["/", "/docs", "/redoc"])
async def test_pages_carry_security_headers(client, path):
    page = await client.get(path)
    assert page.status_code == 200
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    policy = dict(
        part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert "'unsafe-inline'" not in policy["script-src"]
    assert "'sha256-" in policy["script-src"] or path == "/redoc"  # ReDoc has no inline script
