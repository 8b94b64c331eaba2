"""What the rollup trigger (migration 0009) adds to the usage row every answer writes.

On a throw-away database (SQLite, or `--database postgresql`), writes `--rows` usage rows
one at a time through `UsageHotRepository.record` (the /v1 path: one committed transaction
per row) with the trigger, then with the schema at 0007 (no rollups, no trigger),
alternately, `--rounds` times. Reports wall time and this process's CPU per row (on SQLite
the database work is in this process; PostgreSQL's is not) and the ratio of the two in the
same run.

    uv run python -m bench.usage_insert [--database postgresql] [--rows 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import insert
from tests.support.usage_rows import usage_row

from bench.common import bench_database
from vektor.auth.models import User
from vektor.core.database import create_engine
from vektor.core.direct import DirectDatabase
from vektor.core.migrations import downgrade, upgrade
from vektor.usage.hot_repository import UsageHotRepository

MODELS = ("gpt-4o", "claude", "llama", "smollm2")


async def _write(url: str, rows: int, users: list[uuid.UUID]) -> tuple[float, float]:
    """Seconds of wall time and of CPU per row."""
    engine = create_engine(url)
    direct = DirectDatabase(engine)
    repository = UsageHotRepository(direct)
    try:
        batch = [
            usage_row(users[n % len(users)], model=MODELS[n % len(MODELS)]) for n in range(rows)
        ]
        started, cpu = time.perf_counter(), time.process_time()
        for row in batch:
            await repository.record(row)
        return (time.perf_counter() - started) / rows, (time.process_time() - cpu) / rows
    finally:
        await direct.aclose()
        await engine.dispose()


async def insert_users(url: str, count: int) -> list[uuid.UUID]:
    engine = create_engine(url)
    ids = [uuid.uuid4() for _ in range(count)]
    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(User),
                [
                    {
                        "id": key,
                        "email": f"u{n}@example.com",
                        "username": f"user{n}",
                        "username_key": f"user{n}",
                        "password_hash": "x",
                    }
                    for n, key in enumerate(ids)
                ],
            )
    finally:
        await engine.dispose()
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {"trigger": [], "none": []}
    with (
        tempfile.TemporaryDirectory() as folder,
        bench_database(args.database, Path(folder)) as url,
    ):
        upgrade(url)
        users = asyncio.run(insert_users(url, 20))
        for _ in range(args.rounds):
            for kind in ("none", "trigger"):
                if kind == "none":
                    downgrade(url, "0007")
                else:
                    upgrade(url)
                results[kind].append(asyncio.run(_write(url, args.rows, users)))
    print(f"database={args.database}, {args.rows} rows a round, {args.rounds} rounds each")
    print("| schema | wall per row (median) | CPU per row (median) |")
    print("|---|---|---|")
    for kind, label in (("none", "0007, no rollups"), ("trigger", "0009, rollup trigger")):
        wall = statistics.median(w for w, _ in results[kind]) * 1000
        cpu = statistics.median(c for _, c in results[kind]) * 1000
        print(f"| {label} | {wall:.3f} ms | {cpu:.3f} ms |")
    ratio = statistics.median(w for w, _ in results["trigger"]) / statistics.median(
        w for w, _ in results["none"]
    )
    print(f"wall time ratio, trigger / none: {ratio:.2f}")


if __name__ == "__main__":
    main()
