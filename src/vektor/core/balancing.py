"""Weighted choice shared by LLM deployments and MCP replicas."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def weighted_order(items: Sequence[T], weight: Callable[[T], float]) -> list[T]:
    """Items in random order drawn by weight, without replacement; weight 0 (standby) last."""
    if len(items) == 1:
        return list(items)
    weighted = [item for item in items if weight(item) > 0]
    order: list[T] = []
    while weighted:
        pick = random.choices(weighted, weights=[weight(i) for i in weighted])[0]  # noqa: S311
        order.append(pick)
        weighted.remove(pick)
    return order + [item for item in items if weight(item) <= 0]
