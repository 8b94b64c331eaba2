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
