"""The usage table: one row per answer, kept when its user is deleted."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, Numeric, String, Uuid
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

from vektor.core.database import Base, UTCDateTime, new_id, utcnow
from vektor.usage.pricing import from_nanos, to_nanos


class Money(TypeDecorator[Decimal]):
    """USD to the nano-dollar: NUMERIC(20, 9) on PostgreSQL; on SQLite, whose NUMERIC is a
    float, an integer count of nano-dollars, which SUM adds exactly."""

    impl = Numeric(20, 9)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """BIGINT nano-dollars on SQLite, NUMERIC elsewhere."""
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(20, 9))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> object:
        """Nano-dollars on SQLite."""
        if value is None or dialect.name != "sqlite":
            return value
        return to_nanos(Decimal(value))

    def process_result_value(self, value: object, dialect: Dialect) -> Decimal | None:
        """Always a Decimal."""
        if value is None:
            return None
        if dialect.name == "sqlite":
            return from_nanos(int(value))  # type: ignore[call-overload]
        return Decimal(str(value))


class Usage(Base):
    """What one answer consumed. `user_id` becomes NULL when the account is deleted, so
    the totals keep it; `api_key_id` is no foreign key, so a deleted key's rows still
    group under its id."""

    __tablename__ = "usage"
    __table_args__ = (
        Index("ix_usage_user_id_created_at", "user_id", "created_at"),
        Index("ix_usage_api_key_id_created_at", "api_key_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("user.id", ondelete="SET NULL"), default=None
    )
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    model: Mapped[str] = mapped_column(String(128))
    deployment: Mapped[str] = mapped_column(String(160))
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    cost: Mapped[Decimal] = mapped_column(Money)
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(8))
    finish_reason: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UserQuota(Base):
    """An admin's limits for one user; a NULL column is the DEFAULT_* setting."""

    __tablename__ = "user_quota"

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("user.id", ondelete="CASCADE"), primary_key=True
    )
    tokens_per_day: Mapped[int | None] = mapped_column(BigInteger, default=None)
    requests_per_day: Mapped[int | None] = mapped_column(BigInteger, default=None)
    budget_per_month: Mapped[Decimal | None] = mapped_column(Money, default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ApiKeyQuota(Base):
    """Limits an API key was created with, checked as well as its owner's; NULL is none."""

    __tablename__ = "api_key_quota"

    api_key_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("api_key.id", ondelete="CASCADE"), primary_key=True
    )
    tokens_per_day: Mapped[int | None] = mapped_column(BigInteger, default=None)
    budget_per_month: Mapped[Decimal | None] = mapped_column(Money, default=None)


class UsageDayModel(Base):
    """Every user's usage per UTC day (`YYYY-MM-DD`) and public model, kept by a trigger
    on `usage` inserts (migration 0009): the admin report reads days × models, not rows."""

    __tablename__ = "usage_day_model"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    cost: Mapped[Decimal] = mapped_column(Money)


class UsageDayUser(Base):
    """Usage per UTC day and user, kept by the same trigger. A deleted account's rows turn
    to user NULL like its usage rows; the report sums them into one group."""

    __tablename__ = "usage_day_user"
    __table_args__ = (
        Index("ux_usage_day_user_day_user_id", "day", "user_id", unique=True),
        Index("ix_usage_day_user_user_id", "user_id"),  # ON DELETE SET NULL finds them
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    day: Mapped[str] = mapped_column(String(10))
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("user.id", ondelete="SET NULL"), default=None
    )
    requests: Mapped[int] = mapped_column(BigInteger)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    cost: Mapped[Decimal] = mapped_column(Money)
