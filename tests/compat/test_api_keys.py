"""/users/me/api-keys: created once, listed without the key, revoked, tied to the user."""

from datetime import UTC, datetime, timedelta


async def test_create_list_use_revoke(chat_harness, upstream):
    from tests.conftest import scripted

    chat = await chat_harness([scripted(upstream)])
    created = await chat.client.post(
        "/users/me/api-keys", json={"name": "laptop"}, headers=chat.headers
    )
    assert created.status_code == 201
    body = created.json()
    key = body["key"]
    assert key.startswith("vk-")
    assert len(key) > 40
    assert body["prefix"] == key[:11]
    listed = (await chat.client.get("/users/me/api-keys", headers=chat.headers)).json()
    assert [k["name"] for k in listed] == ["laptop"]
    assert "key" not in listed[0]
    assert listed[0]["last_used_at"] is None
    assert key not in str(listed)

    by_key = {"Authorization": f"Bearer {key}"}
    assert (await chat.client.get("/v1/models", headers=by_key)).status_code == 200
    listed = (await chat.client.get("/users/me/api-keys", headers=chat.headers)).json()
    assert listed[0]["last_used_at"] is not None
    # A key is for the /v1 API only: account endpoints want a login.
    assert (await chat.client.get("/users/me", headers=by_key)).status_code == 401

    gone = await chat.client.delete(f"/users/me/api-keys/{body['id']}", headers=chat.headers)
    assert gone.status_code == 204
    assert (await chat.client.get("/v1/models", headers=by_key)).status_code == 401
    again = await chat.client.delete(f"/users/me/api-keys/{body['id']}", headers=chat.headers)
    assert again.status_code == 404


async def test_expired_key_and_bad_input(chat_harness, upstream):
    from tests.conftest import scripted

    chat = await chat_harness([scripted(upstream)])
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    refused = await chat.client.post(
        "/users/me/api-keys", json={"name": "old", "expires_at": past}, headers=chat.headers
    )
    assert refused.status_code == 422
    for bad in ({}, {"name": ""}, {"name": "x" * 101}, {"name": "a", "user_id": "x"}):
        response = await chat.client.post("/users/me/api-keys", json=bad, headers=chat.headers)
        assert response.status_code == 422, bad
    assert (await chat.client.get("/users/me/api-keys", headers=chat.headers)).json() == []
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    created = await chat.client.post(
        "/users/me/api-keys", json={"name": "brief", "expires_at": soon}, headers=chat.headers
    )
    key = created.json()["key"]
    import asyncio

    await asyncio.sleep(1.2)
    expired = await chat.client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert expired.status_code == 401


async def test_another_users_key_cannot_be_revoked_and_deleting_the_user_kills_keys(
    chat_harness, upstream
):
    from tests.conftest import scripted

    chat = await chat_harness([scripted(upstream)])
    other = await chat_harness([scripted(upstream)])
    created = (
        await chat.client.post("/users/me/api-keys", json={"name": "k"}, headers=chat.headers)
    ).json()
    stolen = await other.client.delete(f"/users/me/api-keys/{created['id']}", headers=other.headers)
    assert stolen.status_code == 404
    by_key = {"Authorization": f"Bearer {created['key']}"}
    assert (await chat.client.get("/v1/models", headers=by_key)).status_code == 200
    deleted = await chat.client.delete("/users/me", headers=chat.headers)
    assert deleted.status_code == 204, deleted.text
    assert (await chat.client.get("/v1/models", headers=by_key)).status_code == 401
