"""Every native provider fails over past a dead endpoint and past one that stalls for
longer than its `timeout_s` before answering."""

from __future__ import annotations

import time

import pytest

from tests.llm.conftest import text_of
from tests.llm.test_azure import azure
from tests.llm.test_bedrock import bedrock
from tests.llm.test_gemini import gemini
from tests.llm.test_ollama import ollama

ENTRIES = {"azure": azure, "bedrock": bedrock, "gemini": gemini, "ollama": ollama}


def entry(provider: str, server, script: str, **extra: object) -> dict[str, object]:
    """An entry of that provider for the double, under the public name `m`."""
    return ENTRIES[provider](server, script, name="m", **extra)


@pytest.mark.parametrize("provider", sorted(ENTRIES))
async def test_a_dead_endpoint_fails_over(chat_harness, native, provider):
    dead = entry(provider, native[0], "chunks=1", base_url="http://127.0.0.1:9", weight=1000)
    standby = entry(provider, native[1], "chunks=2;text=ok", weight=0)  # always tried last
    chat = await chat_harness([dead, standby])
    status, events, _ = await chat.stream(
        {"model": "m", "messages": [{"role": "user", "content": "hola"}]}
    )
    assert status == 200
    assert text_of(events) == "ok ok"
    [row, _] = chat.app.state.vektor.balancer.status()["m"]
    assert "unreachable" in row["last_error"]


@pytest.mark.parametrize("provider", sorted(ENTRIES))
async def test_a_stalled_endpoint_fails_over_after_its_timeout(chat_harness, native, provider):
    stalled = entry(provider, native[0], "stall=3;chunks=1", timeout_s=0.5, weight=1000)
    standby = entry(provider, native[1], "chunks=2;text=ok", weight=0)  # always tried last
    chat = await chat_harness([stalled, standby])
    started = time.monotonic()
    status, events, _ = await chat.stream(
        {"model": "m", "messages": [{"role": "user", "content": "hola"}]}
    )
    assert status == 200
    assert text_of(events) == "ok ok"
    assert time.monotonic() - started < 2.5  # the stalled one was given up on
    assert (len(native[0].requests), len(native[1].requests)) == (1, 1)


@pytest.mark.parametrize("kind", ["drop", "fail"])
@pytest.mark.parametrize("provider", sorted(ENTRIES))
async def test_an_answer_cut_off_mid_stream_is_continued(chat_harness, native, provider, kind):
    dying = entry(provider, native[0], f"chunks=6;text=a b c d e f;{kind}=3")
    standby = entry(provider, native[1], "chunks=5;text=b c d e f", weight=0)
    chat = await chat_harness([dying, standby])
    status, events, _ = await chat.stream(
        {"model": "m", "messages": [{"role": "user", "content": "hola"}]}
    )
    assert status == 200
    [failover] = [e for e in events if e["type"] == "failover"]
    assert (failover["from"], failover["to"], failover["at_chars"]) == ("m#0", "m#1", 5)
    assert text_of(events) == "a b c d e f"  # the repeated "b c" trimmed
    assert events[-1]["finish_reason"] == "stop"
    assert len(native[1].requests) == 1
