"""The page of accounts an admin asks for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query


@dataclass(frozen=True, slots=True)
class Page:
    """Which accounts to list."""

    limit: int
    offset: int
    query: str | None


async def user_page(
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    q: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=320,
            pattern=r"^[^\x00-\x1f\x7f]+$",  # no control characters (PostgreSQL refuses NUL)
            description="Part of an email or username",
        ),
    ] = None,
) -> Page:
    """`limit` (1 to 500), `offset` and `q`, checked."""
    return Page(limit=limit, offset=offset, query=q)


UserPage = Annotated[Page, Depends(user_page)]
