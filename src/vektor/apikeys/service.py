"""Creating, listing, revoking and checking API keys."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from vektor.apikeys.models import ApiKey
from vektor.core.errors import Conflict, NotFound
from vektor.core.security import hash_token
from vektor.users.models import User

KEY_PREFIX = "vk-"
PREFIX_LENGTH = 11  # "vk-" and 8 characters: enough to tell keys apart, useless to guess
MAX_KEYS_PER_USER = 50
# Use is written at most this often per key, not on every request.
TOUCH_INTERVAL = timedelta(seconds=60)


def looks_like_api_key(token: str) -> bool:
    """Whether a bearer token is an API key (else it is an access token)."""
    return token.startswith(KEY_PREFIX)


async def create_key(
    session: AsyncSession, user_id: uuid.UUID, name: str, expires_at: datetime | None
) -> tuple[ApiKey, str]:
    """A new key; the clear key is returned once and stored only as a hash."""
    count = len(await list_keys(session, user_id))
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
    session.add(record)
    await session.commit()
    return record, key


async def list_keys(session: AsyncSession, user_id: uuid.UUID) -> Sequence[ApiKey]:
    """The user's keys, newest first."""
    rows = await session.scalars(
        select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.created_at.desc())
    )
    return rows.all()


async def revoke_key(session: AsyncSession, user_id: uuid.UUID, key_id: uuid.UUID) -> None:
    """Delete the key (someone else's key is a 404)."""
    result = await session.execute(
        delete(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user_id)
    )
    if getattr(result, "rowcount", 0) != 1:
        raise NotFound("API key not found")
    await session.commit()


async def user_for_key(session: AsyncSession, key: str) -> User | None:
    """The user owning a live (unexpired) key, or None; records the key's use."""
    row = (
        await session.execute(
            select(ApiKey, User)
            .join(User, User.id == ApiKey.user_id)
            .where(ApiKey.key_hash == hash_token(key))
        )
    ).first()
    if row is None:
        return None
    api_key, user = row
    now = datetime.now(UTC)
    if api_key.expires_at is not None and api_key.expires_at <= now:
        return None
    if api_key.last_used_at is None or now - api_key.last_used_at >= TOUCH_INTERVAL:
        await session.execute(
            update(ApiKey).where(ApiKey.id == api_key.id).values(last_used_at=now)
        )
    return user
