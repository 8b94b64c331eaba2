"""Usage in backups: a user's backup holds their usage rows (theirs only); a restore, of a
stored backup or an uploaded file, by the same account or another, never changes usage or
quotas; a file's usage lines are checked like the rest."""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from tests.conftest import bearer, login, register, scripted
from tests.monitoring.test_system import make_admin
from tests.support.usage_rows import usage_row
from tests.sync.test_backup import backup, build_backup, conversation_record, upload
from tests.usage.helpers import usage_rows
from vektor.usage.hot_repository import UsageHotRepository

QUESTION = {"model": "scripted", "messages": [{"role": "user", "content": "hola"}]}


async def _file(chat: Any, status: dict[str, Any], headers: dict[str, str]) -> list[Any]:
    download = await chat.client.get(f"/sync/backup/{status['task_id']}/download", headers=headers)
    assert download.status_code == 200
    return [json.loads(line) for line in gzip.decompress(download.content).splitlines()]


async def _totals(chat: Any, admin: dict[str, str], users: list[dict[str, str]]) -> Any:
    """Everything a restore must leave alone: the rows, the admin report, each user's
    report and quota."""
    rows = sorted((r.id, r.user_id, r.prompt_tokens, r.cost) for r in await usage_rows(chat.app))
    period = {"from": "2026-01-01", "to": datetime.now(UTC).date().isoformat()}
    report = (await chat.client.get("/admin/usage", params=period, headers=admin)).json()
    mine = [
        (
            (await chat.client.get("/users/me/usage", params=period, headers=h)).json(),
            (await chat.client.get("/users/me/quota", headers=h)).json()["used"],
        )
        for h in users
    ]
    return rows, report, mine


async def test_a_backup_holds_the_users_usage_and_a_restore_changes_none(chat_harness, upstream):
    chat = await chat_harness(
        [scripted(upstream, "chunks=3", name="scripted")], default_tokens_per_day=1_000_000
    )
    admin = await make_admin(chat.app, chat.client, "root")
    await register(chat.client, "bob")
    bob = bearer(await login(chat.client, "bob"))
    me = (await chat.client.get("/users/me", headers=chat.headers)).json()
    bob_id = uuid.UUID((await chat.client.get("/users/me", headers=bob)).json()["id"])
    writes = UsageHotRepository(chat.app.state.vektor.direct)
    # More rows than one line holds, some of them at the same instant (the page key).
    at = datetime(2026, 2, 1, tzinfo=UTC)
    for n in range(1203):
        row = usage_row(
            uuid.UUID(me["id"]),
            created_at=at + timedelta(seconds=n // 3),
            cost=Decimal("0.000000001") * n,
        )
        await writes.record(row)
    await writes.record(usage_row(bob_id, created_at=at, model="bobs"))
    assert (await chat.stream(QUESTION))[0] == 200  # a real answer's row

    status = await backup(chat)
    lines = await _file(chat, status, chat.headers)
    usage = [row for line in lines if line["kind"] == "usage" for row in line["rows"]]
    assert [len(line["rows"]) for line in lines if line["kind"] == "usage"] == [1000, 204]
    assert lines[-1]["counts"]["usage"] == 1204
    alices = [r for r in await usage_rows(chat.app) if r.user_id == uuid.UUID(me["id"])]
    assert sorted(r["id"] for r in usage) == sorted(str(r.id) for r in alices)
    assert "bobs" not in {r["model"] for r in usage}  # nobody else's
    assert sum(Decimal(r["cost"]) for r in usage) == sum((r.cost for r in alices), Decimal(0))
    assert sum(r["prompt_tokens"] for r in usage) == sum(r.prompt_tokens for r in alices)

    before = await _totals(chat, admin, [chat.headers, bob])
    for mode in ("merge", "replace"):
        restored = await chat.client.post(
            "/sync/restore",
            json={"backup_id": status["task_id"], "mode": mode},
            headers=chat.headers,
        )
        assert restored.status_code == 200, restored.text
        assert await _totals(chat, admin, [chat.headers, bob]) == before
    # The same file uploaded into another account: its rows do not become bob's either.
    download = f"/sync/backup/{status['task_id']}/download"
    data = (await chat.client.get(download, headers=chat.headers)).content
    assert (await upload(chat, data, mode="replace", headers=bob)).status_code == 200
    assert await _totals(chat, admin, [chat.headers, bob]) == before


async def test_usage_lines_of_a_file_are_checked_and_then_ignored(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=1", name="scripted")])
    now = datetime.now(UTC).isoformat()
    row = {
        "id": str(uuid.uuid4()),
        "api_key_id": None,
        "model": "forged",
        "deployment": "forged#0",
        "prompt_tokens": 10**9,
        "completion_tokens": 0,
        "cost": "1000.000000000",
        "cached": False,
        "estimated": False,
        "source": "chat",
        "finish_reason": "stop",
        "created_at": now,
    }
    good = [conversation_record(title="kept"), {"kind": "usage", "rows": [row]}]
    counted = _with_usage_count(good, 1)
    assert (await upload(chat, counted)).status_code == 200
    assert await usage_rows(chat.app) == []  # a forged row changes nothing
    quota = (await chat.client.get("/users/me/quota", headers=chat.headers)).json()
    assert quota["used"]["tokens_today"] == 0
    bad_rows: list[dict[str, Any]] = [
        {**row, "prompt_tokens": -1},
        {**row, "cost": "-1"},
        {**row, "model": "x" * 200},
        {**row, "surprise": True},
    ]
    for bad in bad_rows:
        data = _with_usage_count([{"kind": "usage", "rows": [bad]}], 1)
        assert (await upload(chat, data)).status_code == 422, bad
    too_many = _with_usage_count([{"kind": "usage", "rows": [row] * 1001}], 1001)
    assert (await upload(chat, too_many)).status_code == 422
    wrong_count = _with_usage_count([{"kind": "usage", "rows": [row]}], 2)
    assert (await upload(chat, wrong_count)).status_code == 422
    titles = [
        r["title"] for r in (await chat.client.get("/chat/history", headers=chat.headers)).json()
    ]
    assert titles == ["kept"]
    assert await usage_rows(chat.app) == []


def _with_usage_count(records: list[dict[str, Any]], usage: int) -> bytes:
    """A file like `build_backup`'s, its manifest counting `usage` usage rows."""
    content = gzip.decompress(build_backup(records)).splitlines()
    manifest = json.loads(content[-1])
    manifest["counts"]["usage"] = usage
    return gzip.compress(b"\n".join([*content[:-1], json.dumps(manifest).encode()]) + b"\n")
