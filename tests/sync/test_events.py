"""The change feed: live across devices, per user, resumable, with /sync/changes."""

import asyncio
import json

from tests.chat.test_jobs import Reader
from tests.conftest import bearer, login, register, scripted


async def open_feed(client, headers):
    response = await client.send(
        client.build_request("GET", "/sync/events", headers=headers), stream=True
    )
    assert response.status_code == 200
    return response, Reader(response)


async def test_changes_reach_other_devices_not_other_users(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=2")], live=True)
    phone = bearer(await login(chat.client, "user1", device_id="phone"))
    await register(chat.client, "stranger")
    stranger = bearer(await login(chat.client, "stranger"))
    feed, reader = await open_feed(chat.client, phone)
    other, other_reader = await open_feed(chat.client, stranger)
    try:
        _, events, _ = await chat.stream(
            {"model": "scripted", "messages": [{"role": "user", "content": "hi"}]}
        )
        conversation_id = events[0]["conversation_id"]
        await chat.client.put("/users/preferences", headers=chat.headers, json={"theme": "light"})
        await chat.client.put("/users/me", headers=chat.headers, json={"avatar_url": None})
        await chat.client.delete(f"/chat/history/{conversation_id}", headers=chat.headers)
        seen = await asyncio.wait_for(reader.read(5), timeout=5)
        assert [e["type"] for e in seen] == [
            "conversation.created",
            "conversation.updated",
            "preferences.updated",
            "profile.updated",
            "conversation.deleted",
        ]
        assert seen[0]["id"] == conversation_id
        assert all(set(e) >= {"type", "id", "at", "_id"} for e in seen)
        # The stranger got nothing but heartbeats.
        await asyncio.sleep(0.2)
        assert other_reader.buffer.strip() == ""
    finally:
        await feed.aclose()
        await other.aclose()


async def test_reconnect_with_last_event_id_and_resync(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=1")], live=True, sse_ping_seconds=0.1)
    await chat.client.put("/users/preferences", headers=chat.headers, json={"theme": "light"})
    first = (await chat.client.get("/sync/changes", headers=chat.headers)).json()
    cursor = first["cursor"]
    await chat.client.put("/users/preferences", headers=chat.headers, json={"theme": "dark"})
    await chat.client.put("/users/me", headers=chat.headers, json={"avatar_url": None})
    feed, reader = await open_feed(chat.client, {**chat.headers, "Last-Event-ID": cursor})
    try:
        missed = await asyncio.wait_for(reader.read(2), timeout=5)
        assert [e["type"] for e in missed] == ["preferences.updated", "profile.updated"]
    finally:
        await feed.aclose()
    stale, stale_reader = await open_feed(chat.client, {**chat.headers, "Last-Event-ID": "zz-1"})
    try:
        resync = await asyncio.wait_for(stale_reader.read(1), timeout=5)
        assert resync[0]["type"] == "resync"
    finally:
        await stale.aclose()


async def test_changes_since_cursor(client, alice, app):
    headers = alice["headers"]
    start = (await client.get("/sync/changes", headers=headers)).json()
    assert start["events"] == []
    await client.put("/users/preferences", headers=headers, json={"theme": "light"})
    after = (
        await client.get("/sync/changes", params={"since": start["cursor"]}, headers=headers)
    ).json()
    assert after["resync"] is False
    assert [e["type"] for e in after["events"]] == ["preferences.updated"]
    unknown = (await client.get("/sync/changes", params={"since": "nope"}, headers=headers)).json()
    assert unknown["resync"] is True
    # Far behind the bounded history: resync.
    bus = app.state.vektor.events
    user_id = __import__("uuid").UUID(alice["user"]["id"])
    for _ in range(1100):
        bus.publish_now(user_id, "preferences.updated")
    behind = (
        await client.get("/sync/changes", params={"since": after["cursor"]}, headers=headers)
    ).json()
    assert behind["resync"] is True


async def test_heartbeats_on_idle_feed(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream)], live=True, sse_ping_seconds=0.1)
    feed = await chat.client.send(
        chat.client.build_request("GET", "/sync/events", headers=chat.headers), stream=True
    )
    try:
        text = ""
        async with asyncio.timeout(3):
            async for chunk in feed.aiter_text():
                text += chunk
                if ": ping" in text:
                    break
        assert ": ping" in text
    finally:
        await feed.aclose()


def test_event_payload_is_json():
    from vektor.core.events import MemoryEventBus

    bus = MemoryEventBus()
    import uuid

    user = uuid.uuid4()
    bus.publish_now(user, "profile.updated", user)
    events, resync = asyncio.run(bus.since(user, f"{bus.epoch}-0"))
    assert not resync
    assert json.loads(json.dumps(events[0].payload()))["type"] == "profile.updated"


async def test_unicode_digits_in_a_cursor_mean_resync(client, alice, app):
    epoch = app.state.vektor.events.epoch
    for cursor in (f"{epoch}-²", f"{epoch}-٣", f"{epoch}--1", f"{epoch}-"):
        response = await client.get(
            "/sync/changes", params={"since": cursor}, headers=alice["headers"]
        )
        assert response.status_code == 200
        assert response.json()["resync"] is True


async def test_feed_ends_when_its_device_is_removed(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream)], live=True, sse_ping_seconds=0.1)
    phone = bearer(await login(chat.client, "user1", device_id="phone"))
    feed, _reader = await open_feed(chat.client, phone)
    try:
        removed = await chat.client.delete("/sync/devices/phone", headers=chat.headers)
        assert removed.status_code == 204
        async with asyncio.timeout(5):
            async for _ in feed.aiter_text():
                pass  # the server ends the stream
    finally:
        await feed.aclose()
