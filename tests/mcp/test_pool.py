"""The MCP pool against real MCP servers: weights, failover rules, catalogs."""

import asyncio
import time
from collections import Counter

from vektor.mcp.config import McpServerConfig
from vektor.mcp.pool import McpPool, Replica


def pool_of(*entries):
    return McpPool("tools", [Replica(McpServerConfig(name="tools", **e)) for e in entries])


async def test_weighted_split(mcp_servers, url):
    a, b = mcp_servers.start("a"), mcp_servers.start("b")
    pool = pool_of({"url": url(a), "weight": 3}, {"url": url(b), "weight": 1})
    await pool.refresh()
    assert {"whoami", "add", "lookup", "increment", "fail"} <= set(pool.tools)
    seen = Counter()
    for _ in range(60):
        result = await pool.call("whoami", {}, deadline_s=10)
        assert not result.is_error
        seen[result.content] += 1
    assert seen["a"] + seen["b"] == 60
    assert 0.55 < seen["a"] / 60 < 0.92, seen


async def test_unreachable_replica_fails_over_for_any_tool(mcp_servers, url, tmp_path):
    live = mcp_servers.start("live")
    dead = mcp_servers.start("dead")
    pool = pool_of({"url": url(dead), "weight": 1000}, {"url": url(live), "weight": 1})
    await pool.refresh()
    mcp_servers.kill(dead)  # down before the call: the request never reaches it
    counter = tmp_path / "runs.txt"
    result = await pool.call("increment", {"path": str(counter)}, deadline_s=10)
    assert not result.is_error
    assert counter.read_text().splitlines() == ["live"]
    assert pool.replicas[0].failures == 1


async def test_non_idempotent_tool_is_not_retried_after_a_crash(mcp_servers, url, tmp_path):
    first, second = mcp_servers.start("first"), mcp_servers.start("second")
    pool = pool_of({"url": url(first), "weight": 1000}, {"url": url(second), "weight": 1})
    await pool.refresh()
    counter = tmp_path / "runs.txt"
    call = asyncio.create_task(
        pool.call("increment", {"path": str(counter), "delay": 5}, deadline_s=20)
    )
    for _ in range(100):
        if counter.exists():
            break
        await asyncio.sleep(0.05)
    mcp_servers.kill(first)  # dies mid-call
    result = await call
    assert result.is_error
    assert "unknown" in result.content
    assert counter.read_text().splitlines() == ["first"]  # ran once, never twice


async def test_read_only_tool_is_retried_after_a_crash(mcp_servers, url):
    first, second = mcp_servers.start("first"), mcp_servers.start("second")
    pool = pool_of({"url": url(first), "weight": 1000}, {"url": url(second), "weight": 1})
    await pool.refresh()
    call = asyncio.create_task(pool.call("lookup", {"key": "k", "delay": 1}, deadline_s=20))
    await asyncio.sleep(0.5)
    mcp_servers.kill(first)
    result = await call
    assert not result.is_error
    assert result.content == "k@second"


async def test_tool_errors_go_back_without_retry(mcp_servers, url):
    a, b = mcp_servers.start("a"), mcp_servers.start("b")
    pool = pool_of({"url": url(a)}, {"url": url(b)})
    await pool.refresh()
    result = await pool.call("fail", {}, deadline_s=10)
    assert result.is_error
    assert "fail" in result.content
    assert sum(r.calls for r in pool.replicas) == 1


async def test_all_down_is_a_clean_error_within_the_deadline(mcp_servers, url):
    a = mcp_servers.start("a")
    pool = pool_of({"url": url(a)})
    await pool.refresh()
    mcp_servers.kill(a)
    started = asyncio.get_running_loop().time()
    result = await pool.call("whoami", {}, deadline_s=5)
    assert result.is_error
    assert asyncio.get_running_loop().time() - started < 5


async def test_replica_with_a_different_catalog_is_excluded(mcp_servers, url):
    a, odd = mcp_servers.start("a"), mcp_servers.start("odd", "--extra")
    pool = pool_of({"url": url(a)}, {"url": url(odd)})
    await pool.refresh()
    assert pool.replicas[1].excluded
    for _ in range(5):
        assert (await pool.call("whoami", {}, deadline_s=10)).content == "a"


async def test_stdio_server(tmp_path):
    import sys

    from tests.mcp.conftest import ROOT

    command = [sys.executable, "-m", "tests.support.mcp_server", "stdio", "piped"]
    pool = McpPool(
        "local",
        [
            Replica(
                McpServerConfig(
                    name="local", transport="stdio", command=command, env={"PYTHONPATH": str(ROOT)}
                )
            )
        ],
    )
    await pool.refresh()
    assert "whoami" in pool.tools
    result = await pool.call("add", {"a": 2, "b": 40}, deadline_s=20)
    assert not result.is_error
    assert result.content == "42"


async def test_replica_restarted_on_the_same_port(mcp_servers, url):
    port = mcp_servers.start("before")
    pool = pool_of({"url": url(port)})
    await pool.refresh()
    assert (await pool.call("whoami", {}, deadline_s=10)).content == "before"
    mcp_servers.kill(port)
    mcp_servers.start("after", port=port)
    pool.replicas[0].breaker.cooldown_until = 0  # as a health probe would, once it answers
    assert (await pool.call("whoami", {}, deadline_s=10)).content == "after"


async def test_hung_replica_times_out_opens_breaker_and_recovers(mcp_servers, url):
    import signal

    hung, healthy = mcp_servers.start("hung"), mcp_servers.start("healthy")
    pool = pool_of(
        {"url": url(hung), "weight": 1000, "timeout_s": 1}, {"url": url(healthy), "weight": 1}
    )
    await pool.refresh()
    mcp_servers.signal(hung, signal.SIGSTOP)
    try:
        result = await pool.call("lookup", {"key": "k"}, deadline_s=10)
        assert result.content == "k@healthy"  # read-only: retried elsewhere after the timeout
        assert not pool.replicas[0].available(time.monotonic())  # breaker open
        assert pool.replicas[0].failures == 1
        # Breaker open: the hung replica is not tried again while it cools down.
        assert (await pool.call("whoami", {}, deadline_s=10)).content == "healthy"
        assert pool.replicas[0].calls == 1
    finally:
        mcp_servers.signal(hung, signal.SIGCONT)
    await asyncio.sleep(2.2)  # the first cooldown
    assert (await pool.call("whoami", {}, deadline_s=10)).content == "hung"


async def test_legacy_sse_transport(mcp_servers):
    port = mcp_servers.start("legacy", "--sse")
    pool = pool_of({"url": f"http://127.0.0.1:{port}/sse", "transport": "sse"})
    await pool.refresh()
    assert "whoami" in pool.tools
    assert (await pool.call("whoami", {}, deadline_s=10)).content == "legacy"


async def test_custom_headers(mcp_servers, url):
    port = mcp_servers.start("with-headers")
    pool = pool_of({"url": url(port), "headers": {"X-Api-Key": "secret-value"}})
    await pool.refresh()
    assert (await pool.call("whoami", {}, deadline_s=10)).content == "with-headers"
    status = pool.replicas[0].status()
    assert status["headers"] == {"X-Api-Key": "***"}
    assert "secret-value" not in str(status)


async def test_standby_is_used_only_when_every_weighted_replica_is_down(mcp_servers, url):
    a, b, standby = mcp_servers.start("a"), mcp_servers.start("b"), mcp_servers.start("standby")
    pool = pool_of(
        {"url": url(a), "weight": 1},
        {"url": url(b), "weight": 1},
        {"url": url(standby), "weight": 0},
    )
    await pool.refresh()
    seen = Counter([(await pool.call("whoami", {}, deadline_s=10)).content for _ in range(30)])
    assert set(seen) == {"a", "b"}, seen
    mcp_servers.kill(a)
    assert (await pool.call("whoami", {}, deadline_s=10)).content == "b"
    mcp_servers.kill(b)
    assert (await pool.call("whoami", {}, deadline_s=10)).content == "standby"
    assert pool.replicas[2].calls == 1


async def test_progress_keeps_a_slow_tool_alive_past_the_silence_limit(mcp_servers, url, tmp_path):
    port = mcp_servers.start("slow")
    pool = pool_of({"url": url(port), "timeout_s": 1})
    await pool.refresh()
    marks = tmp_path / "marks.txt"
    heard = []

    async def progressed(progress, total, message):
        heard.append((progress, total, message))

    started = time.monotonic()
    arguments = {"path": str(marks), "steps": 8, "step_s": 0.3}
    result = await pool.call("slow", arguments, deadline_s=20, on_progress=progressed)
    assert not result.is_error, result.content
    assert time.monotonic() - started > 2  # longer than the 1 s silence limit
    assert result.content == "done in 8 steps"
    assert heard == [(i, 8, f"step {i}") for i in range(1, 9)]
    assert marks.read_text().splitlines() == ["started", "finished"]


async def test_silence_past_the_limit_is_a_timeout(mcp_servers, url, tmp_path):
    port = mcp_servers.start("quiet")
    pool = pool_of({"url": url(port), "timeout_s": 1})
    await pool.refresh()
    started = time.monotonic()
    result = await pool.call("lookup", {"key": "k", "delay": 5}, deadline_s=20)
    assert result.is_error
    assert time.monotonic() - started < 3
    assert pool.replicas[0].failures == 1


async def test_latency_is_kept_per_replica(mcp_servers, url):
    port = mcp_servers.start("timed")
    pool = pool_of({"url": url(port)})
    await pool.refresh()
    assert pool.replicas[0].status()["latency_ms"] is None
    await pool.call("lookup", {"key": "k", "delay": 0.2}, deadline_s=10)
    await pool.call("whoami", {}, deadline_s=10)
    latency = pool.replicas[0].status()["latency_ms"]
    assert latency["p95"] >= 200
    assert 0 < latency["last"] < 200
    assert latency["p50"] >= latency["last"]


async def test_server_on_the_older_protocol_revision(mcp_servers, url, mcp_v1_python):
    streamable = mcp_servers.start("old", python=mcp_v1_python)
    legacy_sse = mcp_servers.start("old-sse", "--sse", python=mcp_v1_python)
    for entry, name in (
        ({"url": url(streamable)}, "old"),
        ({"url": f"http://127.0.0.1:{legacy_sse}/sse", "transport": "sse"}, "old-sse"),
    ):
        pool = pool_of(entry)
        await pool.refresh()
        assert set(pool.tools) == {"whoami", "add"}
        assert pool.tools["add"].annotations.read_only_hint is True
        assert (await pool.call("whoami", {}, deadline_s=10)).content == name
        assert (await pool.call("add", {"a": 1, "b": 2}, deadline_s=10)).content == "3"


async def test_half_open_breaker_lets_one_call_test_the_replica(mcp_servers, url):
    import signal

    slow, other = mcp_servers.start("recovering"), mcp_servers.start("other")
    pool = pool_of(
        {"url": url(slow), "weight": 1000, "timeout_s": 1}, {"url": url(other), "weight": 1}
    )
    await pool.refresh()
    mcp_servers.signal(slow, signal.SIGSTOP)
    try:
        assert (await pool.call("lookup", {"key": "k"}, deadline_s=10)).content == "k@other"
    finally:
        mcp_servers.signal(slow, signal.SIGCONT)
    pool.replicas[0].breaker.cooldown_until = 0  # the cooldown is over: half-open
    answers = await asyncio.gather(
        *(pool.call("lookup", {"key": "k", "delay": 0.5}, deadline_s=10) for _ in range(4))
    )
    # One call tested the replica; the others went elsewhere meanwhile.
    assert sorted(a.content for a in answers) == ["k@other"] * 3 + ["k@recovering"]
    assert pool.replicas[0].status()["healthy"]


def test_a_lost_session_is_safe_to_retry():
    from mcp.shared.exceptions import MCPError

    from vektor.mcp.attempts import Broken, SessionLost, classify

    lost = ExceptionGroup("call", [MCPError(-32600, "Session terminated")])
    assert isinstance(classify(lost), SessionLost)
    assert isinstance(classify(MCPError(-32001, "Session not found")), SessionLost)
    assert isinstance(classify(MCPError(-32603, "Internal error")), Broken)


async def test_tool_lists_are_asked_again_only_when_the_servers_ttl_ran_out(mcp_servers, url):
    hinted = mcp_servers.start("hinted", "--ttl-ms=60000")
    brief = mcp_servers.start("brief", "--ttl-ms=1")
    plain = mcp_servers.start("plain")
    pools = [pool_of({"url": url(port)}) for port in (hinted, brief, plain)]
    for _ in range(3):
        for pool in pools:
            await pool.refresh()
            assert "whoami" in pool.tools
    # fresh for a minute: listed once; stale after 1 ms, or no hint (ttlMs 0): every probe
    assert [pool.replicas[0].listings for pool in pools] == [1, 3, 3]
    fresh_for = pools[0].replicas[0].tools_fresh_until - time.monotonic()
    assert 0 < fresh_for <= 60
    # a replica that failed is asked again whatever its hint said
    pools[0].replicas[0].record_failure("down")
    await pools[0].refresh()
    assert pools[0].replicas[0].listings == 2


async def test_calls_to_a_stateless_server_adopt_the_probe_s_discovery(
    mcp_servers, url, mcp_v1_python
):
    current = pool_of({"url": url(mcp_servers.start("new"))})
    await current.refresh()
    version, discovered = current.replicas[0].modern
    assert version == "2026-07-28"
    assert "2026-07-28" in discovered.supported_versions
    assert (await current.call("add", {"a": 1, "b": 2}, deadline_s=10)).content == "3"
    older = pool_of({"url": url(mcp_servers.start("old", python=mcp_v1_python))})
    await older.refresh()
    assert older.replicas[0].modern is None  # 2025-11-25: initialize, sessions
    assert (await older.call("add", {"a": 1, "b": 2}, deadline_s=10)).content == "3"


def _client_of(replica):
    held = replica._live._current
    return held.opened.result() if held is not None else None


async def test_calls_share_one_client_rebuilt_after_its_replica_restarts(mcp_servers, url):
    port = mcp_servers.start("before")
    pool = pool_of({"url": url(port)})
    await pool.refresh()
    try:
        assert (await pool.call("whoami", {}, deadline_s=10)).content == "before"
        first = _client_of(pool.replicas[0])
        assert (await pool.call("add", {"a": 1, "b": 2}, deadline_s=10)).content == "3"
        assert _client_of(pool.replicas[0]) is first  # no client opened per call
        mcp_servers.kill(port)
        assert (await pool.call("whoami", {}, deadline_s=10)).is_error  # refused: retired
        mcp_servers.start("after", port=port)
        pool.replicas[0].breaker.cooldown_until = 0
        assert (await pool.call("whoami", {}, deadline_s=10)).content == "after"
        assert _client_of(pool.replicas[0]) is not first
    finally:
        await pool.replicas[0].aclose()


async def test_stateful_replica_restarted_mid_run_gets_a_new_session(
    mcp_servers, url, mcp_v1_python
):
    port = mcp_servers.start("before", python=mcp_v1_python)
    pool = pool_of({"url": url(port)})
    await pool.refresh()
    try:
        assert (await pool.call("whoami", {}, deadline_s=10)).content == "before"
        first = _client_of(pool.replicas[0])
        session = first.session
        mcp_servers.kill(port)
        mcp_servers.start("after", port=port, python=mcp_v1_python)
        # The old session is unknown to the new process: "Session not found", a new
        # session, the call sent again once, and no failure counted against the replica.
        assert (await pool.call("whoami", {}, deadline_s=10)).content == "after"
        assert _client_of(pool.replicas[0]).session is not session
        assert pool.replicas[0].failures == 0
    finally:
        await pool.replicas[0].aclose()


async def test_a_failed_call_retires_the_client_without_spoiling_the_others(mcp_servers, url):
    port = mcp_servers.start("one")
    pool = pool_of({"url": url(port), "timeout_s": 1})
    await pool.refresh()
    try:
        await pool.call("whoami", {}, deadline_s=10)
        first = _client_of(pool.replicas[0])
        silent = asyncio.create_task(pool.call("lookup", {"key": "a", "delay": 3}, deadline_s=10))
        await asyncio.sleep(0.6)
        # In flight on the same client when the silent call times out and retires it.
        other = await pool.call("lookup", {"key": "b", "delay": 0.7}, deadline_s=10)
        assert (await silent).is_error
        assert other.content == "b@one"
        pool.replicas[0].breaker.cooldown_until = 0
        assert (await pool.call("whoami", {}, deadline_s=10)).content == "one"
        assert _client_of(pool.replicas[0]) is not first  # a new client after the failure
    finally:
        await pool.replicas[0].aclose()
