"""POST /auth/login: credentials, devices and sessions."""

import jwt
import pytest

from tests.conftest import (
    PASSWORD,
    TEST_SECRET,
    bearer,
    login,
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
