"""Reading usage rows back in tests."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import select

from vektor.usage.models import Usage


async def usage_rows(app: FastAPI) -> list[Usage]:
    """Every usage row, oldest first."""
    async with app.state.vektor.sessionmaker() as session:
        rows = await session.scalars(select(Usage).order_by(Usage.created_at))
        return list(rows.all())
