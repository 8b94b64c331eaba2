"""Accounts as admins see and change them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from vektor.usage.schemas import BudgetLimit, Cost, RequestsLimit, TokensLimit

PoolName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]


class QuotaValues(BaseModel):
    """A user's own limits; null is the DEFAULT_* setting."""

    model_config = ConfigDict(extra="forbid")

    tokens_per_day: TokensLimit | None = None
    requests_per_day: RequestsLimit | None = None
    budget_per_month: BudgetLimit | None = Field(default=None, description="USD")


class UsageMonth(BaseModel):
    """What the user's answers took in the current UTC month."""

    requests: int
    tokens: int
    cost: Cost = Field(description="USD, a decimal string to the nano-dollar")


class AdminUserRead(BaseModel):
    """An account as listed for admins."""

    id: uuid.UUID
    email: str
    username: str
    is_admin: bool
    disabled: bool
    created_at: datetime
    last_seen: datetime | None = Field(description="Latest activity of any of its sessions")
    quota: QuotaValues = Field(description="The limits set for it; null: the default")
    mcp_pools: list[str] | None = Field(description="MCP pools it may use; null: every pool")
    usage_month: UsageMonth


class AdminUserUpdate(BaseModel):
    """Any of these; a field left out is unchanged, a null one goes back to its default
    (not an admin, enabled, the default quotas, every MCP pool). Within `quota`, only the
    limits given change."""

    model_config = ConfigDict(extra="forbid")

    is_admin: StrictBool | None = None
    disabled: StrictBool | None = None
    quota: QuotaValues | None = None
    mcp_pools: Annotated[list[PoolName], Field(max_length=100)] | None = None
