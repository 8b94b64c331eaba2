"""Backups and restores: checksums, atomicity, idempotence, ownership, interruption."""

import asyncio
import gzip
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from tests.conftest import bearer, login, register, scripted
from vektor.sync.backups import backup_path
from vektor.sync.models import Backup


@pytest.fixture
async def chat(chat_harness, upstream):
    return await chat_harness([scripted(upstream, "chunks=3;text=respuesta corta")])


async def converse(chat, text, headers=None):
    _, events, _ = await chat.stream(
        {"model": "scripted", "messages": [{"role": "user", "content": text}]}, headers=headers
    )
    return events[0]["conversation_id"]


async def backup(chat, headers=None):
    headers = headers or chat.headers
    started = await chat.client.post("/sync/backup", headers=headers)
    assert started.status_code == 202
    body = started.json()
    assert body["status"] == "in_progress"
    for _ in range(300):
        status = (await chat.client.get(f"/sync/backup/{body['task_id']}", headers=headers)).json()
        if status["status"] != "in_progress":
            assert status["status"] == "completed", status
            return status
        await asyncio.sleep(0.02)
    raise AssertionError("backup did not finish")


async def export(chat, headers=None):
    """Everything a restore must bring back, in a comparable form."""
    headers = headers or chat.headers
    listing = (await chat.client.get("/chat/history?limit=100", headers=headers)).json()
    conversations = []
    for row in sorted(listing, key=lambda r: r["id"]):
        full = (await chat.client.get(f"/chat/history/{row['id']}", headers=headers)).json()
        conversations.append(full)
    prefs = (await chat.client.get("/users/preferences", headers=headers)).json()
    me = (await chat.client.get("/users/me", headers=headers)).json()
    return {"conversations": conversations, "preferences": prefs, "avatar": me["avatar_url"]}


async def restore(chat, body=None, headers=None):
    return await chat.client.post("/sync/restore", json=body or {}, headers=headers or chat.headers)


async def test_backup_delete_restore_gives_the_same_state_twice(chat):
    await converse(chat, "primera pregunta")
    await converse(chat, "segunda pregunta")
    await chat.client.put(
        "/users/preferences", headers=chat.headers, json={"theme": "light", "language": "es"}
    )
    await chat.client.put(
        "/users/me", headers=chat.headers, json={"avatar_url": "https://cdn.example.com/me.png"}
    )
    before = await export(chat)
    status = await backup(chat)
    assert status["size_bytes"] > 0
    assert len(status["sha256"]) == 64
    assert status["conversations"] == 2
    assert status["messages"] == 4

    for conversation in before["conversations"]:
        await chat.client.delete(f"/chat/history/{conversation['id']}", headers=chat.headers)
    await chat.client.put("/users/preferences", headers=chat.headers, json={"theme": "system"})
    await chat.client.put("/users/me", headers=chat.headers, json={"avatar_url": None})
    assert (await export(chat)) != before

    response = await restore(chat)
    assert response.status_code == 200
    assert response.json() == {"detail": "Restauración completada"}
    assert await export(chat) == before
    again = await restore(chat, {"backup_id": status["task_id"]})
    assert again.status_code == 200
    assert await export(chat) == before


async def test_merge_keeps_newer_conversations_and_replace_removes_them(chat):
    await converse(chat, "old one")
    await backup(chat)
    newer = await converse(chat, "made after the backup")
    await restore(chat)
    ids = [r["id"] for r in (await chat.client.get("/chat/history", headers=chat.headers)).json()]
    assert newer in ids
    assert len(ids) == 2
    await restore(chat, {"mode": "replace"})
    ids = [r["id"] for r in (await chat.client.get("/chat/history", headers=chat.headers)).json()]
    assert newer not in ids
    assert len(ids) == 1


async def test_listing_download_and_file_format(chat, tmp_path):
    await converse(chat, "contenido")
    first = await backup(chat)
    second = await backup(chat)
    listing = (await chat.client.get("/sync/backups", headers=chat.headers)).json()
    assert [b["task_id"] for b in listing] == [second["task_id"], first["task_id"]]
    download = await chat.client.get(
        f"/sync/backup/{first['task_id']}/download", headers=chat.headers
    )
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == first["sha256"]
    lines = [json.loads(x) for x in gzip.decompress(download.content).splitlines()]
    assert lines[0]["kind"] == "header"
    assert lines[0]["version"] == 1
    assert lines[-1]["kind"] == "manifest"
    assert lines[-1]["counts"] == {"conversations": 1, "messages": 2, "usage": 1}
    text = gzip.decompress(download.content).decode()
    # No secrets inside.
    assert "password" not in text
    assert "$2b$" not in text
    assert chat.headers["Authorization"].split()[1] not in text


async def tamper(chat, status, change):
    user_id = uuid.UUID((await chat.client.get("/users/me", headers=chat.headers)).json()["id"])
    path = backup_path(
        chat.app.state.vektor.settings.backup_dir, user_id, uuid.UUID(status["task_id"])
    )
    data = bytearray(path.read_bytes())
    path.write_bytes(change(data))


@pytest.mark.parametrize(
    "change",
    [
        lambda data: data[:-1] + bytes([data[-1] ^ 0x01]),  # a flipped byte
        lambda data: data[: len(data) // 2],  # truncated
    ],
    ids=["flipped-byte", "truncated"],
)
async def test_damaged_stored_backup_is_422_and_changes_nothing(chat, change):
    await converse(chat, "keep me")
    status = await backup(chat)
    await converse(chat, "also keep me")
    before = await export(chat)
    await tamper(chat, status, change)
    response = await restore(chat, {"backup_id": status["task_id"], "mode": "replace"})
    assert response.status_code == 422
    assert await export(chat) == before


def build_backup(records, version=1):
    """A well-formed backup file around the given records."""
    lines = [
        json.dumps(
            {
                "kind": "header",
                "format": "vektor-backup",
                "version": version,
                "app_version": "x",
                "created_at": datetime.now(UTC).isoformat(),
            }
        )
    ]
    lines += [json.dumps(r) for r in records]
    content = "".join(line + "\n" for line in lines).encode()
    counts = {
        "conversations": sum(r["kind"] == "conversation" for r in records),
        "messages": sum(len(r.get("messages", [])) for r in records),
    }
    manifest = {"kind": "manifest", "counts": counts, "sha256": hashlib.sha256(content).hexdigest()}
    return gzip.compress(content + json.dumps(manifest).encode() + b"\n")


async def upload(chat, data, mode="merge", headers=None):
    return await chat.client.post(
        "/sync/restore",
        headers=headers or chat.headers,
        files={"file": ("backup.vkb.gz", data, "application/gzip")},
        data={"mode": mode},
    )


def conversation_record(conversation_id=None, message_ids=None, title="Uploaded"):
    now = datetime.now(UTC).isoformat()
    ids = message_ids or [str(uuid.uuid4()), str(uuid.uuid4())]
    return {
        "kind": "conversation",
        "id": conversation_id or str(uuid.uuid4()),
        "title": title,
        "model": "scripted",
        "created_at": now,
        "updated_at": now,
        "messages": [
            {"id": i, "role": r, "content": f"text {n}", "created_at": now}
            for n, (i, r) in enumerate(zip(ids, ["user", "assistant"], strict=False))
        ],
    }


async def test_upload_restore_and_wrong_version(chat):
    good = build_backup([conversation_record(title="From a file")])
    assert (await upload(chat, good)).status_code == 200
    titles = [
        r["title"] for r in (await chat.client.get("/chat/history", headers=chat.headers)).json()
    ]
    assert titles == ["From a file"]
    before = await export(chat)
    future = build_backup([conversation_record(title="Future")], version=2)
    response = await upload(chat, future, mode="replace")
    assert response.status_code == 422
    assert "version" in response.json()["detail"]
    for bad in (b"not gzip at all", gzip.compress(b'{"kind": "header"}\n'), good[:-10]):
        assert (await upload(chat, bad, mode="replace")).status_code == 422
    assert await export(chat) == before


async def test_duplicate_ids_in_a_file_are_422(chat):
    record = conversation_record()
    data = build_backup([record, dict(record, title="again")])
    assert (await upload(chat, data)).status_code == 422


async def test_another_users_ids_land_on_the_caller_only(chat):
    victim_conversation = await converse(chat, "the victim's words")
    victim_before = await export(chat)
    victim_messages = victim_before["conversations"][0]["messages"]
    await register(chat.client, "attacker")
    attacker = bearer(await login(chat.client, "attacker"))
    data = build_backup(
        [
            conversation_record(
                victim_conversation, [m["id"] for m in victim_messages], title="Overwrite attempt"
            ),
        ]
    )
    for _ in range(2):  # idempotent: twice gives the same state
        response = await upload(chat, data, headers=attacker)
        assert response.status_code == 200
        mine = (await chat.client.get("/chat/history", headers=attacker)).json()
        assert len(mine) == 1
        assert mine[0]["title"] == "Overwrite attempt"
        assert mine[0]["id"] != victim_conversation
    assert await export(chat) == victim_before


async def test_no_backup_is_404_and_others_backups_are_404(chat):
    assert (await restore(chat)).status_code == 404
    status = await backup(chat)
    await register(chat.client, "other")
    other = bearer(await login(chat.client, "other"))
    task = status["task_id"]
    assert (await chat.client.get(f"/sync/backup/{task}", headers=other)).status_code == 404
    assert (
        await chat.client.get(f"/sync/backup/{task}/download", headers=other)
    ).status_code == 404
    assert (await restore(chat, {"backup_id": task}, headers=other)).status_code == 404
    assert (await chat.client.get("/sync/backups", headers=other)).json() == []
    assert (await restore(chat, {"backup_id": "nope"})).status_code == 422
    assert (await restore(chat, {"mode": "wipe"})).status_code == 422


async def test_interrupted_job_is_reported_failed(chat):
    status = await backup(chat)
    async with chat.app.state.vektor.sessionmaker() as session:
        # A job whose process died: still in progress, heartbeat long gone.
        await session.execute(
            update(Backup)
            .where(Backup.id == uuid.UUID(status["task_id"]))
            .values(status="in_progress", heartbeat_at=datetime.now(UTC) - timedelta(minutes=5))
        )
        await session.commit()
    failed = (
        await chat.client.get(f"/sync/backup/{status['task_id']}", headers=chat.headers)
    ).json()
    assert failed["status"] == "failed"
    assert failed["error"] == "interrupted"


async def test_job_cancelled_by_shutdown_leaves_no_partial_file(chat):
    from sqlalchemy import insert

    from vektor.chat.models import Conversation, Message

    me = (await chat.client.get("/users/me", headers=chat.headers)).json()
    user_id = uuid.UUID(me["id"])
    now = datetime.now(UTC)
    async with chat.app.state.vektor.sessionmaker() as session:
        conversations = [
            {
                "id": uuid.uuid4(),
                "user_id": user_id,
                "title": f"c{i}",
                "model": "m",
                "message_count": 1,
                "created_at": now,
                "updated_at": now,
            }
            for i in range(3000)
        ]
        await session.execute(insert(Conversation), conversations)
        await session.execute(
            insert(Message),
            [
                {
                    "id": uuid.uuid4(),
                    "conversation_id": c["id"],
                    "role": "user",
                    "content": "x" * 200,
                    "created_at": now,
                }
                for c in conversations
            ],
        )
        await session.commit()
    manager = chat.app.state.vektor.backups
    job = await manager.start(user_id)
    await asyncio.sleep(0.01)
    await manager.shutdown()
    status = (await chat.client.get(f"/sync/backup/{job.id}", headers=chat.headers)).json()
    folder = chat.app.state.vektor.settings.backup_dir / str(user_id)
    leftovers = [p.name for p in folder.iterdir()] if folder.exists() else []
    assert not [name for name in leftovers if name.endswith(".tmp")]
    if status["status"] == "failed":
        assert status["error"] == "interrupted"
        assert f"{job.id}.vkb" not in leftovers
    else:  # it finished before the stop came: then it is whole
        assert status["status"] == "completed"


async def test_account_deletion_removes_backup_files(chat):
    status = await backup(chat)
    me = (await chat.client.get("/users/me", headers=chat.headers)).json()
    path = backup_path(
        chat.app.state.vektor.settings.backup_dir, uuid.UUID(me["id"]), uuid.UUID(status["task_id"])
    )
    assert path.exists()
    assert (await chat.client.delete("/users/me", headers=chat.headers)).status_code == 204
    assert not path.exists()


async def test_upload_over_the_cap_is_413(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream)], max_upload_bytes=2048)
    response = await upload(chat, b"x" * 5000)
    assert response.status_code == 413


def long_record(**message_changes):
    record = conversation_record()
    record["messages"][0].update(message_changes)
    return record


@pytest.mark.parametrize(
    "record",
    [
        long_record(content="x" * 1_000_001),
        long_record(prompt_tokens=10**20),
        long_record(completion_tokens=-1),
        long_record(content="nul\x00inside"),
    ],
    ids=["huge-content", "huge-int", "negative-int", "nul"],
)
async def test_out_of_range_records_are_422(chat, record):
    before = await export(chat)
    assert (await upload(chat, build_backup([record]))).status_code == 422
    assert await export(chat) == before


async def test_unsafe_avatar_in_a_backup_is_422(chat):
    profile = {
        "kind": "profile",
        "email": "x@example.com",
        "username": "x",
        "avatar_url": "javascript:alert(1)",
    }
    assert (await upload(chat, build_backup([profile]))).status_code == 422
    me = (await chat.client.get("/users/me", headers=chat.headers)).json()
    assert me["avatar_url"] is None


async def test_crafted_id_collision_is_422_not_500(chat):
    from vektor.sync.index import MoveIds

    await converse(chat, "mine")
    me = (await chat.client.get("/users/me", headers=chat.headers)).json()
    mine = (await export(chat))["conversations"][0]["messages"][0]["id"]
    collide = str(MoveIds(uuid.UUID(me["id"]))(uuid.UUID(mine)))
    before = await export(chat)
    record = conversation_record(message_ids=[mine, collide])
    response = await upload(chat, build_backup([record]))
    assert response.status_code == 422
    assert await export(chat) == before
