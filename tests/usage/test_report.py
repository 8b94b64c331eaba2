"""GET /users/me/usage: sums of the caller's rows over inclusive UTC days, per day, model
or API key; bad input is a 422 naming the field; the totals equal what the upstream
reported; /config/models shows the prices."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from fastapi import FastAPI

from tests.conftest import register, scripted
from tests.support.usage_rows import usage_row
from vektor.usage.hot_repository import UsageHotRepository
from vektor.usage.windows import current_month

KEY = uuid.UUID("00000000-0000-4000-8000-000000000001")


def _at(day: str, clock: str = "12:00:00") -> datetime:
    return datetime.fromisoformat(f"{day}T{clock}+00:00")


async def _seed(app: FastAPI, alice: uuid.UUID, bob: uuid.UUID) -> None:
    writes = UsageHotRepository(app.state.vektor.direct)
    rows = [
        usage_row(alice, created_at=_at("2026-03-01", "00:00:00"), cost=Decimal("0.1")),
        usage_row(alice, created_at=_at("2026-03-01"), model="b", cost=Decimal("0.2")),
        usage_row(alice, created_at=_at("2026-03-03", "23:59:59.999999"), api_key_id=KEY),
        usage_row(alice, created_at=_at("2026-03-04", "00:00:00")),  # the day after `to`
        usage_row(alice, created_at=_at("2026-02-28", "23:59:59")),  # the day before
        usage_row(bob, created_at=_at("2026-03-02"), prompt_tokens=1000),  # someone else's
    ]
    for row in rows:
        await writes.record(row)


async def test_the_report_sums_the_callers_rows_by_day_model_and_key(app, client, alice):
    bob = uuid.UUID((await register(client, "bob"))["id"])
    await _seed(app, uuid.UUID(alice["user"]["id"]), bob)
    query = {"from": "2026-03-01", "to": "2026-03-03"}

    by_day = await client.get("/users/me/usage", params=query, headers=alice["headers"])
    assert by_day.status_code == 200, by_day.text
    report = by_day.json()
    assert (report["from"], report["to"], report["group_by"]) == ("2026-03-01", "2026-03-03", "day")
    assert report["totals"] == {
        "requests": 3,
        "prompt_tokens": 30,
        "completion_tokens": 15,
        "cost": "0.300012345",
    }
    assert [(r["key"], r["requests"], r["cost"]) for r in report["rows"]] == [
        ("2026-03-01", 2, "0.300000000"),
        ("2026-03-02", 0, "0.000000000"),
        ("2026-03-03", 1, "0.000012345"),
    ]

    by_model = (
        await client.get(
            "/users/me/usage", params={**query, "group_by": "model"}, headers=alice["headers"]
        )
    ).json()
    assert [(r["key"], r["requests"]) for r in by_model["rows"]] == [("b", 1), ("m", 2)]
    by_key = (
        await client.get(
            "/users/me/usage", params={**query, "group_by": "api_key"}, headers=alice["headers"]
        )
    ).json()
    assert sorted((r["key"] or "", r["requests"]) for r in by_key["rows"]) == [
        ("", 2),
        (str(KEY), 1),
    ]
    for grouped in (by_model, by_key):
        assert grouped["totals"] == report["totals"]
        assert sum(Decimal(r["cost"]) for r in grouped["rows"]) == Decimal("0.300012345")


async def test_the_default_is_the_current_month_by_day(client, alice):
    response = await client.get("/users/me/usage", headers=alice["headers"])
    assert response.status_code == 200
    report = response.json()
    first, last = current_month(datetime.now(UTC).date())
    assert (report["from"], report["to"]) == (first.isoformat(), last.isoformat())
    assert len(report["rows"]) == (last - first).days + 1
    assert report["totals"] == {
        "requests": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost": "0.000000000",
    }


async def test_bad_input_is_a_422_naming_the_field(client, alice):
    cases: list[tuple[dict[str, Any], str]] = [
        ({"from": "2026-13-01"}, "from"),
        ({"to": "yesterday"}, "to"),
        ({"group_by": "week"}, "group_by"),
        ({"from": "2025-01-01", "to": "2026-01-02"}, "to"),  # 367 days
        ({"from": "2026-03-02", "to": "2026-03-01"}, "to"),
    ]
    for params, field in cases:
        response = await client.get("/users/me/usage", params=params, headers=alice["headers"])
        assert response.status_code == 422, params
        assert [e["loc"] for e in response.json()["detail"]] == [["query", field]], params
    leap = {"from": "2024-01-01", "to": "2024-12-31"}  # 366 days is allowed
    ok = await client.get("/users/me/usage", params=leap, headers=alice["headers"])
    assert ok.status_code == 200
    assert len(ok.json()["rows"]) == 366
    assert (await client.get("/users/me/usage")).status_code == 401


async def test_totals_equal_the_upstreams_tokens_and_prices_show(chat_harness, upstream):
    prices = {"input_cost_per_mtok": 0.15, "output_cost_per_mtok": 2.5}
    chat = await chat_harness([scripted(upstream, "chunks=7;text=u", name="paid", **prices)])
    reported = []
    for _ in range(3):
        status, events, _ = await chat.stream(
            {"model": "paid", "messages": [{"role": "user", "content": "hi"}]}
        )
        assert status == 200
        reported.append(next(e for e in events if e["type"] == "usage"))
    today = datetime.now(UTC).date().isoformat()
    usage = await chat.client.get(
        "/users/me/usage",
        params={"from": today, "to": today, "group_by": "model"},
        headers=chat.headers,
    )
    assert usage.status_code == 200, usage.text
    totals = usage.json()["totals"]
    assert totals["requests"] == 3
    assert totals["prompt_tokens"] == sum(u["prompt_tokens"] for u in reported) == 33
    assert totals["completion_tokens"] == sum(u["completion_tokens"] for u in reported) == 21
    assert Decimal(totals["cost"]) == (33 * Decimal("0.15") + 21 * Decimal("2.5")) / 10**6
    models = await chat.client.get("/config/models", headers=chat.headers)
    [entry] = [m for m in models.json() if m["name"] == "paid"]
    # decimal strings, as read from the file: no float on the way
    assert (entry["input_cost_per_mtok"], entry["output_cost_per_mtok"]) == ("0.15", "2.5")
