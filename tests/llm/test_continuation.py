"""How a continuation is asked for, and how its overlap with the partial answer is trimmed,
whatever the sizes of the pieces it arrives in."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from vektor.llm.base import ChatMessage, GenerationRequest
from vektor.llm.continuation import (
    CONTINUE_INSTRUCTION,
    OverlapTrimmer,
    continuation_request,
    overlap_trimmer,
)
from vektor.llm.deployments import load_deployments

REQUEST = GenerationRequest(messages=[ChatMessage(role="user", content="Cuenta hasta diez")])


def trimmed(partial: str, continuation: str, size: int) -> str:
    """What the client is sent of `continuation`, fed in pieces of `size` characters."""
    trimmer = OverlapTrimmer(partial)
    sent = [trimmer.feed(continuation[i : i + size]) for i in range(0, len(continuation), size)]
    return "".join(sent) + trimmer.end()


@pytest.mark.parametrize("size", [1, 2, 3, 7, 100])
@pytest.mark.parametrize(
    ("partial", "continuation", "expected"),
    [
        ("uno dos tres", " cuatro cinco", " cuatro cinco"),  # no overlap
        ("uno dos tres", "tres cuatro", " cuatro"),  # the last word again
        ("uno dos tres", "dos tres cuatro", " cuatro"),  # the last words again
        ("uno dos tres", "uno dos tres cuatro", " cuatro"),  # the whole answer again
        ("uno dos tres", "uno dos tres", ""),  # nothing but repetition
        ("uno dos tres", "dos", "dos"),  # inside the partial answer but not its end
        ("uno dos tres ", " cuatro", "cuatro"),  # whitespace written twice
        ("a a a", "a a a a b", " a b"),  # the longest overlap wins
        ("", "hola", "hola"),
    ],
)
def test_the_longest_overlap_is_trimmed(partial, continuation, expected, size):
    assert trimmed(partial, continuation, size) == expected


def test_text_is_held_only_while_it_could_be_a_repetition():
    trimmer = OverlapTrimmer("uno dos tres")
    assert trimmer.feed("tr") == ""  # could be "tres" again
    assert trimmer.feed("es") == ""
    assert trimmer.feed(" cua") == " cua"  # cannot: released, "tres" dropped
    assert trimmer.feed("tro") == "tro"  # decided: passes straight through
    assert trimmer.end() == ""


def test_instruct_asks_in_a_user_message_after_the_partial_answer():
    request = continuation_request(REQUEST, "uno dos ", prefill=False)
    assert [m.role for m in request.messages] == ["user", "assistant", "user"]
    assert request.messages[1].content == "uno dos "
    assert request.messages[2].content == CONTINUE_INSTRUCTION
    assert REQUEST.messages == [ChatMessage(role="user", content="Cuenta hasta diez")]


def test_prefill_ends_with_the_partial_answer_without_trailing_whitespace():
    request = continuation_request(REQUEST, "uno dos \n", prefill=True)
    assert [m.role for m in request.messages] == ["user", "assistant"]
    assert request.messages[-1].content == "uno dos"
    trimmer = overlap_trimmer("uno dos \n", prefill=True)
    # Only what the model was not shown can be repeated; its own words are kept.
    assert trimmer.feed(" \ndos") == "dos"


def test_nothing_written_yet_is_the_request_itself():
    assert continuation_request(REQUEST, "", prefill=False) is REQUEST
    assert continuation_request(REQUEST, "  ", prefill=True) is REQUEST
    assert overlap_trimmer("", prefill=False).feed("hola") == "hola"


@pytest.mark.parametrize(
    ("field", "value"), [("continuation", "guess"), ("mid_stream_failover", "sometimes")]
)
def test_an_entry_with_a_bad_failover_setting_is_refused_when_read(tmp_path, field, value):
    entry = {"name": "m", "provider": "openai", "model": "x", field: value}
    (tmp_path / "model_configs.json").write_text(json.dumps([entry]))
    with pytest.raises(ValidationError) as refused:
        load_deployments(tmp_path)
    assert field in str(refused.value)


def test_the_failover_settings_default_to_on_and_the_providers_way(tmp_path):
    entries = [
        {"name": "m", "provider": "openai", "model": "x"},
        {"name": "m", "provider": "anthropic", "model": "y", "mid_stream_failover": False},
    ]
    (tmp_path / "model_configs.json").write_text(json.dumps(entries))
    first, second = load_deployments(tmp_path)
    assert (first.mid_stream_failover, first.continuation) == (True, None)
    assert (second.mid_stream_failover, second.continuation) == (False, None)
