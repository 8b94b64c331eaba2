"""/chat/ws against a served app (uvicorn on loopback) with the `websockets` client: signing
in, answers (several at once), cancel, resume, the change feed, and every error frame."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import PASSWORD, ChatHarness, collect_stream, scripted

pytestmark = pytest.mark.timeout(60)

SLOW = "chunks=40;delay=0.05;text=uno dos tres"
FAST = "chunks=5;text=Hola desde Vektor"


def ws_url(base: str) -> str:
    """The /chat/ws address of a served app's http:// base URL."""
    return base.replace("http://", "ws://", 1).rstrip("/") + "/chat/ws"


def token_of(headers: dict[str, str]) -> str:
    """The access token of an Authorization header."""
    return headers["Authorization"].split(" ", 1)[1]


async def signed_in(base: str, token: str, **options: Any) -> ClientConnection:
    """A socket signed in with `token`, its `ready` frame read."""
    socket = await connect(ws_url(base), open_timeout=10, **options)
    await socket.send(json.dumps({"type": "auth", "token": token}))
    ready = json.loads(await asyncio.wait_for(socket.recv(), 10))
    assert ready["type"] == "ready", ready
    return socket


async def frames_until(
    socket: ClientConnection, last: Callable[[dict[str, Any]], bool], timeout: float = 15
) -> list[dict[str, Any]]:
    """Frames read until one for which `last` is true (included)."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await socket.recv())
            seen.append(frame)
            if last(frame):
                return seen


def done_of(request_id: str) -> Callable[[dict[str, Any]], bool]:
    """Whether a frame is the `done` of the answer started as `request_id`."""
    return lambda f: f["type"] == "done" and f.get("request_id") == request_id


def error_of(request_id: str | None) -> Callable[[dict[str, Any]], bool]:
    """Whether a frame is an error frame for `request_id`."""
    return lambda f: f["type"] == "error" and f.get("request_id") == request_id


def chat(request_id: str, model: str = "scripted", content: str = "hola") -> str:
    """A chat frame."""
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    return json.dumps({"type": "chat", "request_id": request_id, **body})


async def closed_code(socket: ClientConnection, timeout: float = 5) -> int | None:
    """Read until the server closes; its close code."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                await socket.recv()
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


async def served(chat_harness: Any, upstream: Any, model: str = FAST, **settings: Any) -> Any:
    """The app served on loopback with one scripted model, and its base URL."""
    harness: ChatHarness = await chat_harness([scripted(upstream, model)], live=True, **settings)
    return harness, str(harness.client.base_url)


async def test_sign_in_with_token_or_key_and_refusals(chat_harness, upstream):
    harness, base = await served(chat_harness, upstream, ws_auth_timeout_seconds=0.5)
    me = (await harness.client.get("/users/me", headers=harness.headers)).json()
    socket = await connect(ws_url(base))
    await socket.send(json.dumps({"type": "auth", "token": token_of(harness.headers)}))
    assert json.loads(await socket.recv()) == {"type": "ready", "user_id": me["id"]}
    await socket.close()

    created = await harness.client.post(
        "/users/me/api-keys", json={"name": "ws"}, headers=harness.headers
    )
    key = created.json()["key"]
    await (await signed_in(base, key)).close()

    for first in ({"type": "auth", "token": "not-a-token"}, {"type": "auth"}, {"type": "ping"}):
        socket = await connect(ws_url(base))
        await socket.send(json.dumps(first))
        assert await closed_code(socket) == 4401, first
    socket = await connect(ws_url(base))
    await socket.send("not json")
    assert await closed_code(socket) == 4401

    started = time.monotonic()  # late: nothing within WS_AUTH_TIMEOUT_SECONDS
    socket = await connect(ws_url(base))
    assert await closed_code(socket) == 4401
    assert 0.4 < time.monotonic() - started < 3

    # A valid token in the query string is refused, even with a valid auth frame after it.
    socket = await connect(ws_url(base) + f"?token={token_of(harness.headers)}")
    with contextlib.suppress(ConnectionClosed):  # the server may have closed already
        await socket.send(json.dumps({"type": "auth", "token": token_of(harness.headers)}))
    assert await closed_code(socket) == 4401


async def test_answer_streams_to_done_and_is_stored(chat_harness, upstream):
    harness, base = await served(chat_harness, upstream)
    async with await signed_in(base, token_of(harness.headers)) as socket:
        await socket.send(chat("r1"))
        frames = await frames_until(socket, done_of("r1"))
    start = frames[0]
    assert start["type"] == "start"
    assert start["request_id"] == "r1"
    assert start["seq"] == 1
    assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
    assert {f["message_id"] for f in frames} == {start["message_id"]}
    assert [f["type"] for f in frames][-2:] == ["usage", "done"]
    assert frames[-1]["finish_reason"] == "stop"
    text = "".join(f["content"] for f in frames if f["type"] == "delta")
    assert text == "Hola desde Vektor Hola desde"
    history = await harness.client.get(
        f"/chat/history/{start['conversation_id']}", headers=harness.headers
    )
    messages = history.json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["content"] == text
    assert messages[1]["id"] == start["message_id"]


async def test_two_answers_at_once_and_a_cancel(chat_harness, upstream):
    harness, base = await served(chat_harness, upstream, SLOW)
    async with await signed_in(base, token_of(harness.headers)) as socket:
        await socket.send(chat("a"))
        await socket.send(chat("b"))
        frames = await frames_until(
            socket, lambda f: f["type"] == "delta" and f["request_id"] == "b" and f["seq"] > 3
        )
        starts = {f["request_id"]: f["message_id"] for f in frames if f["type"] == "start"}
        assert set(starts) == {"a", "b"}
        await socket.send(json.dumps({"type": "cancel", "message_id": starts["a"]}))
        rest = await frames_until(socket, done_of("a"))
        assert rest[-1]["finish_reason"] == "cancelled"
        rest += await frames_until(socket, done_of("b"))
        assert rest[-1]["finish_reason"] == "stop"
        # Cancelling a finished answer is a 409, an unknown one a 404; the socket stays.
        await socket.send(json.dumps({"type": "cancel", "message_id": starts["a"]}))
        assert (await frames_until(socket, error_of(None)))[-1]["status"] == 409
        unknown = "00000000-0000-4000-8000-000000000000"
        await socket.send(json.dumps({"type": "cancel", "message_id": unknown}))
        assert (await frames_until(socket, error_of(None)))[-1]["status"] == 404
    deltas_b = [f for f in frames + rest if f["type"] == "delta" and f["request_id"] == "b"]
    assert len(deltas_b) == 40


async def test_resume_after_n_on_another_socket(chat_harness, upstream):
    harness, base = await served(chat_harness, upstream, SLOW)
    token = token_of(harness.headers)
    async with await signed_in(base, token) as first:
        await first.send(chat("r"))
        seen = await frames_until(first, lambda f: f["seq"] == 4)
    message_id = seen[0]["message_id"]
    async with await signed_in(base, token) as second:
        await second.send(json.dumps({"type": "resume", "message_id": message_id, "after": 4}))
        rest = await frames_until(second, lambda f: f["type"] == "done")
    assert [f["seq"] for f in rest] == list(range(5, 5 + len(rest)))
    assert all(f["message_id"] == message_id and f["request_id"] is None for f in rest)
    text = "".join(f["content"] for f in seen + rest if f["type"] == "delta")
    assert len(text.split()) == 40

    other = await chat_harness([scripted(upstream, FAST)], live=True)  # another user
    async with await signed_in(str(other.client.base_url), token_of(other.headers)) as socket:
        resume = {"type": "resume", "message_id": message_id, "request_id": "x"}
        await socket.send(json.dumps(resume))
        error = (await frames_until(socket, error_of("x")))[-1]
    assert error["status"] == 404


async def test_subscribe_gets_the_change_feed_and_ping_pongs(chat_harness, upstream):
    harness, base = await served(chat_harness, upstream)
    async with await signed_in(base, token_of(harness.headers)) as socket:
        await socket.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(socket.recv(), 5)) == {"type": "pong"}
        await socket.send(json.dumps({"type": "subscribe"}))
        await asyncio.sleep(0.2)
        put = await harness.client.put(
            "/users/preferences", json={"theme": "light"}, headers=harness.headers
        )
        assert put.status_code == 200
        frame = (await frames_until(socket, lambda f: f["type"] == "sync"))[-1]
    assert frame["event"]["type"] == "preferences.updated"
    assert frame["cursor"]
    assert frame["event"]["at"]


async def test_bad_frames_get_error_frames_and_the_socket_stays_open(chat_harness, upstream):
    harness, base = await served(chat_harness, upstream)
    async with await signed_in(base, token_of(harness.headers)) as socket:
        expected = [
            ("not json", 400, None),
            (b"\x00binary", 400, None),
            ('["a list"]', 400, None),
            (json.dumps({"type": "launch", "request_id": "u"}), 422, "u"),
            (json.dumps({"type": "chat", "request_id": "v", "model": "scripted"}), 422, "v"),
            (json.dumps({"type": "resume", "message_id": "nope"}), 422, None),
            (chat("m", model="no-such-model"), 404, "m"),
        ]
        for sent, status, request_id in expected:
            await socket.send(sent)
            error = (await frames_until(socket, error_of(request_id)))[-1]
            assert error["status"] == status, (sent, error)
            assert error["detail"]
        await socket.send(chat("ok"))
        frames = await frames_until(socket, done_of("ok"))
    assert frames[-1]["finish_reason"] == "stop"


async def test_limits_are_those_of_sse(chat_harness, upstream):
    # A day's window: the sliding window's estimate just after a boundary counts a little
    # less than every earlier hit, and this test takes seconds.
    harness, base = await served(
        chat_harness, upstream, SLOW, max_concurrent_streams=1, rate_limit_chat="3/day"
    )
    async with await signed_in(base, token_of(harness.headers)) as socket:
        await socket.send(chat("one"))
        await frames_until(socket, lambda f: f["type"] == "start")
        await socket.send(chat("two"))  # over MAX_CONCURRENT_STREAMS
        busy = (await frames_until(socket, error_of("two")))[-1]
        assert busy["status"] == 429
        assert busy["retry_after"] >= 1
        # The SSE route agrees: the same user's slot is taken.
        body = {"model": "scripted", "messages": [{"role": "user", "content": "hola"}]}
        status, _, _ = await collect_stream(
            harness.client, "POST", "/chat/stream", json=body, headers=harness.headers
        )
        assert status == 429
        await frames_until(socket, done_of("one"))
        await socket.send(chat("four"))  # the fourth chat request this minute
        limited = (await frames_until(socket, error_of("four")))[-1]
        assert limited["status"] == 429


async def test_a_frame_over_one_mebibyte_closes_with_1009(chat_harness, upstream):
    harness, base = await served(chat_harness, upstream)
    socket = await signed_in(base, token_of(harness.headers), max_size=None)
    await socket.send(json.dumps({"type": "ping", "pad": "x" * (1024 * 1024)}))
    assert await closed_code(socket) == 1009


@pytest.mark.parametrize("revoke", ["logout", "password", "device", "account", "api_key"])
async def test_revocation_closes_the_socket_within_a_second(chat_harness, upstream, revoke):
    harness, base = await served(chat_harness, upstream)
    client = harness.client
    other = await client.post("/auth/login", data={"username": "user1", "password": PASSWORD})
    tokens = other.json()
    key = await client.post("/users/me/api-keys", json={"name": "k"}, headers=harness.headers)
    signed_with = key.json()["key"] if revoke == "api_key" else tokens["access_token"]
    socket = await signed_in(base, signed_with)
    await socket.send(json.dumps({"type": "ping"}))
    assert json.loads(await socket.recv())["type"] == "pong"
    await asyncio.sleep(0.6)  # a check or more has found it live
    response = await _revoke(revoke, client, harness.headers, tokens, key.json()["id"])
    # From the revocation's answer (it is committed then), not from its request: a password
    # change spends its own time hashing before anything is revoked.
    started = time.monotonic()
    assert response.status_code in (200, 204), response.text
    assert await closed_code(socket, timeout=3) == 4401
    assert time.monotonic() - started < 1.0


async def _revoke(how: str, client: Any, headers: dict[str, str], tokens: Any, key_id: str) -> Any:
    """Logout of the second session, a password change from the first (which revokes every
    other session), the second session's device removed, the account deleted, or the API
    key deleted."""
    if how == "logout":
        return await client.post("/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    if how == "password":
        body = {"current_password": PASSWORD, "new_password": "another good password"}
        return await client.post("/users/change-password", json=body, headers=headers)
    if how == "device":
        return await client.delete(f"/sync/devices/{tokens['device_id']}", headers=headers)
    if how == "account":
        return await client.delete("/users/me", headers=headers)
    return await client.delete(f"/users/me/api-keys/{key_id}", headers=headers)


async def test_cancel_on_disconnect_stops_the_answers_a_socket_started(chat_harness, upstream):
    harness, base = await served(chat_harness, upstream, SLOW, cancel_on_disconnect=True)
    socket = await signed_in(base, token_of(harness.headers))
    await socket.send(chat("gone"))
    start = (await frames_until(socket, lambda f: f["type"] == "delta"))[0]
    await socket.close()
    messages = await stored_messages(harness, start["conversation_id"])
    assert messages[1]["finish_reason"] == "cancelled"
    assert len(messages[1]["content"].split()) < 40


async def stored_messages(harness: ChatHarness, conversation_id: str) -> list[dict[str, Any]]:
    """The conversation's messages once its answer is stored."""
    url = f"/chat/history/{conversation_id}"
    async with asyncio.timeout(40):
        while True:
            response = await harness.client.get(url, headers=harness.headers)
            messages: list[dict[str, Any]] = response.json()["messages"]
            if len(messages) == 2:
                return messages
            await asyncio.sleep(0.1)


async def test_an_answer_over_a_key_signed_socket_is_accounted_to_the_key(chat_harness, upstream):
    harness, base = await served(chat_harness, upstream)
    created = await harness.client.post(
        "/users/me/api-keys", json={"name": "ws"}, headers=harness.headers
    )
    async with await signed_in(base, created.json()["key"]) as socket:
        await socket.send(chat("r1"))
        frames = await frames_until(socket, done_of("r1"))
    usage = next(f for f in frames if f["type"] == "usage")
    report = await harness.client.get("/users/me/usage?group_by=api_key", headers=harness.headers)
    rows = report.json()["rows"]
    assert [(r["key"], r["requests"]) for r in rows] == [(created.json()["id"], 1)]
    assert rows[0]["completion_tokens"] == usage["completion_tokens"]
