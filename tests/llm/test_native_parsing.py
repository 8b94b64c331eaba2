"""The native providers' answer parsers on shapes the scripted servers do not send:
finish reasons, thoughts, errors inside a stream, cut answers."""

from __future__ import annotations

import json

import pytest

from vektor.llm.base import Finish, ProviderError, TextDelta, ToolCall, Usage
from vektor.llm.providers.gemini import _ResponseState
from vektor.llm.providers.ollama import _ChatState


def gemini_response(parts: list[dict], finish: str | None = None, **extra: object) -> str:
    candidate: dict[str, object] = {"content": {"role": "model", "parts": parts}}
    if finish:
        candidate["finishReason"] = finish
    return json.dumps({"candidates": [candidate], **extra})


@pytest.mark.parametrize(
    ("reason", "expected"),
    [("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter")],
)
def test_gemini_finish_reasons(reason, expected):
    state = _ResponseState()
    assert state.feed(gemini_response([{"text": "hi"}], reason)) == [TextDelta("hi")]
    assert state.finish()[-1] == Finish(expected)


def test_gemini_thoughts_are_not_text_and_are_billed():
    state = _ResponseState()
    usage = {"promptTokenCount": 5, "candidatesTokenCount": 2, "thoughtsTokenCount": 30}
    events = state.feed(
        gemini_response(
            [{"text": "thinking…", "thought": True}, {"text": "answer"}],
            "STOP",
            usageMetadata=usage,
        )
    )
    assert events == [TextDelta("answer")]
    assert state.finish() == [Usage(5, 32), Finish("stop")]


def test_gemini_function_calls_end_with_tool_calls():
    state = _ResponseState()
    call = {"functionCall": {"id": "fc-9", "name": "f", "args": {"x": 1}}, "thoughtSignature": "s"}
    state.feed(gemini_response([call], "STOP"))
    assert state.finish() == [
        ToolCall(id="fc-9", name="f", arguments='{"x":1}', signature="s"),
        Finish("tool_calls"),
    ]


def test_gemini_blocked_prompt_and_cut_answer():
    blocked = _ResponseState()
    blocked.feed(json.dumps({"promptFeedback": {"blockReason": "SAFETY"}}))
    assert blocked.finish() == [Finish("content_filter")]
    cut = _ResponseState()
    cut.feed(gemini_response([{"text": "half"}]))
    with pytest.raises(ProviderError, match="without a finishReason") as failure:
        cut.finish()
    assert failure.value.retryable


@pytest.mark.parametrize(("code", "retryable"), [(429, True), (503, True), (400, False)])
def test_gemini_error_inside_the_stream(code, retryable):
    error = json.dumps({"error": {"code": code, "message": "boom", "status": "X"}})
    with pytest.raises(ProviderError, match="boom") as failure:
        _ResponseState().feed(error)
    assert failure.value.retryable is retryable


def test_ollama_length_error_and_cut_answer():
    state = _ChatState()
    state.feed(json.dumps({"message": {"role": "assistant", "content": "a"}, "done": False}))
    final = {"message": {"content": ""}, "done": True, "done_reason": "length"}
    state.feed(json.dumps({**final, "prompt_eval_count": 3, "eval_count": 9}))
    assert state.finish() == [Usage(3, 9), Finish("length")]
    with pytest.raises(ProviderError, match="model not found"):
        _ChatState().feed('{"error": "model not found"}')
    cut = _ChatState()
    cut.feed(json.dumps({"message": {"content": "a"}, "done": False}))
    with pytest.raises(ProviderError, match="before `done`"):
        cut.finish()
