"""Pools of MCP replicas: one tool catalog per pool, a replica chosen per call by weight,
failover that never runs a non-idempotent tool twice, and a circuit breaker per replica.

Each attempt runs in a task of its own with its own timeout: the SDK reports a server that
dies mid-call as an ExceptionGroup that cancels the task owning the client, and that task
must never be the chat's.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import httpx2
from loguru import logger

from vektor.core.balancing import weighted_order
from vektor.core.breaker import CircuitBreaker
from vektor.core.metrics import MCP_CALLS, MCP_LATENCY
from vektor.core.secrets import mask_text
from vektor.mcp.attempts import (
    Broken,
    SessionLost,
    Unreached,
    in_own_task,
    load_sdk,
)
from vektor.mcp.config import McpServerConfig
from vektor.mcp.live import LiveClient, answering_failures

# The MCP SDK is large (about 50 MB once imported): it is loaded when a server is first
# contacted, so a deployment without MCP servers never pays for it.
if TYPE_CHECKING:
    from mcp import Client
    from mcp.types import CallToolResult, DiscoverResult, Tool

MAX_TOOLS_TTL_MS = 3_600_000  # a longer `ttlMs` is read as an hour
COOLDOWN_BASE_S = 2.0
SEPARATOR = "__"
LATENCY_WINDOW = 200

ProgressFn = Callable[[float, float | None, str | None], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What the model is told."""

    content: str
    is_error: bool
    replica: str | None = None
    raw: CallToolResult | None = None  # the server's own answer, which /mcp passes on


@dataclass
class Replica:
    """One MCP endpoint and its health."""

    config: McpServerConfig
    label: str = ""  # `<pool>#<index>`: its URL or command may carry a secret
    calls: int = 0
    failures: int = 0
    last_error: str | None = None
    excluded: str | None = None
    tools: dict[str, Tool] = field(default_factory=dict)
    # Until when (monotonic) the server said its tool list stays fresh (`ttlMs` of
    # tools/list, protocol 2026-07-28; 0 or absent in older revisions: listed every probe).
    tools_fresh_until: float = 0.0
    listings: int = 0  # tools/list round trips made to this replica
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    breaker: CircuitBreaker = field(default_factory=lambda: CircuitBreaker(COOLDOWN_BASE_S))
    # A stateless (2026-07-28) server's `server/discover` answer and version, learnt by the
    # listing probe: calls adopt it instead of asking again, one round trip fewer per call.
    modern: tuple[str, DiscoverResult] | None = None
    _http: httpx2.AsyncClient | None = None
    _live: LiveClient | None = None

    def http(self) -> httpx2.AsyncClient:
        """The replica's HTTP connection pool, shared by its calls and probes. Building an
        HTTP client costs tens of milliseconds (TLS setup), too much to pay per tool call.
        Its failures come back as error answers to the one request (`live.FailureAnswers`)."""
        if self._http is None:
            self._http = answering_failures(
                httpx2.AsyncClient(
                    headers=self.config.headers, timeout=httpx2.Timeout(self.config.timeout_s)
                )
            )
        return self._http

    def live(self) -> LiveClient:
        """The streamable-HTTP replica's long-lived client, which its calls share."""
        if self._live is None:
            self._live = LiveClient(self._open)
        return self._live

    def _open(self, known: object) -> AbstractAsyncContextManager[Client]:
        return _streamable(self, cast("tuple[str, DiscoverResult] | None", known), None)

    def retire_client(self) -> None:
        """The next call opens a new client (this one closes once its calls are over)."""
        if self._live is not None:
            self._live.retire()

    async def aclose(self) -> None:
        """Close the long-lived client and the HTTP connection pool."""
        if self._live is not None:
            await self._live.aclose()
            self._live = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def available(self, now: float) -> bool:
        """Listed, consistent, and not cooling down. After a cooldown the breaker is
        half-open: one call at a time tests the replica until one succeeds."""
        return self.excluded is None and self.breaker.available(now)

    def record_success(self, seconds: float | None = None) -> None:
        """Close the breaker; remember how long the call took."""
        if seconds is not None:
            self.latencies.append(seconds)
        self.breaker.record_success()

    def record_failure(self, error: str) -> None:
        """Open the breaker for a growing cooldown; the next probe asks for its revision
        again (it may have been replaced by a server of another one)."""
        self.modern = None
        self.retire_client()
        self.failures += 1
        self.last_error = mask_text(error)  # the HTTP client's errors quote the URL
        self.breaker.record_failure(time.monotonic())

    def status(self) -> dict[str, Any]:
        """Health for the configuration and monitoring endpoints."""
        return {
            **self.config.public(),
            "replica": self.label,
            "healthy": self.excluded is None and self.available(time.monotonic()),
            "last_error": self.excluded or self.last_error,
            "calls": self.calls,
            "failures": self.failures,
            "latency_ms": self.latency_ms(),
        }

    def latency_ms(self) -> dict[str, float] | None:
        """p50/p95/last of the recent successful calls, in milliseconds."""
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
        return {
            "p50": round(statistics.median(ordered) * 1000, 2),
            "p95": round(p95 * 1000, 2),
            "last": round(self.latencies[-1] * 1000, 2),
        }


def _streamable(
    replica: Replica, known: tuple[str, DiscoverResult] | None, read_s: float | None
) -> AbstractAsyncContextManager[Client]:
    """A streamable-HTTP client: adopting a stateless server's known revision, else
    negotiating (`server/discover`, else `initialize`)."""
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    transport = streamable_http_client(str(replica.config.url), http_client=replica.http())
    mode, prior = known if known is not None else ("auto", None)
    return Client(transport, read_timeout_seconds=read_s, mode=mode, prior_discover=prior)


@asynccontextmanager
async def _connected(replica: Replica, read_s: float, probe: bool = False) -> AsyncIterator[Client]:
    """A client connected to the replica by its transport, for one attempt. A probe opens
    its own and negotiates the revision afresh; a call to a streamable-HTTP server uses the
    replica's long-lived client (reopened when the revision the probe learnt changed).
    stdio and legacy SSE replicas get a client per call: a stdio server's process is the
    call's own, and the legacy SSE transport is kept as it was."""
    from mcp import Client, StdioServerParameters
    from mcp.client.sse import sse_client

    config = replica.config
    if config.transport == "stdio":
        command = config.command or []
        params = StdioServerParameters(command=command[0], args=command[1:], env=config.env)
        async with Client(params, read_timeout_seconds=read_s) as client:
            yield client
    elif config.transport == "sse":
        transport = sse_client(str(config.url), headers=config.headers, timeout=read_s)
        async with Client(transport, read_timeout_seconds=read_s, mode="legacy") as client:
            yield client
    elif not probe:
        async with replica.live().lease(replica.modern) as client:
            yield client
    else:
        async with _streamable(replica, None, read_s) as client:
            found = client.session.discover_result
            learnt = (client.protocol_version, found) if found else None
            if learnt != replica.modern:  # kept when unchanged: the live client is keyed by it
                replica.modern = learnt
            yield client


def _text(result: CallToolResult) -> str:
    parts = [getattr(item, "text", None) or str(item) for item in result.content]
    return "\n".join(parts)


class McpPool:
    """The replicas of one logical MCP server."""

    def __init__(self, name: str, replicas: list[Replica]) -> None:
        self.name = name
        self.replicas = replicas
        for index, replica in enumerate(replicas):
            replica.label = f"{name}#{index}"
        self.tools: dict[str, Tool] = {}

    async def refresh(self) -> None:
        """List every replica's tools; a replica whose catalog differs is excluded. A
        healthy replica whose list is still fresh by its server's `ttlMs` is not asked again
        (its calls report its health meanwhile)."""
        await load_sdk()  # a call needs the listing first, so the SDK is loaded by then
        catalogs = await asyncio.gather(*(self._fresh_or_list(r) for r in self.replicas))
        reference: dict[str, Tool] | None = None
        for replica, tools in zip(self.replicas, catalogs, strict=True):
            if tools is None:
                continue
            if reference is None:
                reference = tools
            if set(tools) != set(reference):
                replica.excluded = "tool catalog differs from the pool's"
                logger.warning("MCP replica {} excluded: catalog differs", replica.label)
                continue
            replica.excluded = None
            replica.tools = tools
        self.tools = reference or {}

    async def _fresh_or_list(self, replica: Replica) -> dict[str, Tool] | None:
        now = time.monotonic()
        if replica.tools and now < replica.tools_fresh_until and replica.available(now):
            return replica.tools
        return await self._list(replica)

    async def _list(self, replica: Replica) -> dict[str, Tool] | None:
        async def listing() -> dict[str, Tool]:
            tools: dict[str, Tool] = {}
            ttl_ms = MAX_TOOLS_TTL_MS
            replica.listings += 1
            async with _connected(replica, replica.config.timeout_s, probe=True) as client:
                cursor = None
                while True:
                    page = await client.list_tools(cursor=cursor)
                    tools.update({tool.name: tool for tool in page.tools})
                    ttl_ms = min(ttl_ms, getattr(page, "ttl_ms", 0) or 0)  # the shortest page's
                    cursor = page.next_cursor
                    if not cursor:
                        replica.tools_fresh_until = time.monotonic() + ttl_ms / 1000
                        return tools

        try:
            tools = dict(await in_own_task(listing(), replica.config.timeout_s))
        except (Unreached, Broken) as exc:
            replica.record_failure(str(exc))
            return None
        replica.record_success()  # the probe answered: close the breaker
        return tools

    def _candidates(self) -> list[Replica]:
        now = time.monotonic()
        ready = [r for r in self.replicas if r.available(now)]
        return weighted_order(ready, lambda r: r.config.weight)

    async def call(
        self,
        tool: str,
        arguments: dict[str, Any],
        deadline_s: float,
        on_progress: ProgressFn | None = None,
    ) -> ToolResult:
        """Call a tool on some replica, failing over as far as it is safe to."""
        spec = self.tools.get(tool)
        if spec is None:
            return ToolResult(f"Unknown tool {self.name}{SEPARATOR}{tool}", is_error=True)
        hints = spec.annotations
        retry_safe = bool(hints and (hints.read_only_hint or hints.idempotent_hint))
        deadline = time.monotonic() + deadline_s
        for replica in self._candidates():
            if deadline - time.monotonic() <= 0:
                break
            if replica.excluded is not None or not replica.breaker.acquire(time.monotonic()):
                continue  # another call is testing it (half-open)
            result = await self._call_on(
                replica, tool, arguments, deadline, on_progress, retry_safe=retry_safe
            )
            if result is not None:
                return result
        return ToolResult(f"No replica of '{self.name}' could run the tool.", is_error=True)

    async def _call_on(
        self,
        replica: Replica,
        tool: str,
        arguments: dict[str, Any],
        deadline: float,
        on_progress: ProgressFn | None,
        *,
        retry_safe: bool,
    ) -> ToolResult | None:
        """The call on one replica whose breaker let it through: its result, or None when
        it is safe to fail over."""
        probe = replica.breaker.probing
        replica.calls += 1
        started = time.monotonic()
        try:
            result = await self._attempt_in_session(replica, tool, arguments, deadline, on_progress)
        except Unreached as exc:
            replica.record_failure(str(exc))
            MCP_CALLS.labels(self.name, replica.label, "unreached").inc()
            return None
        except asyncio.CancelledError:
            if probe:
                replica.breaker.release()  # cancelled: it says nothing of the replica
            raise
        except Broken as exc:
            replica.record_failure(str(exc))
            MCP_CALLS.labels(self.name, replica.label, "broken").inc()
            if retry_safe:
                return None
            return ToolResult(
                "The tool call was interrupted; whether it ran is unknown.",
                is_error=True,
                replica=replica.label,
            )
        elapsed = time.monotonic() - started
        replica.record_success(elapsed)
        MCP_CALLS.labels(self.name, replica.label, "success").inc()
        MCP_LATENCY.labels(self.name, replica.label).observe(elapsed)
        return ToolResult(
            _text(result), is_error=bool(result.is_error), replica=replica.label, raw=result
        )

    async def _attempt_in_session(
        self,
        replica: Replica,
        tool: str,
        arguments: dict[str, Any],
        deadline: float,
        on_progress: ProgressFn | None,
    ) -> CallToolResult:
        """`_attempt`, and once more on a new session when the server lost the old one."""
        try:
            remaining = deadline - time.monotonic()
            return await self._attempt(replica, tool, arguments, remaining, on_progress)
        except SessionLost:
            replica.retire_client()  # the server restarted: a new session
            remaining = deadline - time.monotonic()
            return await self._attempt(replica, tool, arguments, remaining, on_progress)

    async def _attempt(
        self,
        replica: Replica,
        tool: str,
        arguments: dict[str, Any],
        remaining: float,
        on_progress: ProgressFn | None,
    ) -> CallToolResult:
        """One call on one replica. The replica's timeout is a silence limit: each
        progress notification restarts it, so a slow tool that reports progress runs
        until the overall deadline (`remaining`)."""
        silence = min(replica.config.timeout_s, remaining)
        deadline = time.monotonic() + remaining
        heard = time.monotonic()

        async def progressed(progress: float, total: float | None, message: str | None) -> None:
            nonlocal heard
            heard = time.monotonic()
            if on_progress is not None:
                await on_progress(progress, total, message)

        async def run() -> CallToolResult:
            async with _connected(replica, remaining) as client:
                return await client.call_tool(
                    tool, arguments, read_timeout_seconds=remaining, progress_callback=progressed
                )

        def limit() -> float:
            return min(heard + silence, deadline) - time.monotonic()

        result: CallToolResult = await in_own_task(run(), limit)
        return result
