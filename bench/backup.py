"""Backup and restore of a big account: time and peak extra memory of the server.

Starts `vektor serve` on loopback (SQLite by default, or `--database postgresql`), seeds
one user with 10,000 conversations and 100,000 messages straight into the database, then
times POST /sync/backup until completed and POST /sync/restore, reading the server's peak
resident memory (VmHWM, reset before each step) against its resident memory before, and the
CPU seconds the server spent (on SQLite the database work is among them; PostgreSQL's is not).

    uv run python -m bench.backup [--database postgresql] [--conversations 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
from sqlalchemy import insert, select

from bench.common import vektor_server
from vektor.auth.models import User
from vektor.chat.models import Conversation, Message
from vektor.core.database import create_engine


def memory_kib(pid: int, field: str) -> int:
    """A VmRSS / VmHWM figure of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def cpu_s(pid: int) -> float:
    """CPU seconds the process has used (user and system)."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def reset_peak(pid: int) -> None:
    """Start VmHWM over from the current resident size (Linux clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


async def seed(url: str, email: str, conversations: int, per: int) -> None:
    engine = create_engine(url)
    now = datetime.now(UTC)
    async with engine.begin() as connection:
        user_id = (await connection.execute(select(User.id).where(User.email == email))).scalar()
        for start_at in range(0, conversations, 1000):
            rows = [
                {
                    "id": uuid.uuid4(),
                    "user_id": user_id,
                    "title": f"Conversation {i}",
                    "model": "bench",
                    "message_count": per,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(start_at, min(conversations, start_at + 1000))
            ]
            await connection.execute(insert(Conversation), rows)
            messages = [
                {
                    "id": uuid.uuid4(),
                    "conversation_id": c["id"],
                    "role": "user" if n % 2 == 0 else "assistant",
                    "content": f"Message {n} of {c['title']}: " + "lorem ipsum dolor sit amet " * 4,
                    "created_at": now,
                }
                for c in rows
                for n in range(per)
            ]
            await connection.execute(insert(Message), messages)
    await engine.dispose()


def measure(client: httpx.Client, pid: int, headers: dict[str, str]) -> None:
    baseline = memory_kib(pid, "VmRSS")
    reset_peak(pid)
    started, cpu = time.perf_counter(), cpu_s(pid)
    task = client.post("/sync/backup", headers=headers).json()["task_id"]
    while True:
        status = client.get(f"/sync/backup/{task}", headers=headers).json()
        if status["status"] != "in_progress":
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    peak = memory_kib(pid, "VmHWM")
    print(
        f"backup : {status['status']} in {elapsed:6.2f} s "
        f"({cpu_s(pid) - cpu:.2f} s of the server's CPU), "
        f"file {status['size_bytes'] / 1e6:.1f} MB, "
        f"{status['conversations']} conversations, {status['messages']} messages, "
        f"peak extra memory {(peak - baseline) / 1024:.1f} MiB"
    )
    baseline = memory_kib(pid, "VmRSS")
    reset_peak(pid)
    started, cpu = time.perf_counter(), cpu_s(pid)
    response = client.post("/sync/restore", json={"backup_id": task}, headers=headers, timeout=600)
    elapsed = time.perf_counter() - started
    peak = memory_kib(pid, "VmHWM")
    print(
        f"restore: {response.status_code} in {elapsed:6.2f} s "
        f"({cpu_s(pid) - cpu:.2f} s of the server's CPU), "
        f"peak extra memory {(peak - baseline) / 1024:.1f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--messages-per-conversation", type=int, default=10)
    args = parser.parse_args()

    with (
        vektor_server(args.database, BCRYPT_ROUNDS="4") as server,
        httpx.Client(base_url=server.base, timeout=60) as client,
    ):
        client.post(
            "/auth/register",
            json={"email": "big@example.com", "username": "big", "password": "bench password"},
        )
        token = client.post(
            "/auth/login", data={"username": "big", "password": "bench password"}
        ).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        started = time.perf_counter()
        asyncio.run(
            seed(
                server.database_url,
                "big@example.com",
                args.conversations,
                args.messages_per_conversation,
            )
        )
        print(
            f"database={args.database}: seeded {args.conversations} conversations x "
            f"{args.messages_per_conversation} messages "
            f"in {time.perf_counter() - started:.1f} s"
        )
        measure(client, server.process.pid, headers)


if __name__ == "__main__":
    main()
