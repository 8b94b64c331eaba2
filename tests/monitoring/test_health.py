"""GET /health, and what the API does while the database is down."""

import httpx
import pytest
from asgi_lifespan import LifespanManager

from tests.conftest import make_settings
from vektor.app import create_app


async def test_health_ok(client):
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["status"] == "ok"


@pytest.fixture(
    params=[
        "postgresql+asyncpg://postgres@127.0.0.1:1/nothing",
        "sqlite+aiosqlite:////nonexistent-dir/vektor.db",
    ]
)
async def down_client(request, tmp_path):
    app = create_app(make_settings(request.param, tmp_path))
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client


async def test_health_degraded_when_database_unreachable(down_client):
    response = await down_client.get("/health")
    assert response.status_code == 503
    assert response.json()["status"] == "degraded"


async def test_requests_get_503_not_500_when_database_down(down_client):
    login = await down_client.post("/auth/login", data={"username": "a", "password": "b"})
    assert login.status_code == 503
    assert login.json() == {"detail": "Database unavailable"}
    register = await down_client.post(
        "/auth/register",
        json={"email": "a@example.com", "username": "alice", "password": "long enough"},
    )
    assert register.status_code == 503
