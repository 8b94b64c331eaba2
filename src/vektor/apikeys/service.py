"""Creating, listing and revoking API keys; committed at the request boundary."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from vektor.apikeys.models import ApiKey
from vektor.apikeys.repository import ApiKeyRepository
from vektor.core.errors import Conflict, NotFound
from vektor.core.security import hash_token

KEY_PREFIX = "vk-"
PREFIX_LENGTH = 11  # "vk-" and 8 characters: enough to tell keys apart, useless to guess
MAX_KEYS_PER_USER = 50


def looks_like_api_key(token: str) -> bool:
    """Whether a bearer token is an API key (else it is an access token)."""
    return token.startswith(KEY_PREFIX)


async def create_key(
    session: AsyncSession, user_id: uuid.UUID, name: str, expires_at: datetime | None
) -> tuple[ApiKey, str]:
    """A new key; the clear key is returned once and stored only as a hash."""
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
    return record, key


async def list_keys(session: AsyncSession, user_id: uuid.UUID) -> Sequence[ApiKey]:
    """The user's keys, newest first."""
    return await ApiKeyRepository(session).list_for_user(user_id)


async def revoke_key(session: AsyncSession, user_id: uuid.UUID, key_id: uuid.UUID) -> None:
    """Delete the key (someone else's key is a 404)."""
    if not await ApiKeyRepository(session).delete_owned(user_id, key_id):
        raise NotFound("API key not found")
