"""Refresh rotation (RFC 9700), reuse detection, logout, and forged or stale access tokens."""

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from tests.conftest import TEST_SECRET, bearer, login, register
from vektor.core.security import create_access_token


async def refresh(client, token):
    return await client.post("/auth/refresh", json={"refresh_token": token})


async def test_refresh_rotates(client, alice):
    first = alice["tokens"]
    response = await refresh(client, first["refresh_token"])
    assert response.status_code == 200
    second = response.json()
    assert set(second) >= {"access_token", "token_type", "expires_in", "refresh_token"}
    assert second["refresh_token"] != first["refresh_token"]
    assert second["device_id"] == first["device_id"]
    assert (await client.get("/users/me", headers=bearer(second))).status_code == 200
    third = await refresh(client, second["refresh_token"])
    assert third.status_code == 200


async def test_reused_refresh_token_revokes_the_whole_session(client, alice):
    old = alice["tokens"]["refresh_token"]
    rotated = (await refresh(client, old)).json()
    replay = await refresh(client, old)
    assert replay.status_code == 401
    assert replay.headers["www-authenticate"] == "Bearer"
    # The attacker's replay killed the family: the legitimate new tokens are dead too.
    assert (await refresh(client, rotated["refresh_token"])).status_code == 401
    assert (await client.get("/users/me", headers=bearer(rotated))).status_code == 401
    assert (await client.get("/users/me", headers=alice["headers"])).status_code == 401


async def test_reuse_revokes_only_that_session(client, alice):
    other = await login(client, "alice", device_id="phone")
    old = alice["tokens"]["refresh_token"]
    await refresh(client, old)
    await refresh(client, old)
    assert (await client.get("/users/me", headers=bearer(other))).status_code == 200


async def test_concurrent_refreshes_never_leave_two_live_tokens(client, alice):
    token = alice["tokens"]["refresh_token"]
    responses = await asyncio.gather(*(refresh(client, token) for _ in range(5)))
    winners = [r.json() for r in responses if r.status_code == 200]
    assert len(winners) <= 1
    assert all(r.status_code in (200, 401) for r in responses)
    live = [w for w in winners if (await refresh(client, w["refresh_token"])).status_code == 200]
    assert len(live) <= 1


@pytest.mark.parametrize("token", ["", "x" * 600, "vkr_doesnotexist"])
async def test_bad_refresh_token(client, token):
    response = await refresh(client, token)
    assert response.status_code in (401, 422)


async def test_refresh_token_is_not_an_access_token(client, alice):
    headers = {"Authorization": f"Bearer {alice['tokens']['refresh_token']}"}
    assert (await client.get("/users/me", headers=headers)).status_code == 401


async def test_access_token_is_not_a_refresh_token(client, alice):
    response = await refresh(client, alice["tokens"]["access_token"])
    assert response.status_code == 401


async def test_logout_kills_refresh_and_access_tokens(client, alice):
    other = await login(client, "alice", device_id="tablet")
    response = await client.post(
        "/auth/logout", json={"refresh_token": alice["tokens"]["refresh_token"]}
    )
    assert response.status_code == 200
    assert response.json() == {"detail": "Logout successful"}
    assert (await refresh(client, alice["tokens"]["refresh_token"])).status_code == 401
    assert (await client.get("/users/me", headers=alice["headers"])).status_code == 401
    # Other sessions stay.
    assert (await client.get("/users/me", headers=bearer(other))).status_code == 200


async def test_logout_twice_is_401(client, alice):
    body = {"refresh_token": alice["tokens"]["refresh_token"]}
    assert (await client.post("/auth/logout", json=body)).status_code == 200
    assert (await client.post("/auth/logout", json=body)).status_code == 401


async def test_expired_refresh_token_is_401(client, alice, app):
    from sqlalchemy import update

    from vektor.auth.models import RefreshToken

    async with app.state.vektor.engine.begin() as connection:
        await connection.execute(
            update(RefreshToken).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert (await refresh(client, alice["tokens"]["refresh_token"])).status_code == 401


def _claims(token):
    return jwt.decode(token, options={"verify_signature": False})


def _b64(data):
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def _rejected(client, token):
    response = await client.get("/users/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"


async def test_alg_none_is_rejected(client, alice):
    claims = _claims(alice["tokens"]["access_token"])
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    await _rejected(client, token)


async def test_forged_signature_is_rejected(client, alice):
    claims = _claims(alice["tokens"]["access_token"])
    await _rejected(client, jwt.encode(claims, "not-the-key" * 4, algorithm="HS256"))


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_other_algorithm_is_rejected(client, alice):
    claims = _claims(alice["tokens"]["access_token"])
    await _rejected(client, jwt.encode(claims, TEST_SECRET, algorithm="HS512"))


async def test_expired_token_is_rejected(client, alice):
    claims = _claims(alice["tokens"]["access_token"])
    token = create_access_token(
        secret_key=TEST_SECRET,
        user_id=uuid.UUID(claims["sub"]),
        session_id=uuid.UUID(claims["sid"]),
        lifetime=timedelta(minutes=5),
        issuer="vektor",
        audience="vektor-api",
        now=datetime.now(UTC) - timedelta(hours=1),
    )
    await _rejected(client, token)


@pytest.mark.parametrize("claim", ["exp", "sid", "sub", "jti", "iat", "aud", "iss", "typ"])
async def test_token_missing_a_claim_is_rejected(client, alice, claim):
    claims = _claims(alice["tokens"]["access_token"])
    del claims[claim]
    await _rejected(client, jwt.encode(claims, TEST_SECRET, algorithm="HS256"))


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("aud", "someone-else"),
        ("iss", "evil"),
        ("typ", "refresh"),
        ("sub", str(uuid.uuid4())),
        ("sid", str(uuid.uuid4())),
        ("sid", "not-a-uuid"),
    ],
)
async def test_token_with_wrong_claim_is_rejected(client, alice, claim, value):
    claims = _claims(alice["tokens"]["access_token"])
    claims[claim] = value
    await _rejected(client, jwt.encode(claims, TEST_SECRET, algorithm="HS256"))


async def test_not_yet_valid_token_is_rejected(client, alice):
    claims = _claims(alice["tokens"]["access_token"])
    claims["nbf"] = int((datetime.now(UTC) + timedelta(minutes=10)).timestamp())
    await _rejected(client, jwt.encode(claims, TEST_SECRET, algorithm="HS256"))
    claims["nbf"] = int(datetime.now(UTC).timestamp()) - 5  # and the same token, valid now
    ok = await client.get(
        "/users/me",
        headers={"Authorization": f"Bearer {jwt.encode(claims, TEST_SECRET, algorithm='HS256')}"},
    )
    assert ok.status_code == 200


async def test_another_users_session_id_is_rejected(client, alice):
    await register(client, "bob")
    bob = await login(client, "bob")
    claims = _claims(alice["tokens"]["access_token"])
    claims["sid"] = _claims(bob["access_token"])["sid"]
    await _rejected(client, jwt.encode(claims, TEST_SECRET, algorithm="HS256"))


@pytest.mark.parametrize(
    "header", ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc", "Bearer a.b.c"]
)
async def test_malformed_authorization_header(client, header):
    response = await client.get("/users/me", headers={"Authorization": header})
    assert response.status_code == 401


async def test_token_in_query_string_is_not_accepted(client, alice):
    token = alice["tokens"]["access_token"]
    for name in ("access_token", "token"):
        response = await client.get(f"/users/me?{name}={token}")
        assert response.status_code == 401
