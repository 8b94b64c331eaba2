"""Health checks."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

DB_CHECK_TIMEOUT_S = 2.0


async def check_database(engine: AsyncEngine) -> dict[str, Any]:
    """Run `SELECT 1` with a short timeout."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(DB_CHECK_TIMEOUT_S):
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    except Exception as exc:  # whatever the failure, the database counts as down
        return {"status": "down", "error": type(exc).__name__}
    return {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


async def check_redis(storage: Any) -> dict[str, Any]:
    """Ping the rate-limit storage's Redis with a short timeout."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(DB_CHECK_TIMEOUT_S):
            alive = await storage.check()
    except Exception as exc:  # whatever the failure, Redis counts as down
        return {"status": "down", "error": type(exc).__name__}
    if not alive:
        return {"status": "down", "error": "no answer to PING"}
    return {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def models_check(router_status: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Each model is `ok` while one of its deployments is healthy."""
    models = {
        name: "ok" if any(d["state"] == "healthy" for d in deployments) else "down"
        for name, deployments in router_status.items()
    }
    return {"status": "ok" if all(v == "ok" for v in models.values()) else "degraded", **models}


def mcp_check(replicas: list[dict[str, Any]]) -> dict[str, Any]:
    """Each MCP pool is `ok` while one of its replicas is healthy."""
    pools: dict[str, bool] = {}
    for replica in replicas:
        pools[replica["name"]] = pools.get(replica["name"], False) or replica["healthy"]
    status = "ok" if all(pools.values()) else "degraded"
    return {"status": status, **{name: "ok" if up else "down" for name, up in pools.items()}}
