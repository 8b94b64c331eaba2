"""Creating, listing and revoking API keys; committed at the request boundary."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from vektor.apikeys.models import ApiKey
from vektor.apikeys.repository import ApiKeyRepository
from vektor.core.errors import Conflict, NotFound
from vektor.core.security import hash_token
from vektor.usage.models import ApiKeyQuota
from vektor.usage.repository import QuotaRepository

KEY_PREFIX = "vk-"
PREFIX_LENGTH = 11  # "vk-" and 8 characters: enough to tell keys apart, useless to guess
MAX_KEYS_PER_USER = 50


@dataclass(frozen=True, slots=True)
class KeyWithLimits:
    """A key and the limits of its own (None: none)."""

    key: ApiKey
    tokens_per_day: int | None = None
    budget_per_month: Decimal | None = None


def looks_like_api_key(token: str) -> bool:
    """Whether a bearer token is an API key (else it is an access token)."""
    return token.startswith(KEY_PREFIX)


async def create_key(
    session: AsyncSession,
    user_id: uuid.UUID,
    name: str,
    expires_at: datetime | None,
    *,
    tokens_per_day: int | None = None,
    budget_per_month: Decimal | None = None,
) -> tuple[KeyWithLimits, str]:
    """A new key, with limits of its own if given; the clear key is returned once and
    stored only as a hash."""
    keys = ApiKeyRepository(session)
    count = len(await keys.list_for_user(user_id))
    if count >= MAX_KEYS_PER_USER:
        raise Conflict(f"At most {MAX_KEYS_PER_USER} API keys per account")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    record = ApiKey(
        user_id=user_id,
        name=name,
        prefix=key[:PREFIX_LENGTH],
        key_hash=hash_token(key),
        expires_at=expires_at,
    )
    await keys.add(record)
    if tokens_per_day is not None or budget_per_month is not None:
        await QuotaRepository(session).add_key(
            ApiKeyQuota(
                api_key_id=record.id,
                tokens_per_day=tokens_per_day,
                budget_per_month=budget_per_month,
            )
        )
    return KeyWithLimits(record, tokens_per_day, budget_per_month), key


async def list_keys(session: AsyncSession, user_id: uuid.UUID) -> list[KeyWithLimits]:
    """The user's keys with their limits, newest first."""
    keys = await ApiKeyRepository(session).list_for_user(user_id)
    limits = await QuotaRepository(session).keys([k.id for k in keys])
    listed = []
    for key in keys:
        quota = limits.get(key.id)
        if quota is None:
            listed.append(KeyWithLimits(key))
        else:
            listed.append(KeyWithLimits(key, quota.tokens_per_day, quota.budget_per_month))
    return listed


async def revoke_key(session: AsyncSession, user_id: uuid.UUID, key_id: uuid.UUID) -> None:
    """Delete the key (someone else's key is a 404)."""
    if not await ApiKeyRepository(session).delete_owned(user_id, key_id):
        raise NotFound("API key not found")
