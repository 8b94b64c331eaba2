"""The dashboard's usage charts: GET /api/dashboard/usage (admins) and the page drawing
tokens per day per model as stacked SVG bars, the top spenders of the month and the quota
rejections, in headless Chromium, with nothing fetched from elsewhere.

`VEKTOR_ARTIFACTS=docs` makes the browser test write docs/dashboard-usage.png (see
scripts/dashboard_screenshot.py)."""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from fastapi import FastAPI

from tests.conftest import register, scripted
from tests.monitoring.test_dashboard import ARTIFACTS, CHROMIUM, pytestmark, until
from tests.monitoring.test_system import make_admin
from tests.support.usage_rows import usage_row
from vektor.core.metrics import QUOTA_REFUSALS
from vektor.usage.hot_repository import UsageHotRepository

__all__ = ["pytestmark"]  # skipped without Chromium, like the other browser tests

MODELS = ("gpt-4o", "claude", "llama", "smollm2")


def _today() -> datetime:
    return datetime.combine(datetime.now(UTC).date(), time(12), UTC)


async def _seed(app: FastAPI, users: dict[str, uuid.UUID]) -> dict[str, Decimal]:
    """Rows over the last 30 days for every model; each user spends a different amount;
    returns what each spent this month."""
    writes = UsageHotRepository(app.state.vektor.direct)
    pick, now = random.Random(7), _today()
    spent = dict.fromkeys(users, Decimal(0))
    for days_ago in range(30):
        at = now - timedelta(days=days_ago)
        for n, model in enumerate(MODELS):
            for rank, (name, user) in enumerate(users.items()):
                if pick.random() < 0.3:
                    continue
                cost = Decimal(rank + 1) / 1000
                tokens = pick.randint(200, 2000) * (n + 1)
                await writes.record(
                    usage_row(user, model=model, created_at=at, cost=cost, prompt_tokens=tokens)
                )
                if at.month == now.month:
                    spent[name] += cost
    return spent


async def _refuse_once(chat: Any) -> None:
    body = {"model": "limited", "messages": [{"role": "user", "content": "hola"}]}
    statuses = [(await chat.stream(body))[0] for _ in range(2)]
    assert statuses == [200, 429]


async def test_the_usage_data_sums_the_rollups_for_admins_only(chat_harness, upstream):
    chat = await chat_harness(
        [scripted(upstream, "chunks=1", name="limited")], default_requests_per_day=1
    )
    admin = await make_admin(chat.app, chat.client, "root")
    users = {f"usr{n}": uuid.UUID((await register(chat.client, f"usr{n}"))["id"]) for n in range(3)}
    writes = UsageHotRepository(chat.app.state.vektor.direct)
    today = _today()
    await writes.record(usage_row(users["usr0"], model="a", created_at=today, prompt_tokens=100))
    await writes.record(usage_row(users["usr0"], model="b", created_at=today, cost=Decimal(1)))
    yesterday = today - timedelta(days=1)
    await writes.record(usage_row(users["usr1"], model="a", created_at=yesterday))
    old = today - timedelta(days=30)  # outside the chart's 30 days
    await writes.record(usage_row(users["usr2"], model="c", created_at=old))
    await _refuse_once(chat)

    assert (await chat.client.get("/api/dashboard/usage", headers=chat.headers)).status_code == 403
    assert (await chat.client.get("/api/dashboard/usage")).status_code == 401
    response = await chat.client.get("/api/dashboard/usage", headers=admin)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["days"][-1] == today.date().isoformat()
    assert data["days"][0] == (today - timedelta(days=29)).date().isoformat()
    series = {s["model"]: s["tokens"] for s in data["tokens_per_day"]}
    assert set(series) == {"a", "b", "limited"}  # the answer that was admitted counts too
    assert series["a"][-2:] == [15, 105]
    assert series["b"][-1] == 15
    assert all(n == 0 for n in series["a"][:-2])
    assert data["month"] == today.date().replace(day=1).isoformat()
    top = [(t["username"], t["requests"], t["cost"]) for t in data["top_users"]]
    assert top[0] == ("usr0", 2, "1.000012345")
    if yesterday.month == today.month:
        assert ("usr1", 1, "0.000012345") in top
    assert "usr2" not in [t["username"] for t in data["top_users"]] or old.month == today.month
    assert data["quota_rejections"]["requests_per_day"] >= 1
    assert data["quota_rejections"] == dict(sorted(QUOTA_REFUSALS.items()))


async def test_usage_charts_in_the_browser(chat_harness, upstream):
    from playwright.async_api import async_playwright

    chat = await chat_harness(
        [scripted(upstream, "chunks=1", name="limited")], live=True, default_requests_per_day=1
    )
    await make_admin(chat.app, chat.client, "admin")
    names = ["ana", "bruno", "chen", "dara", "eli"]
    users = {n: uuid.UUID((await register(chat.client, n))["id"]) for n in names}
    spent = await _seed(chat.app, users)
    await _refuse_once(chat)
    expected = await chat.client.get(
        "/api/dashboard/usage", headers=await make_admin(chat.app, chat.client, "admin2")
    )
    data = expected.json()
    segments = sum(1 for s in data["tokens_per_day"] for v in s["tokens"] if v)
    base = str(chat.client.base_url)

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 1000})
            requested: list[str] = []
            page.on("request", lambda r: requested.append(r.url))
            violations: list[str] = []
            page.on(
                "console",
                lambda m: (
                    violations.append(m.text) if "Content Security Policy" in m.text else None
                ),
            )
            await page.goto(base + "/")
            await page.fill("#username", "admin")
            await page.fill("#password", "correct horse battery")
            await page.click("button[type=submit]")
            await page.wait_for_selector("#top-users tr", timeout=10_000)
            await until(page, "document.querySelectorAll('#usage-chart rect').length > 0")
            drawn = await page.evaluate(
                """() => [...document.querySelectorAll('#usage-chart rect')].map(
                    (r) => [r.dataset.model, r.dataset.day, r.getBBox().height,
                            r.getBBox().y])"""
            )
            assert len(drawn) == segments
            assert {model for model, *_ in drawn} == {*MODELS, "limited"}
            assert all(height > 0 for _, _, height, _ in drawn)
            # Stacked: on a day, each segment sits on the one below, none overlapping.
            for day in {day for _, day, _, _ in drawn}:
                bars = sorted((y, h) for _, d, h, y in drawn if d == day)
                for (y, h), (below, _) in itertools.pairwise(bars):
                    assert abs(y + h - below) < 0.01, (day, bars)
            legend = await page.inner_text("#usage-legend")
            assert all(model in legend for model in MODELS)
            top = await page.eval_on_selector_all(
                "#top-users tr", "(rows) => rows.map((r) => r.cells[0].textContent)"
            )
            ranked = sorted(spent, key=lambda n: spent[n], reverse=True)
            assert top[: len(ranked)] == ranked  # who spent most, first
            quota = await page.inner_text("#quota")
            assert "requests_per_day" in quota
            total = sum(data["quota_rejections"].values())
            assert await page.inner_text("#v-quota") == str(total)
            assert violations == []
            assert all(url.startswith(base) for url in requested)  # nothing from elsewhere
            await asyncio.to_thread(ARTIFACTS.mkdir, parents=True, exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "dashboard-usage.png"), full_page=True)
        finally:
            await browser.close()
