"""POST /auth/login: credentials, devices and sessions."""

import statistics
import time

import jwt
import pytest

from tests.conftest import (
    PASSWORD,
    TEST_SECRET,
    bearer,
    empty_tables,
    login,
    make_settings,
    register,
)


async def test_login_by_username_or_email_any_case(client):
    await register(client, "alice")
    for identifier in ("alice", "ALICE", "alice@example.com", "Alice@Example.com"):
        tokens = await login(client, identifier)
        assert tokens["token_type"] == "bearer"
        assert tokens["expires_in"] == 3600
        assert tokens["refresh_token"]
        assert tokens["access_token"]


async def test_access_token_claims(client):
    user = await register(client, "alice")
    tokens = await login(client, "alice")
    claims = jwt.decode(
        tokens["access_token"], TEST_SECRET, algorithms=["HS256"], audience="vektor-api"
    )
    assert claims["sub"] == user["id"]
    assert {"exp", "iat", "nbf", "sid", "jti", "iss", "aud", "typ"} <= set(claims)
    assert claims["exp"] - claims["iat"] == 3600


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


async def test_device_from_form_fields(client):
    await register(client, "alice")
    tokens = await login(client, "alice", device_id="laptop-1", device_name="Laptop personal")
    assert tokens["device_id"] == "laptop-1"


async def test_device_from_headers(client):
    await register(client, "alice")
    response = await client.post(
        "/auth/login",
        data={"username": "alice", "password": PASSWORD},
        headers={"X-Device-Id": "phone-7", "X-Device-Name": "Phone"},
    )
    assert response.json()["device_id"] == "phone-7"


async def test_device_generated_when_absent(client):
    await register(client, "alice")
    first = await login(client, "alice")
    second = await login(client, "alice")
    assert first["device_id"]
    assert second["device_id"]
    assert first["device_id"] != second["device_id"]


async def test_bad_device_id_is_422(client):
    await register(client, "alice")
    response = await client.post(
        "/auth/login",
        data={"username": "alice", "password": PASSWORD, "device_id": "../../etc/passwd x"},
    )
    assert response.status_code == 422


async def test_each_login_is_its_own_session(client):
    await register(client, "alice")
    one = await login(client, "alice", device_id="a")
    two = await login(client, "alice", device_id="a")
    sid = lambda t: jwt.decode(t["access_token"], options={"verify_signature": False})["sid"]  # noqa: E731
    assert sid(one) != sid(two)
    assert (await client.get("/users/me", headers=bearer(one))).status_code == 200
    assert (await client.get("/users/me", headers=bearer(two))).status_code == 200


@pytest.mark.parametrize("missing", ["username", "password"])
async def test_missing_form_field_is_422(client, missing):
    data = {"username": "alice", "password": PASSWORD}
    del data[missing]
    response = await client.post("/auth/login", data=data)
    assert response.status_code == 422


async def test_json_login_is_422(client):
    response = await client.post("/auth/login", json={"username": "a", "password": "b"})
    assert response.status_code == 422


async def test_parallel_first_logins_on_one_new_device(client):
    import asyncio

    await register(client, "alice")
    responses = await asyncio.gather(
        *(
            client.post(
                "/auth/login",
                data={"username": "alice", "password": PASSWORD, "device_id": "brand-new"},
            )
            for _ in range(4)
        )
    )
    assert [r.status_code for r in responses] == [200] * 4
