"""Backups and restores at the sizes and rates that once broke them."""

import uuid
from datetime import UTC, datetime

import pytest

from tests.conftest import scripted
from tests.sync.test_backup import build_backup, upload


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
