"""API key requests and answers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from vektor.usage.schemas import BudgetLimit, TokensLimit


def _future(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if value <= datetime.now(UTC):
        raise ValueError("expires_at must be in the future")
    return value


class ApiKeyCreate(BaseModel):
    """A new key: a name to recognise it by, an optional expiry, and optional limits of its
    own, checked as well as its owner's."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    expires_at: Annotated[datetime | None, AfterValidator(_future)] = None
    tokens_per_day: TokensLimit | None = None
    budget_per_month: BudgetLimit | None = Field(default=None, description="USD")


class ApiKeyRead(BaseModel):
    """A key as listed: never the key itself."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    tokens_per_day: int | None = None
    budget_per_month: BudgetLimit | None = Field(default=None, description="USD")


class ApiKeyCreated(BaseModel):
    """The answer to creating a key: the only time the key is shown."""

    id: uuid.UUID
    name: str
    key: Annotated[str, Field(description="The key; it is shown only this once")]
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    tokens_per_day: int | None = None
    budget_per_month: BudgetLimit | None = Field(default=None, description="USD")
