"""Reading an upstream's server-sent events with bounds: no event (or line) may grow past
MAX_EVENT_BYTES, so an upstream that sends one endless event cannot exhaust memory."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from vektor.llm.base import ProviderError

MAX_EVENT_BYTES = 1024 * 1024
MAX_BODY_BYTES = 8 * 1024 * 1024  # a whole non-streamed answer


@dataclass(frozen=True, slots=True)
class UpstreamEvent:
    """One event: its `event:` name ("message" when absent) and its joined `data:` lines."""

    event: str
    data: str


def _too_big(limit: int) -> ProviderError:
    return ProviderError(f"upstream sent an event larger than {limit} bytes", retryable=False)


def check_event_stream(kind: str) -> None:
    """The response (of this media type) must be an event stream."""
    if kind != "text/event-stream":
        raise ProviderError(
            f"upstream sent no event stream (content-type {kind or 'missing'})", retryable=True
        )


class EventDecoder:
    """The events of an SSE body, fed as it arrives: each `feed` returns the events it
    completed, each at most `limit` bytes of data. A plain object, not an async generator:
    it is one less suspension per chunk on the path of every streamed answer."""

    def __init__(self, limit: int = MAX_EVENT_BYTES) -> None:
        self.limit = limit
        self.buffer = b""
        self.data: list[bytes] = []
        self.size = 0
        self.name = ""

    def feed(self, chunk: bytes) -> list[UpstreamEvent]:
        """The events completed by `chunk`."""
        events: list[UpstreamEvent] = []
        buffer = self.buffer + chunk
        while True:
            end = buffer.find(b"\n")
            if end < 0:
                break
            line, buffer = buffer[:end].rstrip(b"\r"), buffer[end + 1 :]
            if not line:
                if self.data:
                    events.append(self._event())
                continue
            if line.startswith(b":"):
                continue
            field, _, value = line.partition(b":")
            value = value[1:] if value.startswith(b" ") else value
            if field == b"data":
                self.data.append(value)
                self.size += len(value) + 1
                if self.size > self.limit:
                    raise _too_big(self.limit)
            elif field == b"event":
                self.name = value.decode("utf-8", "replace")
        self.buffer = buffer
        if len(buffer) + self.size > self.limit:
            raise _too_big(self.limit)
        return events

    def end(self) -> list[UpstreamEvent]:
        """The last event, when the body ended without the blank line after it."""
        return [self._event()] if self.data else []

    def _event(self) -> UpstreamEvent:
        event = UpstreamEvent(self.name or "message", b"\n".join(self.data).decode("utf-8"))
        self.data, self.size, self.name = [], 0, ""
        return event


async def read_events(
    chunks: AsyncIterable[bytes], limit: int = MAX_EVENT_BYTES
) -> AsyncIterator[UpstreamEvent]:
    """The events of an SSE body, each at most `limit` bytes of data."""
    decoder = EventDecoder(limit)
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event
    for event in decoder.end():
        yield event


async def read_body(chunks: AsyncIterable[bytes], limit: int = MAX_BODY_BYTES) -> str:
    """A whole body, refusing one larger than `limit` bytes."""
    body = b""
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise ProviderError(f"upstream answer larger than {limit} bytes", retryable=False)
    return body.decode("utf-8")
