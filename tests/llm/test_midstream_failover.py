"""Failover in the middle of an answer (SPEC §3.2): a deployment that dies after text has
flowed (dropped connection, in-band 5xx, stall past `timeout_s`, malformed frame) hands the
answer to the next deployment of the model, which continues it; the client sees one
`failover` event and the text with no gap and no repetition; the answer is stored whole and
its usage adds up every attempt."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from tests.answers.test_websocket import chat as ws_chat
from tests.answers.test_websocket import done_of, frames_until, signed_in, token_of
from tests.conftest import scripted
from tests.llm.conftest import complete, complete_streamed, only, streamed_text, text_of
from tests.mcp.test_chat_tools import tools_ready
from tests.support.upstream import ScriptedUpstream
from tests.usage.helpers import usage_rows
from vektor.llm.continuation import CONTINUE_INSTRUCTION

pytestmark = pytest.mark.timeout(60)

ASK = {"model": "m", "messages": [{"role": "user", "content": "hola"}]}
DYING = "chunks=6;text=a b c d e f;{kind}=3"  # sends "a b c", then fails
CONTINUING = "chunks=5;text=b c d e f"  # repeats "b c", as a model told to go on may


def openai(server: ScriptedUpstream, script: str, **extra: Any) -> dict[str, Any]:
    """An OpenAI-compatible deployment of the public model `m` on a scripted server."""
    return scripted(server, script, name="m", **extra)


def anthropic(server: ScriptedUpstream, script: str, **extra: Any) -> dict[str, Any]:
    """An Anthropic deployment of `m` on a scripted server."""
    return {
        "name": "m",
        "provider": "anthropic",
        "model": script,
        "base_url": f"http://127.0.0.1:{server.port}",
        "api_key": "ak-test",
        "timeout_s": 5,
        **extra,
    }


async def stored_answer(chat: Any, events: list[dict[str, Any]]) -> dict[str, Any]:
    """The stored assistant message of a /chat/stream answer."""
    conversation = only(events, "start")["conversation_id"]
    history = await chat.client.get(f"/chat/history/{conversation}", headers=chat.headers)
    message: dict[str, Any] = history.json()["messages"][-1]
    assert message["role"] == "assistant"
    return message


@pytest.mark.parametrize("kind", ["drop", "fail", "bad", "hang"])
async def test_each_failure_mid_answer_is_continued_by_the_next_deployment(
    chat_harness, upstreams, upstream, kind
):
    dying, standby = upstreams[0], upstreams[1]
    # The stalled one is given up on after its own timeout_s; weight 0 makes it the standby.
    chat = await chat_harness(
        [
            openai(dying, DYING.format(kind=kind), timeout_s=0.5 if kind == "hang" else 5),
            openai(standby, CONTINUING, weight=0),
        ]
    )
    status, events, _ = await chat.stream(ASK)
    assert status == 200
    kinds = [e["type"] for e in events]
    assert kinds.count("failover") == 1
    assert "error" not in kinds
    failover = only(events, "failover")
    assert {k: failover[k] for k in ("from", "to", "at_chars")} == {
        "from": "m#0",
        "to": "m#1",
        "at_chars": 5,
    }
    assert kinds.index("failover") == 4  # start, three deltas, then the switch
    assert text_of(events) == "a b c d e f"  # " b c" written again by the next: trimmed
    assert events[-1]["finish_reason"] == "stop"
    assert (await stored_answer(chat, events))["content"] == "a b c d e f"
    asked = standby.requests[-1]["messages"]
    assert asked[-2:] == [
        {"role": "assistant", "content": "a b c"},
        {"role": "user", "content": CONTINUE_INSTRUCTION},
    ]
    assert asked[0] == {"role": "user", "content": "hola"}
    # The dead attempt reported nothing: estimated (4 + 5 characters); the next reported 11 + 5.
    usage = only(events, "usage")
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (1 + 11, 2 + 5)
    [row] = await usage_rows(chat.app)
    assert (row.prompt_tokens, row.completion_tokens) == (12, 7)
    assert (row.deployment, row.estimated, row.finish_reason) == ("m#1", True, "stop")
    status_rows = chat.app.state.vektor.balancer.status()["m"]
    assert status_rows[0]["failures"] == 1
    assert status_rows[0]["state"] == "cooldown"


async def test_anthropic_continues_the_partial_answer_by_prefill(chat_harness, upstreams, upstream):
    dying, standby = upstreams[0], upstreams[1]
    chat = await chat_harness(
        [
            anthropic(dying, "chunks=6;text=uno dos tres cuatro;fail=3"),
            anthropic(standby, "chunks=2;text=, cuatro", weight=0),
        ]
    )
    status, events, _ = await chat.stream(ASK)
    assert status == 200
    assert only(events, "failover")["at_chars"] == len("uno dos tres")
    assert text_of(events) == "uno dos tres, cuatro"
    assert standby.requests[-1]["messages"] == [
        {"role": "user", "content": "hola"},
        {"role": "assistant", "content": "uno dos tres"},
    ]
    usage = only(events, "usage")
    # The dead one reported its counts only at its end, which never came: estimated.
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (1 + 7, 3 + 2)
    assert (await stored_answer(chat, events))["content"] == "uno dos tres, cuatro"


async def test_an_openai_answer_continued_on_anthropic_and_an_entry_that_says_prefill(
    chat_harness, upstreams, upstream
):
    dying, standby, third = upstreams
    chat = await chat_harness(
        [
            openai(dying, "chunks=6;text=uno dos tres;drop=2"),
            anthropic(standby, "chunks=3;text=. Y tres;drop=2", weight=0),
            openai(third, "chunks=1;text=!", continuation="prefill", weight=0),
        ]
    )
    status, events, _ = await chat.stream(ASK)
    assert status == 200
    switches = [(e["from"], e["to"], e["at_chars"]) for e in events if e["type"] == "failover"]
    # One event per switch: m#0 died after "uno dos", m#1 after ". Y".
    assert switches == [("m#0", "m#1", 7), ("m#1", "m#2", 10)]
    assert text_of(events) == "uno dos. Y!"
    assert standby.requests[-1]["messages"][-1] == {"role": "assistant", "content": "uno dos"}
    assert third.requests[-1]["messages"][-1] == {"role": "assistant", "content": "uno dos. Y"}
    assert (await stored_answer(chat, events))["content"] == "uno dos. Y!"


async def test_tools_already_run_are_not_run_again(
    chat_harness, upstreams, upstream, mcp_servers, url, tmp_path
):
    counter = tmp_path / "runs.txt"
    port = mcp_servers.start("replica-mid")
    call = f"tool=tools__increment;args={json.dumps({'path': str(counter)})}"
    dying, standby = upstreams[0], upstreams[1]
    chat = await chat_harness(
        [
            # Round one calls the tool; round two (after its result) dies after "uno dos".
            openai(dying, f"chunks=4;text=uno dos tres cuatro;drop=2;late;{call}"),
            openai(standby, "chunks=2;text=dos fin", weight=0),
        ],
        mcp=[{"name": "tools", "url": url(port)}],
    )
    await tools_ready(chat)
    status, events, _ = await chat.stream(ASK)
    assert status == 200
    assert counter.read_text().splitlines() == ["replica-mid"]  # run once
    kinds = [e["type"] for e in events]
    assert kinds.count("tool_call") == 1
    assert kinds.count("tool_result") == 1
    assert kinds.count("failover") == 1
    assert text_of(events) == "uno dos tres cuatrouno dos fin"
    asked = standby.requests[-1]["messages"]
    assert [m["role"] for m in asked] == ["user", "assistant", "tool", "assistant", "user"]
    assert asked[2]["content"] == "incremented"
    assert asked[3] == {"role": "assistant", "content": "uno dos"}
    assert events[-1]["finish_reason"] == "stop"


@pytest.mark.parametrize("off", ["dying", "standby"])
async def test_the_switch_off_on_either_entry_ends_with_error(
    chat_harness, upstreams, upstream, off
):
    dying, standby = upstreams[0], upstreams[1]
    chat = await chat_harness(
        [
            openai(dying, DYING.format(kind="drop"), mid_stream_failover=off != "dying"),
            openai(standby, CONTINUING, weight=0, mid_stream_failover=off != "standby"),
        ]
    )
    status, events, _ = await chat.stream(ASK)
    assert status == 200
    assert [e["type"] for e in events][-3:] == ["error", "usage", "done"]
    assert "failover" not in [e["type"] for e in events]
    assert events[-1]["finish_reason"] == "error"
    assert standby.requests == []
    assert (await stored_answer(chat, events))["content"] == "a b c"


async def test_a_model_with_one_deployment_ends_with_error_as_before(chat_harness, upstream):
    chat = await chat_harness([openai(upstream, DYING.format(kind="fail"))])
    status, events, _ = await chat.stream(ASK)
    assert status == 200
    assert [e["type"] for e in events][-3:] == ["error", "usage", "done"]
    assert "failover" not in [e["type"] for e in events]
    assert text_of(events) == "a b c"
    assert (await stored_answer(chat, events))["finish_reason"] == "error"
    # Nothing took over, so the deployment is not put in cooldown for the next answer.
    assert chat.app.state.vektor.balancer.status()["m"][0]["state"] == "healthy"


async def test_when_the_continuation_dies_too_the_whole_partial_answer_is_stored(
    chat_harness, upstreams, upstream
):
    dying, standby = upstreams[0], upstreams[1]
    chat = await chat_harness(
        [
            openai(dying, DYING.format(kind="drop")),
            openai(standby, "chunks=5;text=b c d e f;drop=3", weight=0),
        ]
    )
    status, events, _ = await chat.stream(ASK)
    assert status == 200
    kinds = [e["type"] for e in events]
    assert kinds.count("failover") == 1
    assert kinds[-3:] == ["error", "usage", "done"]
    assert text_of(events) == "a b c d"
    stored = await stored_answer(chat, events)
    assert (stored["content"], stored["finish_reason"]) == ("a b c d", "error")


async def test_v1_streamed_and_not_continue_without_a_failover_chunk(
    chat_harness, upstreams, upstream
):
    dying, standby = upstreams[0], upstreams[1]
    chat = await chat_harness(
        [openai(dying, DYING.format(kind="drop")), openai(standby, CONTINUING, weight=0)]
    )
    chunks = await complete_streamed(chat, "m")
    assert streamed_text(chunks) == "a b c d e f"
    assert all(set(c) <= {"id", "object", "created", "model", "choices", "usage"} for c in chunks)
    assert chunks[-1]["usage"]["completion_tokens"] == 7
    chat.app.state.vektor.balancer.deployments["m"][0].breaker.record_success()
    answer = await complete(chat, "m")
    assert answer["choices"][0]["message"]["content"] == "a b c d e f"
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"]["prompt_tokens"] == 12


async def test_the_websocket_gets_the_failover_frame(chat_harness, upstreams, upstream):
    dying, standby = upstreams[0], upstreams[1]
    harness = await chat_harness(
        [openai(dying, DYING.format(kind="fail")), openai(standby, CONTINUING, weight=0)],
        live=True,
    )
    base = str(harness.client.base_url)
    async with await signed_in(base, token_of(harness.headers)) as socket:
        await socket.send(ws_chat("r1", model="m"))
        frames = await frames_until(socket, done_of("r1"))
    [failover] = [f for f in frames if f["type"] == "failover"]
    assert (failover["from"], failover["to"], failover["at_chars"]) == ("m#0", "m#1", 5)
    assert failover["request_id"] == "r1"
    assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
    assert "".join(f["content"] for f in frames if f["type"] == "delta") == "a b c d e f"
    assert frames[-1]["finish_reason"] == "stop"


@pytest.mark.timeout(180)
async def test_the_local_model_finishes_an_answer_a_remote_one_dropped(chat_harness, upstream):
    chat = await chat_harness(
        [
            openai(upstream, "chunks=20;text=Hola amigo;drop=3"),
            {"name": "m", "provider": "local", "model": "smollm2", "weight": 0, "max_tokens": 16},
        ]
    )
    status, events, _ = await chat.stream(ASK)
    assert status == 200
    failover = only(events, "failover")
    assert (failover["from"], failover["to"], failover["at_chars"]) == ("m#0", "m#1", 15)
    text = text_of(events)
    assert text.startswith("Hola amigo Hola")
    assert len(text) > len("Hola amigo Hola")  # the local model wrote on
    assert "error" not in [e["type"] for e in events]
    assert events[-1]["finish_reason"] in ("stop", "length")
    stored = await stored_answer(chat, events)
    assert stored["content"] == text
    usage = only(events, "usage")
    assert usage["completion_tokens"] > (len("Hola amigo Hola") + 3) // 4  # both attempts


async def test_each_attempt_is_priced_at_its_deployments_rates(chat_harness, upstreams, upstream):
    dying, standby = upstreams[0], upstreams[1]
    chat = await chat_harness(
        [
            openai(dying, DYING.format(kind="drop"), input_cost_per_mtok=1, output_cost_per_mtok=2),
            openai(standby, CONTINUING, weight=0, input_cost_per_mtok=10, output_cost_per_mtok=20),
        ]
    )
    status, events, _ = await chat.stream(ASK)
    assert status == 200
    assert only(events, "failover")["to"] == "m#1"
    [row] = await usage_rows(chat.app)
    # The dead one's estimate (1 + 2 tokens) at its rates, the next one's (11 + 5) at its own.
    assert row.cost == Decimal(1 * 1 + 2 * 2 + 11 * 10 + 5 * 20) / 1_000_000
