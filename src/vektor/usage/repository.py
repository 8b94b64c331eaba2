"""Queries of the usage domain (the ORM); the row every answer writes is in
`hot_repository.py`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from vektor.auth.models import User
from vektor.usage.models import Usage, UsageDayModel, UsageDayUser

Aggregate = tuple[str | None, int, int, int, Decimal]


def _day(dialect: str) -> ColumnElement[Any]:
    """The row's UTC day as `YYYY-MM-DD`: SQLite stores UTC text, PostgreSQL a timestamptz."""
    if dialect == "sqlite":
        return func.substr(Usage.created_at, 1, 10)
    return func.to_char(func.timezone("UTC", Usage.created_at), "YYYY-MM-DD")


def _sums(*columns: Any) -> tuple[ColumnElement[Any], ...]:
    return tuple(func.sum(column) for column in columns)


class UsageRepository:
    """Aggregates of usage rows."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def aggregate(
        self, *, user_id: uuid.UUID, start: datetime, end: datetime, group_by: str
    ) -> Sequence[Aggregate]:
        """(key, requests, prompt tokens, completion tokens, cost) per group of the user's
        rows created in [start, end), by day, model or API key; by the (user_id,
        created_at) index."""
        if group_by == "day":
            key: ColumnElement[Any] = _day(self.session.get_bind().dialect.name)
        elif group_by == "model":
            key = Usage.model.expression
        else:
            key = Usage.api_key_id.expression
        sums = (func.count(), *_sums(Usage.prompt_tokens, Usage.completion_tokens, Usage.cost))
        query = select(key, *sums).where(
            Usage.user_id == user_id, Usage.created_at >= start, Usage.created_at < end
        )
        return await self._groups(query, key)

    async def aggregate_all(self, *, first: str, last: str, group_by: str) -> Sequence[Aggregate]:
        """The same over every user's rows, from UTC day `first` to `last` (inclusive,
        `YYYY-MM-DD`), by day, model or user (NULL: deleted accounts): read from the
        per-day rollups, so the cost is days × models or days × users, not rows."""
        table: type[UsageDayModel] | type[UsageDayUser] = UsageDayModel
        if group_by == "day":
            key: ColumnElement[Any] = UsageDayModel.day.expression
        elif group_by == "model":
            key = UsageDayModel.model.expression
        else:
            table, key = UsageDayUser, UsageDayUser.user_id.expression
        sums = _sums(table.requests, table.prompt_tokens, table.completion_tokens, table.cost)
        query = select(key, *sums).where(table.day >= first, table.day <= last)
        return await self._groups(query, key)

    async def tokens_by_day_and_model(
        self, *, first: str, last: str
    ) -> Sequence[tuple[str, str, int]]:
        """(day, model, tokens) of every user, from UTC day `first` to `last` inclusive."""
        tokens = func.sum(UsageDayModel.prompt_tokens + UsageDayModel.completion_tokens)
        query = (
            select(UsageDayModel.day, UsageDayModel.model, tokens)
            .where(UsageDayModel.day >= first, UsageDayModel.day <= last)
            .group_by(UsageDayModel.day, UsageDayModel.model)
            .order_by(UsageDayModel.day, UsageDayModel.model)
        )
        return [(day, model, int(n or 0)) for day, model, n in await self.session.execute(query)]

    async def top_spenders(
        self, *, first: str, last: str, limit: int
    ) -> Sequence[tuple[str | None, str | None, Aggregate]]:
        """The `limit` users who spent most from `first` to `last` (UTC days, inclusive),
        most first: (user id, username, their sums); deleted accounts as one NULL user."""
        cost = func.sum(UsageDayUser.cost)
        query = (
            select(
                UsageDayUser.user_id,
                func.min(User.username),
                *_sums(
                    UsageDayUser.requests,
                    UsageDayUser.prompt_tokens,
                    UsageDayUser.completion_tokens,
                ),
                cost,
            )
            .outerjoin(User, User.id == UsageDayUser.user_id)
            .where(UsageDayUser.day >= first, UsageDayUser.day <= last)
            .group_by(UsageDayUser.user_id)
            .order_by(cost.desc(), UsageDayUser.user_id)
            .limit(limit)
        )
        return [
            (
                None if key is None else str(key),
                name,
                (None, int(n), int(p or 0), int(c or 0), total or Decimal(0)),
            )
            for key, name, n, p, c, total in await self.session.execute(query)
        ]

    async def _groups(self, query: Select[Any], key: ColumnElement[Any]) -> list[Aggregate]:
        rows = await self.session.execute(query.group_by(key).order_by(key))
        return [
            (None if k is None else str(k), int(n), int(p or 0), int(c or 0), cost or Decimal(0))
            for k, n, p, c, cost in rows.all()
        ]

    async def tokens_and_requests(
        self, *, user_id: uuid.UUID, start: datetime, end: datetime
    ) -> tuple[int, int]:
        """The user's tokens and answers in [start, end)."""
        query = select(
            func.coalesce(func.sum(Usage.prompt_tokens + Usage.completion_tokens), 0),
            func.count(),
        ).where(Usage.user_id == user_id, Usage.created_at >= start, Usage.created_at < end)
        tokens, requests = (await self.session.execute(query)).one()
        return int(tokens), int(requests)

    async def cost(self, *, user_id: uuid.UUID, start: datetime, end: datetime) -> Decimal:
        """What the user's answers in [start, end) cost."""
        query = select(func.sum(Usage.cost)).where(
            Usage.user_id == user_id, Usage.created_at >= start, Usage.created_at < end
        )
        total = await self.session.scalar(query)
        return total if total is not None else Decimal(0)
