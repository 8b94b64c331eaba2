"""Reading an upstream's server-sent events, however its bytes are cut into chunks."""

import pytest

from vektor.llm.base import ProviderError
from vektor.llm.sse_reader import EventDecoder, UpstreamEvent

BODY = (
    b": a comment\r\n"
    b'data: {"a": 1}\r\n\r\n'
    b"event: message_start\n"
    b"data: first line\n"
    b"data:second line\n\n"
    b"data: [DONE]\n\n"
    b"data: no blank line after it\n"
)
EVENTS = [
    UpstreamEvent("message", '{"a": 1}'),
    UpstreamEvent("message_start", "first line\nsecond line"),
    UpstreamEvent("message", "[DONE]"),
    UpstreamEvent("message", "no blank line after it"),
]


def _decode(pieces: list[bytes], limit: int = 1024) -> list[UpstreamEvent]:
    decoder = EventDecoder(limit)
    events = [event for piece in pieces for event in decoder.feed(piece)]
    return events + decoder.end()


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16, len(BODY)])
def test_any_cut_gives_the_same_events(size: int) -> None:
    pieces = [BODY[i : i + size] for i in range(0, len(BODY), size)]
    assert _decode(pieces) == EVENTS


def test_events_come_as_soon_as_their_blank_line_does() -> None:
    decoder = EventDecoder()
    assert decoder.feed(b"data: one\n") == []
    assert decoder.feed(b"\ndata: two\n\n") == [
        UpstreamEvent("message", "one"),
        UpstreamEvent("message", "two"),
    ]
    assert decoder.end() == []


@pytest.mark.parametrize(
    "pieces",
    [
        [b"data: " + b"x" * 200 + b"\n", b"data: " + b"y" * 200],  # one event, many lines
        [b"data: " + b"x" * 300],  # one endless line
    ],
)
def test_an_event_past_the_limit_is_refused(pieces: list[bytes]) -> None:
    with pytest.raises(ProviderError, match="larger than 256 bytes"):
        _decode(pieces, limit=256)
