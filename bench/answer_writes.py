"""The database's share of a streamed answer: the writes of `/chat/stream` alone.

On a throw-away database, runs what every `/chat/stream` answer writes, through the same
repository (`ChatHotRepository`): a new conversation with its question, then the answer
with its usage row. `--concurrency` answers run at once, as under load, so SQLite's thread
commits them in groups. Reports wall time and this process's CPU per answer: on SQLite
that is the whole of the database's work (it runs in the serving process), on PostgreSQL
only the client's side. Set it beside `bench.stream`'s CPU per answer to see how much of
an answer the database is.

    uv run python -m bench.answer_writes [--database postgresql] [--answers 2000]
        [--concurrency 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from tests.support.usage_rows import usage_row

from bench.common import bench_database
from bench.usage_insert import insert_users
from vektor.chat.hot_repository import ChatHotRepository, NewMessage
from vektor.core.database import create_engine, new_id
from vektor.core.direct import DirectDatabase
from vektor.core.migrations import upgrade

ANSWER = " ".join(["word"] * 20)  # what bench.stream's upstream answers


async def _one(writes: ChatHotRepository, user_id: uuid.UUID) -> None:
    """A new conversation's question, then its answer and usage row."""
    conversation_id = new_id()
    await writes.start_conversation(
        conversation_id=conversation_id,
        user_id=user_id,
        title="Hola",
        model="bench",
        messages=[NewMessage(new_id(), "user", "Hola")],
        at=datetime.now(UTC),
    )
    answer = NewMessage(new_id(), "assistant", ANSWER, "bench", "stop", 5, 20)
    stored = await writes.add_answer(
        conversation_id=conversation_id,
        user_id=user_id,
        messages=[answer],
        usage=usage_row(user_id, model="bench", completion_tokens=20),
        at=datetime.now(UTC),
    )
    if not stored:
        raise RuntimeError(f"the answer to {conversation_id} was not stored")


async def _round(
    url: str, answers: int, concurrency: int, users: list[uuid.UUID]
) -> tuple[float, float]:
    """Seconds of wall time and of CPU per answer."""
    engine = create_engine(url)
    direct = DirectDatabase(engine)
    writes = ChatHotRepository(direct)
    try:
        await _one(writes, users[0])  # connections opened, statements prepared
        started, cpu = time.perf_counter(), time.process_time()
        for first in range(0, answers, concurrency):
            batch = range(first, min(first + concurrency, answers))
            await asyncio.gather(*(_one(writes, users[n % len(users)]) for n in batch))
        return (time.perf_counter() - started) / answers, (time.process_time() - cpu) / answers
    finally:
        await direct.aclose()
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--answers", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as folder,
        bench_database(args.database, Path(folder)) as url,
    ):
        upgrade(url)
        users = asyncio.run(insert_users(url, 50))
        rounds = [
            asyncio.run(_round(url, args.answers, args.concurrency, users))
            for _ in range(args.rounds)
        ]
    wall = statistics.median(w for w, _ in rounds) * 1000
    cpu = statistics.median(c for _, c in rounds) * 1000
    print(
        f"database={args.database}, {args.answers} answers a round, "
        f"{args.concurrency} at once, {args.rounds} rounds"
    )
    print(f"wall per answer (median) {wall:.3f} ms, CPU per answer (median) {cpu:.3f} ms")


if __name__ == "__main__":
    main()
