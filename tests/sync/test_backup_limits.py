"""Backups and restores at the sizes and rates that once broke them."""

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, insert

from tests.conftest import bearer, login, register, scripted
from tests.sync.test_backup import backup, build_backup, upload
from vektor.chat.models import Conversation, Message
from vektor.sync.backups import MESSAGES_PER_READ, backup_path
from vektor.sync.models import SyncLock


@pytest.fixture
async def chat(chat_harness, upstream):
    return await chat_harness([scripted(upstream, "chunks=3;text=respuesta corta")])


def wide_record(messages):
    now = datetime.now(UTC).isoformat()
    return {
        "kind": "conversation",
        "id": str(uuid.uuid4()),
        "title": "Wide",
        "model": "scripted",
        "created_at": now,
        "updated_at": now,
        "messages": [
            {"id": str(uuid.uuid4()), "role": "user", "content": "x", "created_at": now}
            for _ in range(messages)
        ],
    }


async def test_restore_of_a_batch_past_the_drivers_parameter_limit(chat):
    # 34,000 message ids in one batch: more than one statement may bind on either database.
    data = build_backup([wide_record(17_000), wide_record(17_000)])
    for _ in range(2):  # twice: the second pass replaces what the first wrote
        response = await upload(chat, data)
        assert response.status_code == 200, response.text
    listing = (await chat.client.get("/chat/history", headers=chat.headers)).json()
    assert len(listing) == 2
    assert all(row["message_count"] == 17_000 for row in listing)


async def seed(chat, conversations=5000, headers=None, messages=1):
    """Enough conversations that a backup of them takes a while; returns the user id."""
    me = await chat.client.get("/users/me", headers=headers or chat.headers)
    user_id = uuid.UUID(me.json()["id"])
    now = datetime.now(UTC)
    rows = [
        {
            "id": uuid.uuid4(),
            "user_id": user_id,
            "title": f"c{i}",
            "model": "m",
            "message_count": messages,
            "created_at": now,
            "updated_at": now,
        }
        for i in range(conversations)
    ]
    messages = [
        {
            "id": uuid.uuid4(),
            "conversation_id": row["id"],
            "role": "user",
            "content": "x" * 200,
            "created_at": now,
        }
        for row in rows
        for _ in range(messages)
    ]
    async with chat.app.state.vektor.sessionmaker() as session:
        await session.execute(insert(Conversation), rows)
        await session.execute(insert(Message), messages)
        await session.commit()
    return user_id


async def settle(chat, headers):
    """Wait until none of the user's backups is in progress."""
    for _ in range(1000):
        listing = (await chat.client.get("/sync/backups", headers=headers)).json()
        if all(b["status"] != "in_progress" for b in listing):
            return listing
        await asyncio.sleep(0.02)
    raise AssertionError("a backup never ended")


async def test_one_backup_or_restore_per_user_across_instances(chat_harness, upstream):
    first = await chat_harness([scripted(upstream)])
    second = await chat_harness([scripted(upstream)])  # another instance, same database
    earlier = await backup(first)
    await seed(first)
    clients = [first.client, second.client] * 3
    answers = await asyncio.gather(
        *(client.post("/sync/backup", headers=first.headers) for client in clients)
    )
    assert sorted(a.status_code for a in answers) == [202, 409, 409, 409, 409, 409]
    running = next(a.json()["task_id"] for a in answers if a.status_code == 202)
    restore = await second.client.post("/sync/restore", json={}, headers=first.headers)
    upload_restore = await upload(second, build_backup([]), headers=first.headers)
    status = (await first.client.get(f"/sync/backup/{running}", headers=first.headers)).json()
    assert status["status"] == "in_progress"  # the refusals above came while it ran
    assert restore.status_code == 409
    assert upload_restore.status_code == 409
    listing = await settle(first, first.headers)
    assert [b["status"] for b in listing] == ["completed", "completed"]
    assert listing[1]["task_id"] == earlier["task_id"]
    # Another user is not held up, and the lock is free once the job has ended.
    assert (await second.client.post("/sync/backup", headers=second.headers)).status_code == 202
    assert (
        await second.client.post("/sync/restore", json={}, headers=first.headers)
    ).status_code == 200


async def test_only_the_newest_backups_are_kept(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream)], max_backups_per_user=2)
    user_id = uuid.UUID((await chat.client.get("/users/me", headers=chat.headers)).json()["id"])
    made = [(await backup(chat))["task_id"] for _ in range(3)]
    listing = (await chat.client.get("/sync/backups", headers=chat.headers)).json()
    assert [b["task_id"] for b in listing] == made[:0:-1]
    backup_dir = chat.app.state.vektor.settings.backup_dir
    assert not backup_path(backup_dir, user_id, uuid.UUID(made[0])).exists()
    assert sorted(p.name for p in (backup_dir / str(user_id)).iterdir()) == sorted(
        f"{task}.vkb" for task in made[1:]
    )
    old = await chat.client.get(f"/sync/backup/{made[0]}", headers=chat.headers)
    assert old.status_code == 404


async def test_account_deleted_on_another_instance_leaves_no_backup_behind(
    chat_harness, upstream, tmp_path
):
    # The job runs on an instance with a disk of its own: only the job can clean up there.
    here = await chat_harness([scripted(upstream)])
    there = await chat_harness([scripted(upstream)], backup_dir=tmp_path / "other-disk")
    user_id = await seed(here)
    job = await there.client.post("/sync/backup", headers=here.headers)
    assert job.status_code == 202
    folder = there.app.state.vektor.settings.backup_dir / str(user_id)
    for _ in range(500):  # the job has begun writing
        if folder.exists():
            break
        await asyncio.sleep(0.01)
    assert (await here.client.delete("/users/me", headers=here.headers)).status_code == 204
    tasks = list(there.app.state.vektor.backups.tasks.values())
    await asyncio.gather(*tasks, return_exceptions=True)
    assert not folder.exists()
    assert (await here.client.get("/sync/backups", headers=here.headers)).status_code == 401


async def test_backups_of_many_users_leave_requests_their_connections(chat_harness, upstream):
    chat = await chat_harness(
        [scripted(upstream)], db_pool_size=2, db_max_overflow=0, backup_workers=1
    )
    if chat.app.state.vektor.engine.dialect.name == "sqlite":
        pytest.skip(
            "SQLite: restores take turns with requests on the app's one connection, a batch "
            "at a time (tests/sync/test_restore_limits.py measures the wait)"
        )
    users = [chat.headers]
    for name in ("bob", "carol", "dave"):
        await register(chat.client, name)
        users.append(bearer(await login(chat.client, name)))
    for headers in users:
        await seed(chat, 5000, headers)
    started = await asyncio.gather(*(chat.client.post("/sync/backup", headers=h) for h in users))
    assert [s.status_code for s in started] == [202] * 4
    slowest, probes, jobs_began = 0.0, 0, time.monotonic()
    last = f"/sync/backup/{started[-1].json()['task_id']}"
    while True:  # while the jobs run, requests find a connection at once
        began = time.monotonic()
        me = await chat.client.get("/users/me", headers=chat.headers)
        status = await chat.client.get(last, headers=users[-1])
        slowest = max(slowest, time.monotonic() - began)
        assert (me.status_code, status.status_code) == (200, 200)
        if status.json()["status"] != "in_progress":
            break
        probes += 1
    assert probes >= 3
    # a request that had to wait for a job's connection would wait for the job itself
    assert slowest < (time.monotonic() - jobs_began) / 3
    for headers in users:
        assert [b["status"] for b in await settle(chat, headers)] == ["completed"]


async def test_a_backup_reads_messages_a_bounded_part_at_a_time(chat):
    # 50 conversations of 400 messages: all on one page of conversations, 20,000 messages.
    await seed(chat, 50, messages=400)
    bound: list[int] = []

    def count(_conn, _cursor, statement, parameters, _context, _many):
        if statement.lstrip().startswith("SELECT") and "FROM message" in statement:
            bound.append(len(parameters))

    engine = chat.app.state.vektor.backups.read_engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        status = await backup(chat)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert status["messages"] == 20_000
    assert len(bound) >= 4
    assert max(bound) * 400 <= MESSAGES_PER_READ  # conversations bound per read


@pytest.mark.parametrize(("age", "expected"), [(timedelta(0), 409), (timedelta(minutes=5), 202)])
async def test_a_lock_left_by_a_dead_process_expires(chat, age, expected):
    # A lock row as another process leaves it: alive (fresh heartbeat) or dead (stale).
    user_id = uuid.UUID((await chat.client.get("/users/me", headers=chat.headers)).json()["id"])
    async with chat.app.state.vektor.sessionmaker() as session:
        session.add(
            SyncLock(
                user_id=user_id,
                kind="restore",
                job_id=uuid.uuid4(),
                heartbeat_at=datetime.now(UTC) - age,
            )
        )
        await session.commit()
    started = await chat.client.post("/sync/backup", headers=chat.headers)
    assert started.status_code == expected
    if expected == 409:
        assert started.json()["detail"] == "A backup or restore of this account is already running"


async def test_restores_of_many_users_leave_requests_their_connections(chat_harness, upstream):
    chat = await chat_harness(
        [scripted(upstream)], db_pool_size=2, db_max_overflow=0, backup_workers=1
    )
    users = []
    for name in ("bob", "carol", "dave"):
        await register(chat.client, name)
        users.append(bearer(await login(chat.client, name)))
    data = build_backup([wide_record(2) for _ in range(3000)])
    restores = [asyncio.create_task(upload(chat, data, headers=h)) for h in users]
    slowest, probes, jobs_began = 0.0, 0, time.monotonic()
    while not all(task.done() for task in restores):  # requests find a connection at once
        began = time.monotonic()
        assert (await chat.client.get("/users/me", headers=chat.headers)).status_code == 200
        slowest, probes = max(slowest, time.monotonic() - began), probes + 1
        await asyncio.sleep(0.02)
    assert [task.result().status_code for task in restores] == [200] * 3
    assert probes >= 3
    # a request that had to wait for a job's connection would wait for the job itself
    assert slowest < (time.monotonic() - jobs_began) / 3
