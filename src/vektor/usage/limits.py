"""Whose limits apply: a user's are an admin's values over the DEFAULT_* settings; an API
key's are its own, given at creation. Read from the database and kept in this process for
`LIMITS_TTL_S` (a key's, which never change, until the process ends or the book is full),
so an answer costs no query for them; a change made here is seen here at once."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vektor.core.database import session_scope
from vektor.usage.hot_repository import QuotaHotRepository
from vektor.usage.repository import QuotaRepository

LIMITS_TTL_S = 5.0  # how soon another instance sees a user's limits changed
MAX_ENTRIES = 100_000  # past this the book is emptied and read again


@dataclass(frozen=True, slots=True)
class Limits:
    """A user's (or an API key's) limits; None is unlimited."""

    tokens_per_day: int | None = None
    requests_per_day: int | None = None
    budget_per_month: Decimal | None = None

    @property
    def unlimited(self) -> bool:
        """No limit is set."""
        return (self.tokens_per_day, self.requests_per_day, self.budget_per_month) == (
            None,
            None,
            None,
        )


class LimitBook:
    """Users' and API keys' limits, read once per `LIMITS_TTL_S`."""

    def __init__(
        self,
        defaults: Limits,
        sessionmaker: async_sessionmaker[AsyncSession],
        users: QuotaHotRepository,
        ttl_s: float = LIMITS_TTL_S,
    ) -> None:
        self.defaults = defaults
        self.sessionmaker = sessionmaker
        self.users = users
        self.ttl_s = ttl_s
        self._users: dict[uuid.UUID, tuple[float, Limits]] = {}
        self._keys: dict[uuid.UUID, Limits] = {}

    async def for_user(self, user_id: uuid.UUID) -> Limits:
        """The user's limits: an admin's values, the defaults for the rest."""
        now = time.monotonic()
        found = self._users.get(user_id)
        if found is not None and found[0] > now:
            return found[1]
        row = await self.users.user_limits(user_id)
        limits = self.defaults
        if row is not None:
            tokens, requests, budget = row
            limits = Limits(
                tokens_per_day=limits.tokens_per_day if tokens is None else tokens,
                requests_per_day=limits.requests_per_day if requests is None else requests,
                budget_per_month=limits.budget_per_month if budget is None else budget,
            )
        if len(self._users) >= MAX_ENTRIES:
            self._users.clear()
        self._users[user_id] = (now + self.ttl_s, limits)
        return limits

    async def for_key(self, key_id: uuid.UUID) -> Limits:
        """The key's own limits (unlimited when it was created without any)."""
        found = self._keys.get(key_id)
        if found is not None:
            return found
        async for session in session_scope(self.sessionmaker):
            row = await QuotaRepository(session).get_key(key_id)
        limits = Limits()
        if row is not None:
            limits = Limits(
                tokens_per_day=row.tokens_per_day, budget_per_month=row.budget_per_month
            )
        if len(self._keys) >= MAX_ENTRIES:
            self._keys.clear()
        self._keys[key_id] = limits
        return limits

    def known_unlimited(self, user_id: uuid.UUID, key_id: uuid.UUID | None) -> tuple[bool, bool]:
        """Whether the user's and the key's limits, as last read (expired or not), were
        unlimited; never a query, so counting a finished answer cannot fail on the database
        (unknown counts as limited: advancing counters that do not exist does nothing)."""
        user = self._users.get(user_id)
        key = None if key_id is None else self._keys.get(key_id)
        return (
            user is not None and user[1].unlimited,
            key_id is None or (key is not None and key.unlimited),
        )

    def forget_user(self, user_id: uuid.UUID) -> None:
        """Read the user's limits again at the next answer (an admin changed them)."""
        self._users.pop(user_id, None)
