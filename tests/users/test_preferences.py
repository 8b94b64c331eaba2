"""/users/preferences."""

import pytest


async def test_defaults_until_set(client, alice):
    response = await client.get("/users/preferences", headers=alice["headers"])
    assert response.status_code == 200
    assert response.json() == {
        "theme": "dark",
        "notifications": True,
        "language": None,
        "default_model": None,
    }


async def test_partial_updates_merge(client, alice):
    headers = alice["headers"]
    response = await client.put("/users/preferences", headers=headers, json={"theme": "light"})
    assert response.status_code == 200
    assert response.json() == {"detail": "Preferencias actualizadas"}
    await client.put(
        "/users/preferences",
        headers=headers,
        json={"notifications": False, "language": "es-EC", "default_model": "smollm2"},
    )
    prefs = (await client.get("/users/preferences", headers=headers)).json()
    assert prefs == {
        "theme": "light",
        "notifications": False,
        "language": "es-EC",
        "default_model": "smollm2",
    }
    await client.put("/users/preferences", headers=headers, json={"language": None})
    prefs = (await client.get("/users/preferences", headers=headers)).json()
    assert prefs["language"] is None
    assert prefs["theme"] == "light"


@pytest.mark.parametrize(
    "body",
    [
        {"color": "red"},
        {"theme": "purple"},
        {"theme": None},
        {"notifications": "sometimes"},
        {"language": "not a language!"},
        {"default_model": ""},
        [1, 2],
    ],
)
async def test_unknown_keys_and_bad_values_are_422_and_change_nothing(client, alice, body):
    headers = alice["headers"]
    await client.put("/users/preferences", headers=headers, json={"theme": "system"})
    response = await client.put("/users/preferences", headers=headers, json=body)
    assert response.status_code == 422, response.text
    prefs = (await client.get("/users/preferences", headers=headers)).json()
    assert prefs["theme"] == "system"


async def test_preferences_are_per_user(client, alice):
    from tests.conftest import bearer, login, register

    await register(client, "bob")
    bob = bearer(await login(client, "bob"))
    await client.put("/users/preferences", headers=alice["headers"], json={"theme": "light"})
    assert (await client.get("/users/preferences", headers=bob)).json()["theme"] == "dark"


async def test_preferences_require_auth(client):
    assert (await client.get("/users/preferences")).status_code == 401
    assert (await client.put("/users/preferences", json={"theme": "light"})).status_code == 401
