"""Callers waiting on one piece of work done for all of them (a Redis pipeline, a group of
rows written in one transaction)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


def fail_waiters(futures: Iterable[asyncio.Future[Any]], exc: BaseException) -> None:
    """The shared work failed: each caller still waiting gets its error, as it would have
    alone; a cancellation (shutting down) cancels them."""
    for future in futures:
        if future.done():
            continue  # its caller stopped waiting
        if isinstance(exc, Exception):
            future.set_exception(exc)
        else:
            future.cancel()
