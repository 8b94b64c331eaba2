"""Logins must not tell which accounts exist: same status, body and time (OWASP
authentication guidance)."""

import statistics
import time

from tests.conftest import empty_tables, make_settings, register


async def test_bad_credentials_same_answer_for_unknown_user(client):
    await register(client, "alice")
    wrong = await client.post("/auth/login", data={"username": "alice", "password": "nope-nope"})
    unknown = await client.post("/auth/login", data={"username": "ghost", "password": "nope-nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.headers["www-authenticate"] == "Bearer"


async def test_unknown_user_costs_a_bcrypt_check(database_url, tmp_path):
    """Timing must not reveal accounts: an unknown user is checked against a dummy hash."""
    import httpx
    from asgi_lifespan import LifespanManager

    from vektor.app import create_app

    app = create_app(make_settings(database_url, tmp_path, bcrypt_rounds=10))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await register(client, "timing")

            async def timed(username):
                started = time.perf_counter()
                response = await client.post(
                    "/auth/login", data={"username": username, "password": "wrong-password"}
                )
                assert response.status_code == 401
                return time.perf_counter() - started

            await timed("nobody")  # the dummy hash is computed once, lazily
            known = statistics.median([await timed("timing") for _ in range(5)])
            unknown = statistics.median([await timed("nobody") for _ in range(5)])
            await empty_tables(app)
    assert 0.5 < unknown / known < 2.0, (known, unknown)
