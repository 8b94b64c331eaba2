"""Migration 0009 sums the usage rows already there into the per-day rollups, and from then
on the trigger adds every new row; downgrading drops the trigger with the tables."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from decimal import Decimal

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.databases import backends, temporary_database
from vektor.auth.models import User
from vektor.core.migrations import downgrade, upgrade
from vektor.usage.models import Usage, UsageDayModel, UsageDayUser


def _row(user: uuid.UUID | None, day: str, model: str, cost: str) -> dict[str, object]:
    return {
        "id": uuid.uuid4(),
        "user_id": user,
        "model": model,
        "deployment": f"{model}#0",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cost": Decimal(cost),
        "cached": False,
        "estimated": False,
        "source": "v1",
        "finish_reason": "stop",
        "created_at": datetime.fromisoformat(f"{day}T23:59:59.999999+00:00"),
    }


async def _rollups(engine):
    async with engine.connect() as connection:
        models = (
            await connection.execute(
                select(
                    UsageDayModel.day, UsageDayModel.model, UsageDayModel.requests,
                    UsageDayModel.prompt_tokens, UsageDayModel.cost,
                ).order_by(UsageDayModel.day, UsageDayModel.model)
            )
        ).all()  # fmt: skip
        users = (
            await connection.execute(
                select(UsageDayUser.day, UsageDayUser.user_id, UsageDayUser.requests)
                .order_by(UsageDayUser.day, UsageDayUser.requests)
            )
        ).all()  # fmt: skip
    return [tuple(r) for r in models], [tuple(r) for r in users]


@pytest.mark.parametrize("backend", backends())
async def test_existing_rows_are_summed_and_new_ones_added(backend, tmp_path):
    async with temporary_database(backend, tmp_path) as url:
        await asyncio.to_thread(upgrade, url, "0007")
        engine = create_async_engine(url)
        user = uuid.uuid4()
        try:
            async with engine.begin() as connection:
                await connection.execute(
                    insert(User),
                    [{"id": user, "email": "a@example.com", "username": "ana",
                      "username_key": "ana", "password_hash": "x"}],
                )  # fmt: skip
                await connection.execute(
                    insert(Usage),
                    [
                        _row(user, "2026-03-01", "a", "0.1"),
                        _row(user, "2026-03-01", "a", "0.2"),
                        _row(None, "2026-03-01", "b", "0.3"),
                        _row(user, "2026-03-02", "a", "0.000000001"),
                    ],
                )
            await asyncio.to_thread(upgrade, url)
            models, users = await _rollups(engine)
            assert models == [
                ("2026-03-01", "a", 2, 20, Decimal("0.3")),
                ("2026-03-01", "b", 1, 10, Decimal("0.3")),
                ("2026-03-02", "a", 1, 10, Decimal("0.000000001")),
            ]
            assert users == [
                ("2026-03-01", None, 1),
                ("2026-03-01", user, 2),
                ("2026-03-02", user, 1),
            ]
            async with engine.begin() as connection:  # the trigger adds new rows
                await connection.execute(insert(Usage), [_row(user, "2026-03-02", "a", "1")])
            models, users = await _rollups(engine)
            assert models[-1] == ("2026-03-02", "a", 2, 20, Decimal("1.000000001"))
            assert users[-1] == ("2026-03-02", user, 2)
            await asyncio.to_thread(downgrade, url, "0007")
            async with engine.begin() as connection:  # no trigger is left behind
                await connection.execute(insert(Usage), [_row(user, "2026-03-03", "a", "1")])
        finally:
            await engine.dispose()
