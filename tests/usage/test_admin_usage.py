"""GET /admin/usage: every user's usage by day, model or user, read from the per-day
rollups that a trigger keeps in step with the usage rows; the totals equal the rows' own
sums; bad input is a 422 naming the field and a non-admin gets 403. Deleting an account
keeps its usage rows and rollups with user NULL."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from fastapi import FastAPI
from sqlalchemy import func, select

from tests.conftest import register
from tests.monitoring.test_system import make_admin
from tests.support.usage_rows import usage_row
from tests.usage.helpers import usage_rows
from vektor.usage.hot_repository import UsageHotRepository
from vektor.usage.models import UsageDayUser

QUERY = {"from": "2026-03-01", "to": "2026-03-03"}


def _at(day: str, clock: str = "12:00:00") -> datetime:
    return datetime.fromisoformat(f"{day}T{clock}+00:00")


async def _seed(app: FastAPI, alice: uuid.UUID, bob: uuid.UUID) -> None:
    writes = UsageHotRepository(app.state.vektor.direct)
    rows = [
        usage_row(alice, created_at=_at("2026-03-01", "00:00:00"), cost=Decimal("0.1")),
        usage_row(alice, created_at=_at("2026-03-01"), model="b", cost=Decimal("0.2")),
        usage_row(alice, created_at=_at("2026-03-03", "23:59:59.999999")),
        usage_row(bob, created_at=_at("2026-03-01", "08:00:00"), prompt_tokens=1000),
        usage_row(bob, created_at=_at("2026-03-03"), model="b", completion_tokens=7),
        usage_row(alice, created_at=_at("2026-03-04", "00:00:00")),  # the day after `to`
        usage_row(bob, created_at=_at("2026-02-28", "23:59:59.999999")),  # the day before
    ]
    for row in rows:
        await writes.record(row)


async def _report(client: Any, headers: dict[str, str], **query: str) -> dict[str, Any]:
    response = await client.get("/admin/usage", params={**QUERY, **query}, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _rows(report: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (r["key"], r["requests"], r["prompt_tokens"], r["completion_tokens"], r["cost"])
        for r in report["rows"]
    ]


async def test_admin_report_sums_every_users_rows_by_day_model_and_user(app, client, alice):
    admin = await make_admin(app, client, "root")
    alice_id = uuid.UUID(alice["user"]["id"])
    bob_id = uuid.UUID((await register(client, "bob"))["id"])
    await _seed(app, alice_id, bob_id)

    by_day = await _report(client, admin)
    assert (by_day["from"], by_day["to"], by_day["group_by"]) == (*QUERY.values(), "day")
    assert _rows(by_day) == [
        ("2026-03-01", 3, 1020, 15, "0.300012345"),
        ("2026-03-02", 0, 0, 0, "0.000000000"),
        ("2026-03-03", 2, 20, 12, "0.000024690"),
    ]
    assert by_day["totals"] == {
        "requests": 5,
        "prompt_tokens": 1040,
        "completion_tokens": 27,
        "cost": "0.300037035",
    }
    by_model = await _report(client, admin, group_by="model")
    assert _rows(by_model) == [
        ("b", 2, 20, 12, "0.200012345"),
        ("m", 3, 1020, 15, "0.100024690"),
    ]
    by_user = await _report(client, admin, group_by="user")
    assert sorted(_rows(by_user)) == sorted(
        [
            (str(alice_id), 3, 30, 15, "0.300012345"),
            (str(bob_id), 2, 1010, 12, "0.000024690"),
        ]
    )
    for grouped in (by_model, by_user):
        assert grouped["totals"] == by_day["totals"]
    # The rollups agree with the rows themselves.
    days = {"2026-03-01", "2026-03-02", "2026-03-03"}
    inside = [r for r in await usage_rows(app) if r.created_at.date().isoformat() in days]
    assert sum(r.prompt_tokens for r in inside) == by_day["totals"]["prompt_tokens"]
    assert sum((r.cost for r in inside), Decimal(0)) == Decimal(by_day["totals"]["cost"])


async def test_answers_through_the_api_show_in_the_admin_report(chat_harness, upstream):
    from tests.conftest import collect_stream, scripted

    chat = await chat_harness([scripted(upstream, "chunks=2", name="gpt-demo")])
    admin = await make_admin(chat.app, chat.client, "root")
    for _ in range(2):
        await collect_stream(
            chat.client,
            "POST",
            "/chat/stream",
            json={"model": "gpt-demo", "messages": [{"role": "user", "content": "hola"}]},
            headers=chat.headers,
        )
    rows = await usage_rows(chat.app)
    assert len(rows) == 2
    report = (
        await chat.client.get("/admin/usage", params={"group_by": "model"}, headers=admin)
    ).json()
    assert [(r["key"], r["requests"]) for r in report["rows"]] == [("gpt-demo", 2)]
    assert report["totals"]["prompt_tokens"] == sum(r.prompt_tokens for r in rows)
    assert report["totals"]["completion_tokens"] == sum(r.completion_tokens for r in rows)


async def test_bad_input_is_422_naming_the_field_and_non_admins_get_403(app, client, alice):
    admin = await make_admin(app, client, "root")
    cases = [
        ({"group_by": "api_key"}, "group_by"),  # a user's grouping, not an admin's
        ({"group_by": "week"}, "group_by"),
        ({"from": "2026-02-30"}, "from"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"from": "2026-03-02", "to": "2026-03-01"}, "to"),
        ({"from": "2025-01-01", "to": "2026-01-02"}, "to"),  # 367 days: 366 is the most
    ]
    for query, field in cases:
        response = await client.get("/admin/usage", params=query, headers=admin)
        assert response.status_code == 422, (query, response.text)
        assert [e["loc"][-1] for e in response.json()["detail"]] == [field], query
    longest = {"from": "2024-01-01", "to": "2024-12-31"}  # a leap year: 366 days
    assert (await client.get("/admin/usage", params=longest, headers=admin)).status_code == 200
    assert (await client.get("/admin/usage", headers=alice["headers"])).status_code == 403
    assert (await client.get("/admin/usage")).status_code == 401


async def test_deleting_an_account_keeps_its_usage_with_user_null(app, client, alice):
    admin = await make_admin(app, client, "root")
    alice_id = uuid.UUID(alice["user"]["id"])
    bob_id = uuid.UUID((await register(client, "bob"))["id"])
    await _seed(app, alice_id, bob_id)
    before = await _report(client, admin, group_by="user")

    assert (await client.delete("/users/me", headers=alice["headers"])).status_code == 204

    rows = await usage_rows(app)
    assert len(rows) == 7  # every row is kept
    assert sorted(str(r.user_id) for r in rows if r.user_id != bob_id) == ["None"] * 4
    after = await _report(client, admin, group_by="user")
    assert after["totals"] == before["totals"]
    assert sorted(_rows(after), key=str) == sorted(
        [(None, 3, 30, 15, "0.300012345"), (str(bob_id), 2, 1010, 12, "0.000024690")], key=str
    )
    async with app.state.vektor.sessionmaker() as session:
        orphans = select(func.count()).where(UsageDayUser.user_id.is_(None))
        assert await session.scalar(orphans) == 3  # 03-01, 03-03, 03-04: one per day
    # A row written afterwards for the deleted account (an answer that was running) lands
    # with user NULL too, and sums into the same group.
    late = usage_row(alice_id, created_at=_at("2026-03-02"))
    await UsageHotRepository(app.state.vektor.direct).record(late)
    again = await _report(client, admin, group_by="user")
    assert (None, 4, 40, 20, "0.300024690") in _rows(again)
