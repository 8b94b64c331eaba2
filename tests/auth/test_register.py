"""POST /auth/register."""

import pytest

from tests.conftest import PASSWORD, register


async def test_register_returns_public_profile(client):
    body = await register(client, "alice")
    assert set(body) >= {"id", "email", "username", "created_at"}
    assert body["email"] == "alice@example.com"
    assert body["username"] == "alice"
    assert "password" not in body
    assert "password_hash" not in body
    assert body["is_admin"] is False


async def test_email_is_case_insensitive_and_taken_is_409(client):
    await register(client, "alice")
    response = await client.post(
        "/auth/register",
        json={"email": "ALICE@Example.COM", "username": "alice2", "password": PASSWORD},
    )
    assert response.status_code == 409
    assert response.json() == {"detail": "Email or username already registered"}


async def test_username_taken_any_case_is_409(client):
    await register(client, "alice")
    response = await client.post(
        "/auth/register",
        json={"email": "other@example.com", "username": "ALICE", "password": PASSWORD},
    )
    assert response.status_code == 409


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("password", "short"),
        ("password", "€" * 25),  # 25 characters but 75 bytes: over bcrypt's 72
        ("password", "a" * 73),
        ("email", "not-an-email"),
        ("username", "a"),
        ("username", "has space"),
        ("username", "x" * 65),
    ],
)
async def test_bad_input_is_422_and_creates_nothing(client, field, value):
    body = {"email": "bob@example.com", "username": "bob", "password": PASSWORD, field: value}
    response = await client.post("/auth/register", json=body)
    assert response.status_code == 422, response.text
    assert (PASSWORD not in response.text and value not in response.text) or field != "password"
    login = await client.post("/auth/login", data={"username": "bob", "password": PASSWORD})
    assert login.status_code == 401


async def test_72_byte_password_is_accepted_and_not_truncated(client):
    password = "€" * 24  # exactly 72 bytes
    await register(client, "alice", password=password)
    ok = await client.post("/auth/login", data={"username": "alice", "password": password})
    assert ok.status_code == 200
    # A password that shares the first 71 bytes is a different password.
    wrong = await client.post(
        "/auth/login", data={"username": "alice", "password": "€" * 23 + "ab"}
    )
    assert wrong.status_code == 401


async def test_extra_fields_are_refused(client):
    response = await client.post(
        "/auth/register",
        json={
            "email": "m@example.com",
            "username": "mallory",
            "password": PASSWORD,
            "is_admin": True,
        },
    )
    assert response.status_code == 422


async def test_validation_error_does_not_echo_the_password(client):
    secret = "€" * 30
    response = await client.post(
        "/auth/register", json={"email": "x@example.com", "username": "xavier", "password": secret}
    )
    assert response.status_code == 422
    assert secret not in response.text


async def test_malformed_json_is_a_4xx(client):
    response = await client.post(
        "/auth/register", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code in (400, 422)
    assert "detail" in response.json()
