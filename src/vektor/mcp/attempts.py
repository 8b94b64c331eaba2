"""One attempt on an MCP replica: the SDK loaded on first use, the attempt run in a task
of its own with its own time limit, and its failure classified as safe to retry
(Unreached) or not (Broken)."""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Callable
from typing import Any

import httpx2

from vektor.mcp.live import UNREACHED_CODE

_SDK_MODULES = ("mcp", "mcp.client.sse", "mcp.client.streamable_http", "mcp.shared.exceptions")


async def load_sdk() -> None:
    """Import the SDK in a worker thread (once), before the first call needs it."""
    if not all(name in sys.modules for name in _SDK_MODULES):
        await asyncio.to_thread(lambda: [importlib.import_module(n) for n in _SDK_MODULES])


class Unreached(Exception):
    """The request never reached the server (refused, connect timeout): safe to retry."""


class Broken(Exception):
    """The server died or timed out during the call: it may have run."""


class SessionLost(Unreached):
    """The server no longer knows the session (it restarted): it refused the request
    without running it, so a new session may retry it once."""


SESSION_LOST = ("session not found", "session terminated")


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def classify(exc: BaseException) -> Exception:
    """Unreached when every cause is a failure to connect (raised, or answered in its place
    by `live.FailureAnswers`); Broken otherwise."""
    from mcp.shared.exceptions import MCPError

    leaves = _leaves(exc)
    for leaf in leaves:
        if isinstance(leaf, MCPError) and any(m in leaf.message.lower() for m in SESSION_LOST):
            return SessionLost(leaf.message)
    if leaves and all(_unreached(leaf) for leaf in leaves):
        return Unreached(str(leaves[0]) or type(leaves[0]).__name__)
    return Broken(str(leaves[0]) or type(leaves[0]).__name__)


def _unreached(leaf: BaseException) -> bool:
    from mcp.shared.exceptions import MCPError

    if isinstance(leaf, MCPError):
        return leaf.code == UNREACHED_CODE
    return isinstance(leaf, httpx2.ConnectError | httpx2.ConnectTimeout | ConnectionRefusedError)


async def in_own_task(coro: Any, limit: float | Callable[[], float]) -> Any:
    """Run one attempt in a task of its own. `limit` is seconds, or a function giving the
    seconds left (it may grow, e.g. when the server reports progress)."""
    left = limit if callable(limit) else (lambda: limit)
    task = asyncio.ensure_future(coro)
    try:
        while True:
            wait_s = left()
            if wait_s <= 0:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise Broken("no answer within the time limit")
            done, _ = await asyncio.wait({task}, timeout=wait_s)
            if done:
                return task.result()
    except asyncio.CancelledError:
        task.cancel()
        raise
    except Broken:
        raise
    except Exception as exc:
        raise classify(exc) from exc
