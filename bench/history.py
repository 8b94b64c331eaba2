"""GET /chat/history latency for a user with 10,000 conversations, on SQLite and PostgreSQL.

Starts `vektor serve` on loopback for each database, registers and logs in one user
through the API, seeds 10,000 conversations (a question and an answer each, words drawn
from a fixed vocabulary with a seeded RNG; one rare word in 1% of the conversations)
straight into the server's database, checks that the search index sees the seeded rows,
then times sequential requests (one client, after a warm-up, the queries taking turns):
the first page, a deep page, and searches for the rare word, for a common word (in about a
fifth of the conversations) and for a word in none.

    uv run python -m bench.history [--database sqlite postgresql] [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import insert, select, text

from bench.common import percentile, vektor_server
from vektor.answers.prepare import TITLE_LENGTH
from vektor.auth.models import User
from vektor.chat.models import Conversation, Message
from vektor.core.database import create_engine

TARGET_P99_MS = 20.0
PAGE = 20
BATCH = 1000
RARE = "zephyrine"  # in 1% of the conversations
COMMON = "error"  # the common word searched
ABSENT = "quixotic"  # in no conversation: a search that finds nothing
WORDS = """
the a to of and in is it you that for on with how can this be what are my do not
will as if or your from have but use an which when by file data code error function
python server model question answer time example value list table query database user
make need should would could get set run test build write read change work create find
show call return string number version install package request response client memory
config setting option default system process thread network port address http json key
class method object type name field index search page result problem issue fix bug step
first next last new old small large fast slow simple better best same different each other
loop array dict map sort filter group count sum average date format text line word
character byte buffer stream socket timeout retry cache session token login password
account email message chat history backup restore sync migrate schema column row insert
update delete select join where order limit offset transaction lock commit rollback
docker container image volume deploy cluster node service endpoint route handler
middleware header cookie cors proxy balance queue worker task schedule cron event signal
async await future promise callback generator iterator decorator context manager module
import export path folder directory permission user group owner mode link copy move
recipe garden travel music movie book weather coffee bicycle mountain river ocean city
"""
VOCABULARY = WORDS.split()


@dataclass
class HistoryResult:
    """Latency of one query on one database."""

    database: str
    query: str
    path: str
    conversations: int
    requests: int
    rows: int  # rows the query returns
    p50_ms: float
    p99_ms: float
    target_p99_ms: float
    ok: bool


@dataclass
class Seeded:
    """What was written: how many conversations hold each searched word."""

    conversations: int
    rare: int
    common: int
    seconds: float


def sentence(rng: random.Random, weights: list[float], low: int, high: int) -> str:
    """Words of the vocabulary, Zipf-distributed, as one sentence."""
    words = rng.choices(VOCABULARY, weights, k=rng.randint(low, high))
    return " ".join(words).capitalize() + "."


def conversation_texts(count: int, seed: int = 7) -> tuple[list[tuple[str, str]], set[int]]:
    """(question, answer) per conversation, and the conversations holding the rare word."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(len(VOCABULARY))]
    rare = set(rng.sample(range(count), max(1, count // 100)))
    texts = []
    for index in range(count):
        question = sentence(rng, weights, 6, 18)[:-1] + "?"
        answer = " ".join(sentence(rng, weights, 8, 20) for _ in range(rng.randint(2, 5)))
        if index in rare:
            if index % 4 == 0:  # a quarter in the question (and so the title), the rest in
                question = f"{RARE.capitalize()} {question}"  # the answer
            else:
                words = answer.split()
                words.insert(rng.randrange(len(words)), RARE)
                answer = " ".join(words)
        texts.append((question, answer))
    return texts, rare


def title_of(question: str) -> str:
    """Like the service's titles: the first question, cut to TITLE_LENGTH."""
    if len(question) <= TITLE_LENGTH:
        return question
    return question[: TITLE_LENGTH - 1].rstrip() + "…"


async def seed(url: str, email: str, count: int) -> Seeded:
    """Write `count` conversations of two messages each for the user, in bulk."""
    started = time.perf_counter()
    texts, rare = conversation_texts(count)
    common = sum(  # as the search counts: any word starting with it
        1
        for q, a in texts
        if any(w.startswith(COMMON) for w in re.findall(r"\w+", f"{q} {a}".lower()))
    )
    engine = create_engine(url)
    now = datetime.now(UTC)
    try:
        async with engine.begin() as connection:
            user_id = (
                await connection.execute(select(User.id).where(User.email == email))
            ).scalar_one()
            for first in range(0, count, BATCH):
                conversations, messages = [], []
                for index in range(first, min(count, first + BATCH)):
                    question, answer = texts[index]
                    at = now - timedelta(minutes=count - index)  # the newest is the last one
                    conversation_id = uuid.uuid4()
                    conversations.append(
                        {
                            "id": conversation_id,
                            "user_id": user_id,
                            "title": title_of(question),
                            "model": "bench",
                            "message_count": 2,
                            "created_at": at,
                            "updated_at": at + timedelta(seconds=3),
                        }
                    )
                    messages += [
                        {
                            "id": uuid.uuid4(),
                            "conversation_id": conversation_id,
                            "role": "user",
                            "content": question,
                            "created_at": at,
                        },
                        {
                            "id": uuid.uuid4(),
                            "conversation_id": conversation_id,
                            "role": "assistant",
                            "content": answer,
                            "model": "bench",
                            "finish_reason": "stop",
                            "prompt_tokens": len(question.split()),
                            "completion_tokens": len(answer.split()),
                            "created_at": at + timedelta(seconds=3),
                        },
                    ]
                await connection.execute(insert(Conversation), conversations)
                await connection.execute(insert(Message), messages)
        if engine.dialect.name == "postgresql":
            # What autovacuum's analyze would have done by now after such a bulk insert.
            async with engine.begin() as connection:  # committed: a rollback undoes it
                await connection.execute(text("ANALYZE conversation"))
                await connection.execute(text("ANALYZE message"))
    finally:
        await engine.dispose()
    return Seeded(count, len(rare), common, time.perf_counter() - started)


def register(client: httpx.Client) -> dict[str, str]:
    """Register and log in the bench user; its auth header."""
    password = "bench password"
    client.post(
        "/auth/register",
        json={"email": "history@example.com", "username": "history", "password": password},
    ).raise_for_status()
    response = client.post("/auth/login", data={"username": "history", "password": password})
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def check_search(client: httpx.Client, headers: dict[str, str], seeded: Seeded) -> None:
    """The search index must see the seeded rows: the rare word finds every one of them."""
    found = 0
    offset = 0
    while True:
        page = client.get(
            "/chat/history",
            params={"q": RARE, "limit": 100, "offset": offset},
            headers=headers,
        )
        page.raise_for_status()
        found += len(page.json())
        if len(page.json()) < 100:
            break
        offset += 100
    if found != seeded.rare:
        raise SystemExit(f"search for {RARE!r} found {found} conversations, seeded {seeded.rare}")


def queries(conversations: int) -> list[tuple[str, dict[str, str | int]]]:
    """(name, query parameters) of each timed request."""
    deep = max(0, min(9000, conversations - PAGE))
    return [
        ("first page", {"limit": PAGE}),
        (f"deep page (offset {deep})", {"offset": deep, "limit": PAGE}),
        (f"search 1% ({RARE})", {"q": RARE, "limit": PAGE}),
        (f"search common ({COMMON})", {"q": COMMON, "limit": PAGE}),
        (f"search no hit ({ABSENT})", {"q": ABSENT, "limit": PAGE}),
    ]


def measure(
    client: httpx.Client,
    headers: dict[str, str],
    database: str,
    conversations: int,
    requests: int,
    warmup: int,
) -> list[HistoryResult]:
    """Time `requests` of each query, the queries taking turns, after `warmup` of each."""
    plan = queries(conversations)
    samples: dict[str, list[float]] = {name: [] for name, _ in plan}
    rows: dict[str, int] = {}
    for round_ in range(warmup + requests):
        for name, params in plan:
            started = time.perf_counter()
            response = client.get("/chat/history", params=params, headers=headers)
            elapsed = time.perf_counter() - started
            response.raise_for_status()
            rows[name] = len(response.json())
            if round_ >= warmup:
                samples[name].append(elapsed * 1000)
    results = []
    for name, params in plan:
        ms = samples[name]
        p99 = percentile(ms, 99)
        results.append(
            HistoryResult(
                database=database,
                query=name,
                path="/chat/history?" + "&".join(f"{k}={v}" for k, v in params.items()),
                conversations=conversations,
                requests=requests,
                rows=rows[name],
                p50_ms=round(statistics.median(ms), 2),
                p99_ms=round(p99, 2),
                target_p99_ms=TARGET_P99_MS,
                ok=p99 <= TARGET_P99_MS,
            )
        )
    return results


def run(
    database: str, conversations: int = 10_000, requests: int = 300, warmup: int = 20
) -> list[dict[str, Any]]:
    """Latency of GET /chat/history on one database ("sqlite" or "postgresql"): one
    JSON-ready dict per query, with p50_ms, p99_ms, n (timed requests), rows, the target
    and whether it was met, and the seeding figures."""
    with (
        vektor_server(database, BCRYPT_ROUNDS="4") as server,
        httpx.Client(base_url=server.base, timeout=30) as client,
    ):
        headers = register(client)
        seeded = asyncio.run(seed(server.database_url, "history@example.com", conversations))
        check_search(client, headers, seeded)
        results = measure(client, headers, database, conversations, requests, warmup)
    return [
        {
            **asdict(result),
            "n": result.requests,
            "seed_seconds": round(seeded.seconds, 2),
            "rare_conversations": seeded.rare,
            "common_conversations": seeded.common,
        }
        for result in results
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--database",
        nargs="+",
        choices=["sqlite", "postgresql"],
        default=["sqlite", "postgresql"],
    )
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=300, help="timed requests per query")
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    started = time.perf_counter()
    rows = [
        row
        for database in args.database
        for row in run(database, args.conversations, args.requests, args.warmup)
    ]
    for database in args.database:
        first = next(r for r in rows if r["database"] == database)
        print(
            f"database={database}: {first['conversations']} conversations x 2 messages seeded "
            f"in {first['seed_seconds']:.1f} s; {RARE!r} in {first['rare_conversations']}, "
            f"{COMMON!r} in {first['common_conversations']}"
        )
    print(f"one client, sequential, {args.requests} requests per query; target p99 ≤ 20 ms")
    print(f"{'database':<11} {'query':<28} {'rows':>4} {'p50':>9} {'p99':>9}  target")
    for r in rows:
        print(
            f"{r['database']:<11} {r['query']:<28} {r['rows']:>4} {r['p50_ms']:>6.2f} ms "
            f"{r['p99_ms']:>6.2f} ms  {'ok' if r['ok'] else 'MISSED'}"
        )
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
