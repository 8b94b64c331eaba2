"""The Bedrock provider's event-stream reading on frames the scripted server does not send:
exceptions inside the stream, corrupt or oversized frames, stop reasons, cut answers. The
frames come from the test's own writer (AWS's documented format), split anywhere."""

from __future__ import annotations

import json

import pytest

from tests.support.bedrock_upstream import event, exception, frame
from vektor.llm.base import Finish, ProviderError, TextDelta, ToolCall, Usage
from vektor.llm.providers.bedrock import FrameDecoder, _ConverseState, _RepeatedHeaders


def run(*frames: bytes, split: int = 7) -> tuple[list, _ConverseState]:
    """Feed the frames in pieces of `split` bytes; the events and the state."""
    data = b"".join(frames)
    decoder, state, events = FrameDecoder(), _ConverseState(), []
    for start in range(0, len(data), split):
        for message in decoder.feed(data[start : start + split]):
            events.extend(state.feed(message))
    return events, state


def delta(text: str, index: int = 0) -> bytes:
    return event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": text}})


@pytest.mark.parametrize(
    ("stop", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
    ],
)
def test_stop_reasons_and_usage(stop, expected):
    usage = {"usage": {"inputTokens": 4, "outputTokens": 2, "totalTokens": 6}}
    events, state = run(
        event("messageStart", {"role": "assistant"}),
        delta("ho"),
        delta("la"),
        event("messageStop", {"stopReason": stop}),
        event("metadata", usage),
        split=5,
    )
    assert events == [TextDelta("ho"), TextDelta("la")]
    assert state.finish() == [Usage(4, 2), Finish(expected)]


def test_tool_use_input_is_assembled_from_its_pieces():
    start = {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t-1", "name": "f"}}}
    pieces = ['{"x"', ": 1}"]
    _, state = run(
        event("contentBlockStart", start),
        *(
            event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": p}}})
            for p in pieces
        ),
        event("contentBlockStop", {"contentBlockIndex": 1}),
        event("messageStop", {"stopReason": "tool_use"}),
    )
    assert state.finish() == [ToolCall("t-1", "f", '{"x": 1}'), Finish("tool_calls")]


@pytest.mark.parametrize(
    ("kind", "retryable"),
    [
        ("throttlingException", True),
        ("internalServerException", True),
        ("modelStreamErrorException", True),
        ("serviceUnavailableException", True),
        ("validationException", False),
    ],
)
def test_an_exception_inside_the_stream(kind, retryable):
    with pytest.raises(ProviderError, match=f"{kind}: boom") as failure:
        run(delta("a"), exception(kind, "boom"))
    assert failure.value.retryable is retryable


def test_a_corrupt_frame_is_a_retryable_failure():
    good = delta("a")
    corrupt = good[:-5] + bytes([good[-5] ^ 1]) + good[-4:]  # one payload bit flipped
    with pytest.raises(ProviderError, match="broken frame") as failure:
        run(corrupt)
    assert failure.value.retryable


def test_a_frame_may_not_grow_past_the_limit():
    decoder = FrameDecoder(limit=1000)
    big = frame({":message-type": "event"}, b"x" * 5000)
    assert decoder.feed(big[:900]) == []
    with pytest.raises(ProviderError, match="over 1000 bytes"):
        decoder.feed(big[900:1200])


def test_an_answer_without_message_stop_was_cut():
    _, state = run(delta("half"))
    with pytest.raises(ProviderError, match="without messageStop") as failure:
        state.finish()
    assert failure.value.retryable


def test_a_whole_converse_answer():
    state = _ConverseState()
    content = [{"text": "hi"}, {"toolUse": {"toolUseId": "t", "name": "f", "input": {"a": 1}}}]
    body = {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 3, "outputTokens": 5},
    }
    assert state.whole(json.dumps(body)) == [TextDelta("hi")]
    assert state.finish() == [ToolCall("t", "f", '{"a":1}'), Usage(3, 5), Finish("tool_calls")]
    with pytest.raises(ProviderError, match="malformed answer"):
        _ConverseState().whole(json.dumps({"output": {}}))


def test_remembered_header_blocks_are_bounded_and_parsed_right():
    many = [frame({":message-type": "event", ":event-type": f"kind{n}"}, b"{}") for n in range(100)]
    large = frame({":message-type": "event", ":event-type": "x" * 300}, b"{}")
    decoder = FrameDecoder()
    messages = decoder.feed(b"".join([*many, large, *many]))
    kinds = [m.headers[":event-type"] for m in messages]
    assert kinds == [f"kind{n}" for n in range(100)] + ["x" * 300] + [
        f"kind{n}" for n in range(100)
    ]
    assert len(_RepeatedHeaders.seen) <= _RepeatedHeaders.KEEP
    assert all(len(block) <= _RepeatedHeaders.LARGEST for block in _RepeatedHeaders.seen)
