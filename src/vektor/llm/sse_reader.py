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


async def read_events(
    chunks: AsyncIterable[bytes], limit: int = MAX_EVENT_BYTES
) -> AsyncIterator[UpstreamEvent]:
    """The events of an SSE body, each at most `limit` bytes of data."""
    buffer = b""
    data: list[bytes] = []
    size = 0
    name = ""
    async for chunk in chunks:
        buffer += chunk
        while True:
            end = buffer.find(b"\n")
            if end < 0:
                break
            line, buffer = buffer[:end].rstrip(b"\r"), buffer[end + 1 :]
            if not line:
                if data:
                    yield UpstreamEvent(name or "message", b"\n".join(data).decode("utf-8"))
                data, size, name = [], 0, ""
                continue
            if line.startswith(b":"):
                continue
            field, _, value = line.partition(b":")
            value = value[1:] if value.startswith(b" ") else value
            if field == b"data":
                data.append(value)
                size += len(value) + 1
                if size > limit:
                    raise _too_big(limit)
            elif field == b"event":
                name = value.decode("utf-8", "replace")
        if len(buffer) + size > limit:
            raise _too_big(limit)
    if data:
        yield UpstreamEvent(name or "message", b"\n".join(data).decode("utf-8"))


async def read_body(chunks: AsyncIterable[bytes], limit: int = MAX_BODY_BYTES) -> str:
    """A whole body, refusing one larger than `limit` bytes."""
    body = b""
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise ProviderError(f"upstream answer larger than {limit} bytes", retryable=False)
    return body.decode("utf-8")
