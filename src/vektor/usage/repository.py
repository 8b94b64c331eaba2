"""Queries of the usage domain (the ORM); the row every answer writes is in
`hot_repository.py`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from vektor.auth.models import User
from vektor.usage.models import ApiKeyQuota, Usage, UsageDayModel, UsageDayUser, UserQuota

Aggregate = tuple[str | None, int, int, int, Decimal]
# Whose rows: ("user", user id) or ("key", API key id).
Owner = tuple[Literal["user", "key"], uuid.UUID]


def _owned(owner: Owner) -> ColumnElement[bool]:
    kind, owner_id = owner
    column = Usage.user_id if kind == "user" else Usage.api_key_id
    return column == owner_id


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
        self, *, owner: Owner, start: datetime, end: datetime
    ) -> tuple[int, int]:
        """The user's (or API key's) tokens and answers in [start, end); cached answers'
        tokens are not counted (they count against the requests quota only)."""
        tokens = case(
            (Usage.cached.is_(False), Usage.prompt_tokens + Usage.completion_tokens), else_=0
        )
        query = select(
            func.coalesce(func.sum(tokens), 0),
            func.count(),
        ).where(_owned(owner), Usage.created_at >= start, Usage.created_at < end)
        tokens, requests = (await self.session.execute(query)).one()
        return int(tokens), int(requests)

    async def cost(self, *, owner: Owner, start: datetime, end: datetime) -> Decimal:
        """What the user's (or API key's) answers in [start, end) cost."""
        query = select(func.sum(Usage.cost)).where(
            _owned(owner), Usage.created_at >= start, Usage.created_at < end
        )
        total = await self.session.scalar(query)
        return total if total is not None else Decimal(0)

    async def totals_by_user(
        self, user_ids: Sequence[uuid.UUID], *, start: datetime, end: datetime
    ) -> dict[uuid.UUID, tuple[int, int, Decimal]]:
        """(requests, tokens, cost) of each of these users in [start, end); absent: none."""
        if not user_ids:
            return {}
        query = (
            select(
                Usage.user_id,
                func.count(),
                func.sum(Usage.prompt_tokens + Usage.completion_tokens),
                func.sum(Usage.cost),
            )
            .where(Usage.user_id.in_(user_ids), Usage.created_at >= start, Usage.created_at < end)
            .group_by(Usage.user_id)
        )
        rows = (await self.session.execute(query)).all()
        return {
            user_id: (n, int(tokens or 0), cost or Decimal(0))
            for user_id, n, tokens, cost in rows
            if user_id is not None
        }


class QuotaRepository:
    """An admin's limits per user and the API keys' own."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_user(self, user_id: uuid.UUID) -> UserQuota | None:
        """The admin's limits for the user, if any was set."""
        return await self.session.get(UserQuota, user_id)

    async def users(self, user_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, UserQuota]:
        """The limits set for any of these users."""
        if not user_ids:
            return {}
        rows = await self.session.scalars(select(UserQuota).where(UserQuota.user_id.in_(user_ids)))
        return {row.user_id: row for row in rows.all()}

    async def save_user(self, quota: UserQuota) -> None:
        """Insert or keep the user's row (changed by the caller)."""
        self.session.add(quota)
        await self.session.flush()

    async def get_key(self, key_id: uuid.UUID) -> ApiKeyQuota | None:
        """The key's own limits, if it was created with any."""
        return await self.session.get(ApiKeyQuota, key_id)

    async def keys(self, key_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, ApiKeyQuota]:
        """The own limits of any of these keys."""
        if not key_ids:
            return {}
        rows = await self.session.scalars(
            select(ApiKeyQuota).where(ApiKeyQuota.api_key_id.in_(key_ids))
        )
        return {row.api_key_id: row for row in rows.all()}

    async def add_key(self, quota: ApiKeyQuota) -> None:
        """Insert a key's limits."""
        self.session.add(quota)
        await self.session.flush()
