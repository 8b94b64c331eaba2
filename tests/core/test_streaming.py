"""The streamed response: how it ends, and how it notices a client that left."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from vektor.core.streaming import EventStreamResponse, LastChunk


async def _run(body: AsyncIterator[bytes], *, leave_after: int | None = None) -> list[Any]:
    """Serve the response to a recording ASGI `send`; the client leaves after `leave_after`
    body messages, if given."""
    sent: list[Any] = []
    left = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        bodies = sum(1 for m in sent if m["type"] == "http.response.body")
        if leave_after is not None and bodies >= leave_after:
            left.set()
            await asyncio.sleep(0.05)

    scope = {"type": "http", "asgi": {"spec_version": "2.3"}, "method": "GET"}
    await asyncio.wait_for(EventStreamResponse(body)(scope, receive, send), 5)
    return sent


def _bodies(sent: list[Any]) -> list[tuple[bytes, bool]]:
    return [(m["body"], m["more_body"]) for m in sent if m["type"] == "http.response.body"]


async def test_a_last_chunk_ends_the_response_in_the_same_message() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"
        yield LastChunk(b"data: 2\n\n")

    sent = await _run(body())
    assert sent[0]["type"] == "http.response.start"
    assert _bodies(sent) == [(b"data: 1\n\n", True), (b"data: 2\n\n", False)]


async def test_without_a_last_chunk_an_empty_message_ends_it() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"

    assert _bodies(await _run(body())) == [(b"data: 1\n\n", True), (b"", False)]


async def test_nothing_may_follow_the_last_chunk() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield LastChunk(b"data: 1\n\n")
        yield b"data: 2\n\n"

    with pytest.raises(RuntimeError, match="LastChunk"):
        await _run(body())


async def test_a_client_that_leaves_closes_the_body_at_once() -> None:
    closed = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        try:
            for index in range(1000):
                yield b"data: %d\n\n" % index
                await asyncio.sleep(0.01)
        finally:
            closed.set()

    sent = await _run(body(), leave_after=2)
    assert closed.is_set()
    assert len(_bodies(sent)) < 10
