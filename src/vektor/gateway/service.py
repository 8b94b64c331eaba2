"""The MCP gateway's rules: which pooled tools a caller sees, and calling one of them through
its pool exactly as a chat's tool call does, under the caller's rate limit.

Transport-neutral: `server.py` speaks MCP (the official SDK's server side) and turns the
errors raised here into the protocol's error answers.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vektor.auth.live_cache import LivePools
from vektor.core.errors import RateLimited
from vektor.core.metrics import GATEWAY_CALLS, GATEWAY_USER_CALLS
from vektor.core.ratelimit import RateLimiter
from vektor.mcp.pool import SEPARATOR, ProgressFn, ToolResult
from vektor.mcp.registry import McpRegistry

if TYPE_CHECKING:
    from jsonschema.protocols import Validator
    from mcp.types import Tool

TOP_USERS = 20  # users shown in /api/status, most calls first


class UnknownTool(Exception):
    """No tool of that name among the pools the caller may use."""


class InvalidArguments(Exception):
    """The arguments fail the tool's input schema."""


@dataclass
class GatewayStats:
    """Calls through /mcp in this process, for /api/status and the dashboard."""

    by_pool: Counter[str] = field(default_factory=Counter)
    errors_by_pool: Counter[str] = field(default_factory=Counter)
    by_user: Counter[str] = field(default_factory=Counter)
    refused: int = 0  # rate-limited calls

    def record(self, pool: str, user_id: uuid.UUID, result: str) -> None:
        """Count one call (also into the Prometheus counters)."""
        GATEWAY_CALLS.labels(pool, result).inc()
        if result == "refused":
            self.refused += 1
            return
        self.by_pool[pool] += 1
        self.by_user[str(user_id)] += 1
        GATEWAY_USER_CALLS.labels(str(user_id)).inc()
        if result == "tool_error":
            self.errors_by_pool[pool] += 1

    def summary(self) -> dict[str, Any]:
        """Calls per pool (with errors) and the users who called most."""
        return {
            "calls": sum(self.by_pool.values()),
            "refused": self.refused,
            "pools": {
                pool: {"calls": calls, "errors": self.errors_by_pool[pool]}
                for pool, calls in sorted(self.by_pool.items())
            },
            "users": [
                {"user_id": user, "calls": calls}
                for user, calls in self.by_user.most_common(TOP_USERS)
            ],
        }


class Gateway:
    """The pooled tools as one MCP server's tools, per caller."""

    def __init__(
        self,
        registry: McpRegistry,
        pools: LivePools,
        limiter: RateLimiter,
        *,
        rate_limit: str,
        timeout_s: float,
    ) -> None:
        self.registry = registry
        self.pools = pools
        self.limiter = limiter
        self.rate_limit = rate_limit
        self.timeout_s = timeout_s
        self.stats = GatewayStats()
        self._validators: dict[tuple[str, str], tuple[object, Validator]] = {}

    async def allowed(self, user_id: uuid.UUID) -> frozenset[str] | None:
        """The pools the user may use (None: every pool), read once per HTTP request."""
        return await self.pools.allowed(user_id)

    def find(self, qualified: str, allowed: frozenset[str] | None) -> Tool | None:
        """The tool `<pool>__<tool>` among the allowed pools, if there is one."""
        pool_name, _, tool_name = qualified.partition(SEPARATOR)
        pool = self.registry.visible(allowed).get(pool_name)
        return pool.tools.get(tool_name) if pool is not None else None

    def list_tools(self, allowed: frozenset[str] | None) -> list[Tool]:
        """Every tool of the allowed pools, named `<pool>__<tool>`, with its schemas and
        annotations as the pool's servers declare them."""
        return [
            tool.model_copy(update={"name": f"{name}{SEPARATOR}{tool.name}"})
            for name, pool in self.registry.visible(allowed).items()
            for tool in pool.tools.values()
        ]

    def catalog(self) -> tuple[tuple[str, str], ...]:
        """Every pooled tool's name, to tell when the list changed."""
        return tuple(
            sorted(
                (name, tool) for name, pool in self.registry.pools.items() for tool in pool.tools
            )
        )

    async def call_tool(
        self,
        user_id: uuid.UUID,
        qualified: str,
        arguments: dict[str, Any] | None,
        on_progress: ProgressFn | None = None,
        *,
        allowed: frozenset[str] | None,
    ) -> ToolResult:
        """Run `<pool>__<tool>` through its pool, as a chat's tool call runs, if the pool is
        among the `allowed` ones. UnknownTool, InvalidArguments and RateLimited are raised
        before anything is sent to a server; a pool that is down answers the tool error a
        chat would see."""
        pool_name = qualified.partition(SEPARATOR)[0]
        tool = self.find(qualified, allowed)
        if tool is None:
            raise UnknownTool(f"Unknown tool: {qualified}")
        self._validate(pool_name, tool, arguments or {})
        try:
            await self.limiter.hit(self.rate_limit, [("mcp", str(user_id))])
        except RateLimited:
            self.stats.record(pool_name, user_id, "refused")
            raise
        result = await self.registry.call(
            qualified, json.dumps(arguments or {}), self.timeout_s, on_progress
        )
        self.stats.record(pool_name, user_id, "tool_error" if result.is_error else "ok")
        return result

    def _validate(self, pool: str, tool: Tool, arguments: dict[str, Any]) -> None:
        """Check the arguments against the tool's input schema (compiled once per schema)."""
        from jsonschema.exceptions import best_match
        from jsonschema.validators import validator_for

        key = (pool, tool.name)
        cached = self._validators.get(key)
        if cached is None or cached[0] is not tool.input_schema:
            schema = tool.input_schema or {"type": "object"}
            validator = validator_for(schema)(schema)
            cached = self._validators[key] = (tool.input_schema, validator)
        error = best_match(cached[1].iter_errors(arguments))
        if error is not None:
            where = "/".join(str(part) for part in error.absolute_path) or "arguments"
            raise InvalidArguments(
                f"Invalid arguments for {pool}{SEPARATOR}{tool.name}: {where}: {error.message}"
            )
