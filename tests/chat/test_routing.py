"""Failover between deployments, weights, cooldown and recovery."""

import asyncio

from tests.chat.test_jobs import BODY
from tests.conftest import scripted

DEAD = {
    "name": "scripted",
    "provider": "openai",
    "model": "chunks=1",
    "base_url": "http://127.0.0.1:9/v1",
    "timeout_s": 2,
    "weight": 1000,
}


async def test_failover_past_a_dead_deployment(chat_harness, upstream):
    chat = await chat_harness([DEAD, scripted(upstream, "chunks=2;text=ok")])
    for _ in range(5):
        status, events, _ = await chat.stream(BODY)
        assert status == 200
        assert events[-1]["finish_reason"] == "stop"
    assert len(upstream.requests) == 5
    status = chat.app.state.vektor.balancer.status()["scripted"]
    dead = next(d for d in status if "127.0.0.1:9/" in (d["base_url"] or ""))
    assert dead["failures"] == 1  # then it cooled down and was not tried again
    assert dead["state"] == "cooldown"
    assert "unreachable" in dead["last_error"]


async def test_failover_on_429_and_5xx(chat_harness, upstreams):
    for server in upstreams:
        server.reset()
    chat = await chat_harness(
        [
            scripted(upstreams[0], "status=429", weight=1000),
            scripted(upstreams[1], "status=502", weight=100),
            scripted(upstreams[2], "chunks=1", weight=0),  # a standby: always tried last
        ]
    )
    status, _events, _ = await chat.stream(BODY)
    assert status == 200
    assert [len(s.requests) for s in upstreams] == [1, 1, 1]


async def test_load_spread_by_weight(chat_harness, upstreams):
    for server in upstreams:
        server.reset()
    chat = await chat_harness(
        [
            scripted(upstreams[0], "chunks=1", weight=1),
            scripted(upstreams[1], "chunks=1", weight=3),
        ]
    )
    total = 160
    for _ in range(total):
        assert (await chat.stream(BODY))[0] == 200
    light, heavy = len(upstreams[0].requests), len(upstreams[1].requests)
    assert light + heavy == total
    assert 0.13 < light / total < 0.38, (light, heavy)


async def test_standby_weight_zero_only_when_others_down(chat_harness, upstreams):
    for server in upstreams:
        server.reset()
    chat = await chat_harness(
        [
            scripted(upstreams[0], "chunks=1", weight=1),
            scripted(upstreams[1], "chunks=1", weight=0),
        ]
    )
    for _ in range(5):
        await chat.stream(BODY)
    assert len(upstreams[1].requests) == 0
    upstreams[0].forced_status = 503
    assert (await chat.stream(BODY))[0] == 200
    assert len(upstreams[1].requests) == 1


async def test_cooldown_and_recovery(chat_harness, upstreams):
    for server in upstreams:
        server.reset()
    primary, backup = upstreams[0], upstreams[1]
    chat = await chat_harness(
        [scripted(primary, "chunks=1", weight=1000), scripted(backup, "chunks=1", weight=1)],
        llm_cooldown_seconds=2,  # long enough for two streams on a busy machine
    )
    primary.forced_status = 500
    assert (await chat.stream(BODY))[0] == 200
    assert (len(primary.requests), len(backup.requests)) == (1, 1)
    # Cooling down: the primary is not even tried.
    assert (await chat.stream(BODY))[0] == 200
    assert (len(primary.requests), len(backup.requests)) == (1, 2)
    primary.forced_status = None
    await asyncio.sleep(2.1)
    assert (await chat.stream(BODY))[0] == 200
    assert (len(primary.requests), len(backup.requests)) == (2, 2)
    state = chat.app.state.vektor.balancer.status()["scripted"][0]
    assert state["state"] == "healthy"
    assert state["requests"] == 2
    assert state["failures"] == 1


async def test_credentials_in_the_url_and_a_key_is_an_answer_not_a_500(chat_harness, upstream):
    """A base_url with user-info and an api_key: the key is sent, the URL's credentials are
    dropped (aiohttp refuses both at once)."""
    with_user = upstream.base_url.replace("://", "://user:url-secret@")
    chat = await chat_harness([scripted(upstream, "chunks=2", base_url=with_user)])
    status, events, _ = await chat.stream(
        {"model": "scripted", "messages": [{"role": "user", "content": "hola"}]}
    )
    assert status == 200
    assert events[-1]["finish_reason"] == "stop"
    sent = {k.lower(): v for k, v in upstream.headers[-1].items()}
    assert sent["authorization"] == "Bearer sk-test-secret"
