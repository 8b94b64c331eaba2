"""Queries of the usage domain (the ORM); the row every answer writes is in
`hot_repository.py`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from vektor.usage.models import Usage

Aggregate = tuple[str | None, int, int, int, Decimal]


def _day(dialect: str) -> ColumnElement[Any]:
    """The row's UTC day as `YYYY-MM-DD`: SQLite stores UTC text, PostgreSQL a timestamptz."""
    if dialect == "sqlite":
        return func.substr(Usage.created_at, 1, 10)
    return func.to_char(func.timezone("UTC", Usage.created_at), "YYYY-MM-DD")


class UsageRepository:
    """Aggregates of usage rows."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def aggregate(
        self, *, user_id: uuid.UUID, start: datetime, end: datetime, group_by: str
    ) -> Sequence[Aggregate]:
        """(key, requests, prompt tokens, completion tokens, cost) per group of the user's
        rows created in [start, end); by the (user_id, created_at) index."""
        if group_by == "day":
            key: ColumnElement[Any] = _day(self.session.get_bind().dialect.name)
        elif group_by == "model":
            key = Usage.model.expression
        else:
            key = Usage.api_key_id.expression
        query = (
            select(
                key,
                func.count(),
                func.sum(Usage.prompt_tokens),
                func.sum(Usage.completion_tokens),
                func.sum(Usage.cost),
            )
            .where(Usage.user_id == user_id, Usage.created_at >= start, Usage.created_at < end)
            .group_by(key)
            .order_by(key)
        )
        rows = await self.session.execute(query)
        return [
            (None if k is None else str(k), n, int(p or 0), int(c or 0), cost or Decimal(0))
            for k, n, p, c, cost in rows.all()
        ]

    async def tokens_and_requests(
        self, *, user_id: uuid.UUID, start: datetime, end: datetime
    ) -> tuple[int, int]:
        """The user's tokens and answers in [start, end); cached answers' tokens are not
        counted (they count against the requests quota only)."""
        tokens = case(
            (Usage.cached.is_(False), Usage.prompt_tokens + Usage.completion_tokens), else_=0
        )
        query = select(
            func.coalesce(func.sum(tokens), 0),
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
