"""/chat/ws's outgoing buffer: a client that stops reading is closed (1008) while its answer
is still stored, and a replay larger than the buffer reaches a client that reads."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket as socket_module
from collections import deque
from typing import Any

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from tests.answers.test_websocket import (
    chat,
    done_of,
    frames_until,
    served,
    signed_in,
    stored_messages,
    token_of,
    ws_url,
)

pytestmark = pytest.mark.timeout(60)


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
