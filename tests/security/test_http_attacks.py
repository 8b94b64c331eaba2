"""Oversize and deeply nested bodies, foreign CORS origins, and an unexpected error that
must not leak a traceback."""

import httpx
import pytest
from asgi_lifespan import LifespanManager
from loguru import logger

from tests.conftest import make_settings


async def test_oversize_body_is_413_json(client):
    big = b"{" + b" " * (4 * 1024 * 1024) + b"}"
    response = await client.post(
        "/auth/register", content=big, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert "detail" in response.json()


async def test_oversize_chunked_body_is_413(client):
    async def chunks():
        for _ in range(50):
            yield b" " * 100_000

    response = await client.post(
        "/auth/register", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


async def test_deeply_nested_json_is_a_4xx(client):
    deep = "[" * 100_000 + "]" * 100_000
    response = await client.post(
        "/users/preferences", content=deep, headers={"content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500


@pytest.fixture
async def cors_client(database_url, tmp_path):
    settings = make_settings(database_url, tmp_path, backend_cors_origins=["https://app.example"])
    from vektor.app import create_app

    app = create_app(settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client


async def test_cors_allows_configured_origin_only(cors_client):
    preflight = {"Access-Control-Request-Method": "POST"}
    allowed = await cors_client.options(
        "/auth/login", headers={"Origin": "https://app.example", **preflight}
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    foreign = await cors_client.options(
        "/auth/login", headers={"Origin": "https://evil.example", **preflight}
    )
    assert "access-control-allow-origin" not in foreign.headers
    simple = await cors_client.get("/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers


async def test_unexpected_error_is_json_500_without_traceback(database_url, tmp_path):
    from vektor.app import create_app

    settings = make_settings(database_url, tmp_path)
    app = create_app(settings)

    async def explode() -> None:
        raise RuntimeError("secret internal detail")

    app.add_api_route("/test-explode", explode)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/test-explode", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error"}
    assert "secret internal detail" not in response.text
    assert response.headers["x-request-id"] == "boom-1"
    await logger.complete()
    errors = (tmp_path / "logs" / "error.log").read_text()
    assert "boom-1" in errors
    assert "RuntimeError" in errors


async def test_no_origin_is_allowed_by_default(client):
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    response = await client.options("/auth/login", headers=preflight)
    assert "access-control-allow-origin" not in response.headers
    simple = await client.get("/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers
