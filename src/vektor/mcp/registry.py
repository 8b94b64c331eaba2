"""Every MCP pool of the configuration, with the tools they offer to models."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from loguru import logger

from vektor.mcp.config import McpServerConfig
from vektor.mcp.pool import SEPARATOR, McpPool, ProgressFn, Replica, ToolResult

PROBE_INTERVAL_S = 5.0


class McpRegistry:
    """Pools by name; tools are offered to the model as `<pool>__<tool>`."""

    def __init__(self, configs: list[McpServerConfig]) -> None:
        grouped: dict[str, list[Replica]] = {}
        for config in configs:
            grouped.setdefault(config.name, []).append(Replica(config))
        self.pools = {name: McpPool(name, replicas) for name, replicas in grouped.items()}
        self._probe: asyncio.Task[None] | None = None

    async def reload(self, configs: list[McpServerConfig]) -> None:
        """Replace the pools from a new configuration; replicas whose entry is unchanged keep
        their health and counters. Tools are listed again at once."""
        previous = {
            replica.config.model_dump_json(): replica
            for pool in self.pools.values()
            for replica in pool.replicas
        }
        grouped: dict[str, list[Replica]] = {}
        for config in configs:
            kept = previous.pop(config.model_dump_json(), None)
            grouped.setdefault(config.name, []).append(kept or Replica(config))
        for gone in previous.values():
            await gone.aclose()
        self.pools = {name: McpPool(name, replicas) for name, replicas in grouped.items()}
        await self.refresh()
        self.start()

    def start(self) -> None:
        """List the tools now and every PROBE_INTERVAL_S, in the background."""
        if self.pools and self._probe is None:
            self._probe = asyncio.create_task(self._probe_forever())

    async def _probe_forever(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(PROBE_INTERVAL_S)

    async def refresh(self) -> None:
        """Re-list every pool's tools (this is also the health probe)."""
        await asyncio.gather(*(pool.refresh() for pool in self.pools.values()))

    async def aclose(self) -> None:
        """Stop probing; close the replicas' connections."""
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
        for pool in self.pools.values():
            for replica in pool.replicas:
                await replica.aclose()

    def visible(self, allowed: frozenset[str] | None) -> dict[str, McpPool]:
        """The pools a user may use (`allowed` None: every pool)."""
        if allowed is None:
            return self.pools
        return {name: pool for name, pool in self.pools.items() if name in allowed}

    def tool_specs(self, allowed: frozenset[str] | None = None) -> list[dict[str, Any]]:
        """The tools of the allowed pools in the chat-completions `tools` shape."""
        specs = []
        for name, pool in self.visible(allowed).items():
            for tool in pool.tools.values():
                specs.append(
                    {
                        "type": "function",
                        "function": {
                            "name": f"{name}{SEPARATOR}{tool.name}",
                            "description": tool.description or "",
                            "parameters": tool.input_schema or {"type": "object"},
                        },
                    }
                )
        return specs

    async def call(
        self,
        qualified: str,
        arguments: str,
        deadline_s: float,
        on_progress: ProgressFn | None = None,
    ) -> ToolResult:
        """Run `<pool>__<tool>` with JSON arguments; every failure is a ToolResult error."""
        pool_name, _, tool = qualified.partition(SEPARATOR)
        pool = self.pools.get(pool_name)
        if pool is None or not tool:
            return ToolResult(f"Unknown tool {qualified}", is_error=True)
        try:
            parsed = json.loads(arguments or "{}")
        except json.JSONDecodeError:
            return ToolResult("The tool arguments are not valid JSON", is_error=True)
        if not isinstance(parsed, dict):
            return ToolResult("The tool arguments must be a JSON object", is_error=True)
        result = await pool.call(tool, parsed, deadline_s, on_progress)
        logger.info("tool {} on {}: error={}", qualified, result.replica, result.is_error)
        return result

    def status(self) -> list[dict[str, Any]]:
        """Every replica with its live health."""
        return [replica.status() for pool in self.pools.values() for replica in pool.replicas]
