"""/chat/ws against a served app (uvicorn on loopback) with the `websockets` client: signing
in, answers (several at once), cancel, resume, the change feed, and every error frame."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket as socket_module
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

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
    started = time.monotonic()
    response = await _revoke(revoke, client, harness.headers, tokens, key.json()["id"])
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


class StoppedReader:
    """A WebSocket client on a blocking socket (websockets' sans-I/O protocol) that reads
    only when asked to, through a small receive window: a client that stops reading, with
    no library reading on its behalf. Call its methods in a thread."""

    def __init__(self, base: str) -> None:
        self.sock = socket_module.socket()
        self.sock.setsockopt(socket_module.SOL_SOCKET, socket_module.SO_RCVBUF, 4096)
        self.sock.settimeout(20)
        self.sock.connect(("127.0.0.1", int(base.rsplit(":", 1)[1])))
        self.protocol = ClientProtocol(parse_uri(ws_url(base)), max_size=None)
        self.protocol.send_request(self.protocol.connect())
        self.frames: deque[dict[str, Any]] = deque()
        self._flush()
        while self.protocol.state is State.CONNECTING:
            self._read()

    def _flush(self) -> None:
        self.sock.sendall(b"".join(self.protocol.data_to_send()))

    def _read(self) -> bool:
        data = self.sock.recv(65536)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        for event in self.protocol.events_received():
            if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self.frames.append(json.loads(event.data))
        with contextlib.suppress(OSError):
            self._flush()  # the answer to a close
        return bool(data)

    def send(self, frame: dict[str, Any]) -> None:
        """Send a text frame."""
        self.protocol.send_text(json.dumps(frame).encode())
        self._flush()

    def recv(self) -> dict[str, Any] | None:
        """The next frame, or None once the connection has closed."""
        while not self.frames:
            if not self._read():
                return None
        return self.frames.popleft()


async def test_a_reader_too_slow_is_closed_with_1008_and_its_answer_stored(chat_harness, upstream):
    word, pieces = "x" * 230, 25000  # 5.8 MB: more than the kernel buffers hold
    harness, base = await served(
        chat_harness,
        upstream,
        f"chunks={pieces};text={word}",
        ws_send_buffer_bytes=64 * 1024,
        ws_slow_reader_seconds=0.5,
    )
    client = await asyncio.to_thread(StoppedReader, base)
    await asyncio.to_thread(client.send, {"type": "auth", "token": token_of(harness.headers)})
    assert (await asyncio.to_thread(client.recv) or {}).get("type") == "ready"
    await asyncio.to_thread(client.send, json.loads(chat("big")))
    start = await asyncio.to_thread(client.recv)
    assert start is not None
    assert start["type"] == "start"
    # While the client reads nothing, the answer runs to its end and is stored.
    messages = await stored_messages(harness, start["conversation_id"])
    assert messages[1]["content"] == " ".join([word] * pieces)
    await asyncio.sleep(1)  # past WS_SLOW_READER_SECONDS with the buffers full
    received = []
    while (frame := await asyncio.to_thread(client.recv)) is not None:
        received.append(frame["type"])
    assert client.protocol.close_code == 1008
    assert "done" not in received
    assert len(received) < pieces


async def test_a_replay_larger_than_the_send_buffer_reaches_a_reading_client(
    chat_harness, upstream
):
    """The buffer bounds what waits for a client, not what a resume may replay: a burst
    goes out as fast as the client reads it."""
    harness, base = await served(
        chat_harness,
        upstream,
        "chunks=3000;text=" + "y" * 60,
        ws_send_buffer_bytes=8192,
        # Long enough that a pause of the shared event loop is not taken for a slow
        # reader; a replay that ignored the buffer would still overflow it at once.
        ws_slow_reader_seconds=5,
    )
    async with await signed_in(base, token_of(harness.headers)) as socket:
        await socket.send(chat("long"))
        live = await frames_until(socket, done_of("long"), timeout=10)
        message_id = live[0]["message_id"]
        await socket.send(json.dumps({"type": "resume", "message_id": message_id, "after": 0}))
        replay = await frames_until(socket, lambda f: f["type"] == "done", timeout=10)
    assert len(live) == len(replay) == 3003  # start, 3000 deltas, usage, done
    assert sum(len(json.dumps(f)) for f in replay) > 20 * 8192
    assert [f["seq"] for f in replay] == list(range(1, 3004))


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
