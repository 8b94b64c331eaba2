"""/users/me and /users/change-password."""

import pytest

from tests.conftest import PASSWORD, bearer, login, register


async def test_read_me(client, alice):
    response = await client.get("/users/me", headers=alice["headers"])
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {"id", "email", "username", "avatar_url", "created_at", "is_admin"}
    assert body["id"] == alice["user"]["id"]
    assert "password_hash" not in body


async def test_me_requires_auth(client):
    response = await client.get("/users/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_update_profile(client, alice):
    response = await client.put(
        "/users/me",
        headers=alice["headers"],
        json={
            "email": "New@Example.com",
            "username": "alice_2",
            "avatar_url": "https://cdn.example.com/a.png",
        },
    )
    assert response.status_code == 200
    assert response.json() == {"detail": "Perfil actualizado"}
    me = (await client.get("/users/me", headers=alice["headers"])).json()
    assert me["email"] == "new@example.com"
    assert me["username"] == "alice_2"
    assert me["avatar_url"] == "https://cdn.example.com/a.png"
    assert (await login(client, "new@example.com"))["access_token"]


async def test_partial_update_keeps_other_fields(client, alice):
    await client.put("/users/me", headers=alice["headers"], json={"avatar_url": None})
    me = (await client.get("/users/me", headers=alice["headers"])).json()
    assert me["email"] == "alice@example.com"
    assert me["avatar_url"] is None


async def test_update_to_taken_email_or_username_is_409(client, alice):
    await register(client, "bob")
    for body in ({"email": "BOB@example.com"}, {"username": "Bob"}):
        response = await client.put("/users/me", headers=alice["headers"], json=body)
        assert response.status_code == 409
    me = (await client.get("/users/me", headers=alice["headers"])).json()
    assert me["username"] == "alice"


async def test_update_to_own_values_is_fine(client, alice):
    response = await client.put(
        "/users/me",
        headers=alice["headers"],
        json={"email": "alice@example.com", "username": "ALICE"},
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"is_admin": True},
        {"password_hash": "x"},
        {"id": "00000000-0000-0000-0000-000000000000"},
        {"created_at": "2020-01-01T00:00:00Z"},
        {"email": None},
        {"username": None},
        {"email": "nope"},
        {"avatar_url": "javascript:alert(1)"},
        {"avatar_url": "x" * 3000},
    ],
)
async def test_mass_assignment_and_bad_values_are_422(client, alice, body):
    response = await client.put("/users/me", headers=alice["headers"], json=body)
    assert response.status_code == 422, response.text
    me = (await client.get("/users/me", headers=alice["headers"])).json()
    assert me["is_admin"] is False
    assert me["email"] == "alice@example.com"


async def test_change_password_revokes_other_sessions(client, alice):
    other = await login(client, "alice", device_id="phone")
    response = await client.post(
        "/users/change-password",
        headers=alice["headers"],
        json={"current_password": PASSWORD, "new_password": "a brand new secret"},
    )
    assert response.status_code == 200
    assert response.json() == {"detail": "Contraseña cambiada"}
    # This session goes on; the other one is signed out, refresh token included.
    assert (await client.get("/users/me", headers=alice["headers"])).status_code == 200
    assert (await client.get("/users/me", headers=bearer(other))).status_code == 401
    refreshed = await client.post("/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert refreshed.status_code == 401
    old = await client.post("/auth/login", data={"username": "alice", "password": PASSWORD})
    assert old.status_code == 401
    assert await login(client, "alice", password="a brand new secret")


async def test_change_password_wrong_current_is_400(client, alice):
    response = await client.post(
        "/users/change-password",
        headers=alice["headers"],
        json={"current_password": "not it at all", "new_password": "a brand new secret"},
    )
    assert response.status_code == 400
    assert await login(client, "alice")


@pytest.mark.parametrize("new", ["short", "€" * 25])
async def test_change_password_weak_or_too_long_is_422(client, alice, new):
    response = await client.post(
        "/users/change-password",
        headers=alice["headers"],
        json={"current_password": PASSWORD, "new_password": new},
    )
    assert response.status_code == 422
    assert await login(client, "alice")


async def test_overlong_avatar_url_is_422(client, alice):
    url = "https://cdn.example.com/" + "a" * 2040
    response = await client.put("/users/me", headers=alice["headers"], json={"avatar_url": url})
    assert response.status_code == 422
