"""Password hashing and tokens: no I/O, no framework (verified access tokens are remembered).

bcrypt is slow on purpose; the `_async` forms run it in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import bcrypt
import jwt

BCRYPT_MAX_BYTES = 72
JWT_ALGORITHM = "HS256"
ACCESS_TOKEN_TYPE = "access"  # noqa: S105 - a token type, not a secret
REFRESH_TOKEN_PREFIX = "vkr_"  # noqa: S105 - a visible prefix, not a secret
REQUIRED_CLAIMS = ["exp", "iat", "nbf", "sub", "sid", "jti", "iss", "aud", "typ"]
LEEWAY_S = 5
# Tokens already verified, with what they said: a client sends the same access token with
# every request of its lifetime, and checking the signature and claims again each time costs
# more than the rest of the authentication. Only the expiry can change its answer.
VERIFIED_CAPACITY = 4096
_verified: dict[tuple[str, str, str, str], AccessClaims] = {}


class TokenError(ValueError):
    """The token is not a valid access token."""


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """What a verified access token says."""

    user_id: uuid.UUID
    session_id: uuid.UUID
    token_id: str
    expires_at: datetime


def password_fits(password: str) -> bool:
    """Whether bcrypt can hash the password without truncating it."""
    return len(password.encode("utf-8")) <= BCRYPT_MAX_BYTES


def hash_password(password: str, *, rounds: int) -> str:
    """Hash a password with bcrypt (blocking: call from a worker thread)."""
    if not password_fits(password):
        raise ValueError("password longer than 72 bytes")
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds)).decode("ascii")


def verify_password(password: str, password_hash: str) -> bool:
    """Check a password against its hash (blocking: call from a worker thread)."""
    if not password_fits(password):
        # Still spend the time of a check so the answer's timing says nothing.
        bcrypt.checkpw(b"x", password_hash.encode("ascii"))
        return False
    try:
        return bcrypt.checkpw(password.encode("utf-8"), password_hash.encode("ascii"))
    except ValueError:
        return False


async def hash_password_async(password: str, *, rounds: int) -> str:
    """bcrypt off the event loop."""
    return await asyncio.to_thread(hash_password, password, rounds=rounds)


async def verify_password_async(password: str, password_hash: str) -> bool:
    """bcrypt check off the event loop."""
    return await asyncio.to_thread(verify_password, password, password_hash)


@lru_cache(maxsize=4)
def dummy_hash(rounds: int) -> str:
    """A hash to verify against when the account does not exist (same cost as a real one)."""
    return hash_password(secrets.token_urlsafe(16), rounds=rounds)


def create_access_token(
    *,
    secret_key: str,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    lifetime: timedelta,
    issuer: str,
    audience: str,
    now: datetime | None = None,
) -> str:
    """Sign an access token bound to one login session."""
    issued = now or datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "sid": str(session_id),
        "jti": uuid.uuid4().hex,
        "typ": ACCESS_TOKEN_TYPE,
        "iss": issuer,
        "aud": audience,
        "iat": issued,
        "nbf": issued,
        "exp": issued + lifetime,
    }
    return jwt.encode(claims, secret_key, algorithm=JWT_ALGORITHM)


def decode_access_token(token: str, *, secret_key: str, issuer: str, audience: str) -> AccessClaims:
    """Verify signature, algorithm, lifetime and claims; raise TokenError otherwise."""
    key = (token, secret_key, issuer, audience)
    claims = _verified.get(key)
    if claims is not None:
        if time.time() >= claims.expires_at.timestamp() + LEEWAY_S:
            raise TokenError("Signature has expired")
        return claims
    claims = _verify(token, secret_key=secret_key, issuer=issuer, audience=audience)
    if len(_verified) >= VERIFIED_CAPACITY:
        del _verified[next(iter(_verified))]  # the oldest
    _verified[key] = claims
    return claims


def _verify(token: str, *, secret_key: str, issuer: str, audience: str) -> AccessClaims:
    try:
        payload = jwt.decode(
            token,
            secret_key,
            algorithms=[JWT_ALGORITHM],
            issuer=issuer,
            audience=audience,
            options={"require": REQUIRED_CLAIMS},
            leeway=LEEWAY_S,
        )
        if payload["typ"] != ACCESS_TOKEN_TYPE:
            raise TokenError("not an access token")
        return AccessClaims(
            user_id=uuid.UUID(str(payload["sub"])),
            session_id=uuid.UUID(str(payload["sid"])),
            token_id=str(payload["jti"]),
            expires_at=datetime.fromtimestamp(int(payload["exp"]), UTC),
        )
    except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
        raise TokenError(str(exc)) from exc


def new_refresh_token() -> str:
    """An opaque refresh token (only its hash is stored)."""
    return REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The stored form of an opaque token (SHA-256; the token has 256 bits of entropy)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def tokens_equal(a: str, b: str) -> bool:
    """Constant-time comparison."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
