"""CPU per hit of the in-process rate limiter (no REDIS_URL), with many counters alive.

Every hit of a rate limit (each authenticated request, each login, register or refresh)
goes through it. The counters alive are one per user, client address, account name or
key seen in the window. `limits`' own `MemoryStorage` and Vektor's `SweptMemoryStorage`
run side by side, alternately, in one process:

    uv run python -m bench.rate_limit --counters 10 1000 20000
"""

from __future__ import annotations

import argparse
import asyncio
import time

from limits.aio.storage import MemoryStorage

from vektor.core.ratelimit import RateLimiter, SweptMemoryStorage

STORAGES = {"library": MemoryStorage, "vektor": SweptMemoryStorage}


async def cpu_per_hit(storage: str, counters: int, hits: int) -> float:
    """Microseconds of this process's CPU per hit on one key, with `counters` others alive
    and the event loop turning between hits (as between requests)."""
    limiter = RateLimiter()
    limiter.strategy.storage = limiter.storage = STORAGES[storage]()
    for i in range(counters):
        await limiter.hit("10/minute", [("user", f"idle-{i}")])
    await asyncio.sleep(0.01)
    started = time.process_time()
    for _ in range(hits):
        await limiter.hit("1000000/minute", [("user", "busy")])
        await asyncio.sleep(0)
    return (time.process_time() - started) / hits * 1e6


async def run(counter_counts: list[int], hits: int, rounds: int) -> None:
    print(f"{'counters':>9} {'library µs/hit':>15} {'vektor µs/hit':>14} {'ratio':>7}")
    for counters in counter_counts:
        figures: dict[str, list[float]] = {name: [] for name in STORAGES}
        for _ in range(rounds):
            for name in STORAGES:
                figures[name].append(await cpu_per_hit(name, counters, hits))
        library, vektor = min(figures["library"]), min(figures["vektor"])
        print(f"{counters:>9} {library:>15.1f} {vektor:>14.1f} {library / vektor:>6.1f}×")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--counters", type=int, nargs="+", default=[10, 1000, 20000])
    parser.add_argument("--hits", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(run(args.counters, args.hits, args.rounds))


if __name__ == "__main__":
    main()
