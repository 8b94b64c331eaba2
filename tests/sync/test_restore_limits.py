"""What a restore may take: the user's storage quota, and never the database others need."""

import asyncio
import time

import pytest

from tests.conftest import bearer, login, register, scripted
from tests.sync.test_backup import build_backup, conversation_record, converse, export, upload
from tests.sync.test_backup_limits import wide_record

LIMIT = 60_000


@pytest.fixture
async def chat(chat_harness, upstream):
    return await chat_harness(
        [scripted(upstream, "chunks=3;text=respuesta corta")], max_user_storage_bytes=LIMIT
    )


def sized(content_bytes, title="Sized"):
    """A conversation of two messages holding `content_bytes` between them."""
    record = conversation_record(title=title)
    half = content_bytes // 2
    record["messages"][0]["content"] = "é" * (half // 2)  # two bytes each in UTF-8
    record["messages"][1]["content"] = "x" * (content_bytes - 2 * (half // 2))
    return record


async def test_a_backup_past_the_storage_quota_is_422_and_changes_nothing(chat):
    await converse(chat, "mine")
    before = await export(chat)
    response = await upload(chat, build_backup([sized(LIMIT // 2), sized(LIMIT // 2)]))
    assert response.status_code == 422
    assert "storage quota" in response.json()["detail"]
    assert await export(chat) == before


async def test_merge_counts_what_the_account_keeps(chat):
    first = build_backup([sized(20_000, "first")])
    assert (await upload(chat, first)).status_code == 200
    # The same file again replaces what it brought: 20 kB, not 40.
    assert (await upload(chat, first)).status_code == 200
    assert (await upload(chat, first)).status_code == 200
    second = build_backup([sized(25_000, "second")])
    assert (await upload(chat, second)).status_code == 200  # 45 kB and rows: within 60
    before = await export(chat)
    third = build_backup([sized(20_000, "third")])
    response = await upload(chat, third)  # 65 kB once merged
    assert response.status_code == 422
    assert "storage quota" in response.json()["detail"]
    assert await export(chat) == before
    # `replace` leaves only the file's 20 kB.
    assert (await upload(chat, third, mode="replace")).status_code == 200
    titles = [c["title"] for c in (await export(chat))["conversations"]]
    assert titles == ["third"]


async def answer(chat):
    status, events, raw = await chat.stream(
        {"model": "scripted", "messages": [{"role": "user", "content": "still here"}]}
    )
    assert status == 200, raw
    assert events[-1]["type"] == "done", raw
    return events[0]["conversation_id"]


async def test_other_users_answers_are_stored_while_a_restore_runs(chat_harness, upstream):
    # 60,000 messages: one transaction would hold SQLite's write lock for seconds, past the
    # time a writer waits for it; a batch at a time holds it for a fraction of one.
    chat = await chat_harness([scripted(upstream, "chunks=3;text=respuesta corta")])
    await register(chat.client, "bob")
    bob = bearer(await login(chat.client, "bob"))
    data = build_backup([wide_record(20) for _ in range(3000)])
    started = time.monotonic()
    restoring = asyncio.create_task(upload(chat, data, headers=bob))
    ended: list[float] = []
    restoring.add_done_callback(lambda _: ended.append(time.monotonic()))
    await asyncio.sleep(0.3)  # the restore is under way
    answered, slowest = 0, 0.0
    while not restoring.done():
        began = time.monotonic()
        conversation = await answer(chat)
        stored = await chat.client.get(f"/chat/history/{conversation}", headers=chat.headers)
        assert [m["role"] for m in stored.json()["messages"]] == ["user", "assistant"]
        slowest = max(slowest, time.monotonic() - began)
        answered += not restoring.done()
        await asyncio.sleep(0.05)
    assert restoring.result().status_code == 200
    assert answered >= 5
    # One transaction made an answer (its writes and the history read) wait the whole
    # write: 6.4 s of a 7.5 s restore. A batch at a time, each of them waits one batch at
    # most: 0.7 s on a quiet machine, 2.4 s of 7.8 on a busy one. Both slow down alike.
    assert slowest < (ended[0] - started) / 2
    assert len((await chat.client.get("/chat/history?limit=100", headers=bob)).json()) == 100


async def test_an_upload_leaves_nothing_in_the_users_folder(chat):
    # Account deletion removes the user's folder; an upload must not make one it could miss.
    assert (await upload(chat, build_backup([sized(1000)]))).status_code == 200
    me = (await chat.client.get("/users/me", headers=chat.headers)).json()
    backup_dir = chat.app.state.vektor.settings.backup_dir
    assert not (backup_dir / me["id"]).exists()
    assert list((backup_dir / ".uploads").iterdir()) == []
