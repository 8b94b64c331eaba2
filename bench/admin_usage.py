"""GET /admin/usage over 1,000,000 usage rows: p50 and p95 of each grouping, over a month
and over a year, and the server's CPU per answer.

Starts `vektor serve` on loopback (SQLite by default, or `--database postgresql`),
registers an admin and `--users` users, bulk-inserts `--rows` usage rows spread evenly over
the past 365 days (SQLite: one `executemany` per 50,000 rows; PostgreSQL: COPY), then asks
GET /admin/usage `--requests` times for each `group_by` (day, model, user) and period (the
last 30 days, the last 365), one request at a time. The server's CPU per answer is its
process CPU seconds over the answers (on SQLite the database work is among them;
PostgreSQL's is not).

    uv run python -m bench.admin_usage [--database postgresql] [--rows 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import asyncpg
import httpx
import psutil

from bench.common import percentile, vektor_server
from vektor.usage.hot_repository import UsageRow

BATCH = 50_000
MODELS = ["gpt-4o", "gpt-4o-mini", "claude", "llama", "mistral", "qwen", "smollm2", "gemma"]
COLUMNS = (
    "id",
    "user_id",
    "api_key_id",
    "model",
    "deployment",
    "prompt_tokens",
    "completion_tokens",
    "cost",
    "cached",
    "estimated",
    "source",
    "finish_reason",
    "created_at",
)


def rows(count: int, users: list[uuid.UUID], now: datetime) -> Iterator[UsageRow]:
    """`count` rows spread over the 365 days before `now`, for random users and models."""
    pick = random.Random(19)
    span = 365 * 86400
    for n in range(count):
        model = MODELS[n % len(MODELS)]
        prompt, completion = pick.randint(10, 2000), pick.randint(10, 800)
        yield UsageRow(
            id=uuid.uuid4(),
            user_id=pick.choice(users),
            api_key_id=None,
            model=model,
            deployment=f"{model}#0",
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost=Decimal(prompt * 2 + completion * 8) / Decimal(10**6),
            cached=False,
            estimated=False,
            source="v1",
            finish_reason="stop",
            created_at=now - timedelta(seconds=span * n / count + pick.random()),
        )


_SQLITE_INSERT = (
    "INSERT INTO usage (id, user_id, api_key_id, model, deployment, prompt_tokens, "
    "completion_tokens, cost, cached, estimated, source, finish_reason, created_at) VALUES "
    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def seed_sqlite(url: str, count: int, users: list[uuid.UUID], now: datetime) -> None:
    """executemany in batches, in one transaction."""
    connection = sqlite3.connect(url.split(":///", 1)[1], isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        batch: list[tuple[object, ...]] = []
        for row in rows(count, users, now):
            batch.append(row.sqlite_parameters())
            if len(batch) == BATCH:
                connection.executemany(_SQLITE_INSERT, batch)
                batch.clear()
        connection.executemany(_SQLITE_INSERT, batch)
        connection.execute("COMMIT")
        connection.execute("ANALYZE")
    finally:
        connection.close()


async def seed_postgresql(url: str, count: int, users: list[uuid.UUID], now: datetime) -> None:
    """COPY in batches, then VACUUM ANALYZE of the rows and the rollups the trigger
    updated a million times (what autovacuum does after a bulk load)."""
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        batch: list[tuple[object, ...]] = []
        for row in rows(count, users, now):
            batch.append(row.pg_parameters())
            if len(batch) == BATCH:
                await connection.copy_records_to_table("usage", records=batch, columns=COLUMNS)
                batch.clear()
        await connection.copy_records_to_table("usage", records=batch, columns=COLUMNS)
        await connection.execute("VACUUM ANALYZE usage, usage_day_model, usage_day_user")
    finally:
        await connection.close()


def cpu_s(pid: int) -> float:
    """CPU seconds the process has used (user and system)."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def sign_up(client: httpx.Client, name: str) -> str:
    """Register `name` and return the user's id."""
    body = {"email": f"{name}@example.com", "username": name, "password": "bench password"}
    response = client.post("/auth/register", json=body)
    response.raise_for_status()
    return str(response.json()["id"])


def make_admin(url: str, user_id: str) -> None:
    """Raise the user to admin, straight in the database."""
    if url.startswith("sqlite"):
        connection = sqlite3.connect(url.split(":///", 1)[1])
        with connection:
            connection.execute(
                'UPDATE "user" SET is_admin = 1 WHERE id = ?', (uuid.UUID(user_id).hex,)
            )
        connection.close()
        return

    async def update() -> None:
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        try:
            await connection.execute(
                'UPDATE "user" SET is_admin = true WHERE id = $1', uuid.UUID(user_id)
            )
        finally:
            await connection.close()

    asyncio.run(update())


def measure(client: httpx.Client, pid: int, headers: dict[str, str], requests: int) -> None:
    """p50 and p95 of each grouping over the last 30 and the last 365 days."""
    today = datetime.now(UTC).date()
    periods = {"month": today - timedelta(days=29), "year": today - timedelta(days=364)}
    print("| group_by | period | rows in period | p50 | p95 | CPU per answer |")
    print("|---|---|---|---|---|---|")
    for group_by in ("day", "model", "user"):
        for name, first in periods.items():
            query = {"from": first.isoformat(), "to": today.isoformat(), "group_by": group_by}
            _ask(client, headers, query)  # warm
            samples, cpu = [], cpu_s(pid)
            for _ in range(requests):
                started = time.perf_counter()
                report = _ask(client, headers, query)
                samples.append((time.perf_counter() - started) * 1000)
            per = (cpu_s(pid) - cpu) / requests * 1000
            print(
                f"| {group_by} | {name} | {report['totals']['requests']:,} | "
                f"{percentile(samples, 50):.1f} ms | {percentile(samples, 95):.1f} ms | "
                f"{per:.1f} ms |",
                flush=True,
            )


def _ask(client: httpx.Client, headers: dict[str, str], query: dict[str, str]) -> dict:
    response = client.get("/admin/usage", params=query, headers=headers)
    response.raise_for_status()
    return dict(response.json())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()

    with (
        vektor_server(args.database, BCRYPT_ROUNDS="4") as server,
        httpx.Client(base_url=server.base, timeout=120) as client,
    ):
        admin = sign_up(client, "admin")
        make_admin(server.database_url, admin)
        users = [uuid.UUID(sign_up(client, f"user{n}")) for n in range(args.users)]
        token = client.post(
            "/auth/login", data={"username": "admin", "password": "bench password"}
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        started, now = time.perf_counter(), datetime.now(UTC)
        if args.database == "sqlite":
            seed_sqlite(server.database_url, args.rows, users, now)
        else:
            asyncio.run(seed_postgresql(server.database_url, args.rows, users, now))
        print(
            f"database={args.database}: {args.rows:,} usage rows of {args.users} users "
            f"inserted in {time.perf_counter() - started:.1f} s ({date.today()})",
            flush=True,
        )
        measure(client, server.process.pid, headers, args.requests)


if __name__ == "__main__":
    main()
