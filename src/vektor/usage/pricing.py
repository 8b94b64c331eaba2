"""Prices in decimal arithmetic: a deployment's USD per million tokens, costs to the
nano-dollar (1e-9 USD). No float ever enters a cost, so sums never drift."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

NANO = Decimal("0.000000001")
_PER_NANO = 10**9
_MILLION = Decimal(1_000_000)


def cost_of(
    prompt_tokens: int, completion_tokens: int, input_per_mtok: Decimal, output_per_mtok: Decimal
) -> Decimal:
    """What the tokens cost at the given prices, rounded to the nano-dollar."""
    raw = (prompt_tokens * input_per_mtok + completion_tokens * output_per_mtok) / _MILLION
    return raw.quantize(NANO, rounding=ROUND_HALF_EVEN)


def to_nanos(value: Decimal) -> int:
    """A cost as whole nano-dollars (how SQLite stores it)."""
    return int((value * _PER_NANO).to_integral_value(rounding=ROUND_HALF_EVEN))


def from_nanos(value: int) -> Decimal:
    """Nano-dollars back to a decimal cost."""
    return (Decimal(value) / _PER_NANO).quantize(NANO)
