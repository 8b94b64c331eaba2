"""Open WebSockets closed when the credential they signed in with dies.

A socket signs in once, with its first frame; an HTTP request is checked on every call.
Every revocation (logout, refresh-token reuse, password change, device removal, account
deletion, an API key deleted or expired) ends as a row the session and key checks read,
whichever instance or code path wrote it. So one task per process asks the database,
every `WS_REVOCATION_CHECK_SECONDS`, which of its sockets' sessions and keys are still
live: one indexed statement for all of them, whatever their number, that sees every
instance's revocations without a message having to reach each of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from loguru import logger

if TYPE_CHECKING:
    from vektor.apikeys.hot_repository import ApiKeyHotRepository
    from vektor.auth.hot_repository import SessionHotRepository


@dataclass(frozen=True, slots=True)
class Credential:
    """Who signed a socket in: a login session's access token, or an API key (its hash)."""

    user_id: uuid.UUID
    session_id: uuid.UUID | None = None
    key_hash: str | None = None
    key_id: uuid.UUID | None = None


@dataclass(eq=False, slots=True)
class Watched:
    """One open socket: its credential, and what closes it."""

    credential: Credential
    on_revoked: Callable[[], object]


class SocketWatch:
    """The open sockets of this process, checked against the database while there are any."""

    def __init__(
        self, sessions: SessionHotRepository, keys: ApiKeyHotRepository, interval_s: float
    ) -> None:
        self.sessions = sessions
        self.keys = keys
        self.interval_s = interval_s
        self._watched: set[Watched] = set()
        self._task: asyncio.Task[None] | None = None

    def watch(self, credential: Credential, on_revoked: Callable[[], object]) -> Watched:
        """Call `on_revoked` (once) when the credential stops being valid."""
        watched = Watched(credential, on_revoked)
        self._watched.add(watched)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="socket-watch")
        return watched

    def unwatch(self, watched: Watched) -> None:
        """The socket has closed."""
        self._watched.discard(watched)

    def open_sockets(self) -> int:
        """Sockets signed in on this process."""
        return len(self._watched)

    async def _run(self) -> None:
        try:
            while self._watched:
                await asyncio.sleep(self.interval_s)
                try:
                    await self.check()
                except Exception as exc:  # the database is down: sockets stay open meanwhile
                    logger.warning("websocket revocation check failed: {}", type(exc).__name__)
        finally:
            self._task = None

    async def check(self) -> None:
        """Close the sockets whose session or key is no longer live."""
        watched = list(self._watched)
        credentials = [w.credential for w in watched]
        sessions = list({c.session_id for c in credentials if c.session_id is not None})
        keys = list({c.key_hash for c in credentials if c.key_hash is not None})
        live_sessions = await self.sessions.live_among(sessions)
        live_keys = await self.keys.live_among(keys, datetime.now(UTC))
        for item in watched:
            session_id, key_hash = item.credential.session_id, item.credential.key_hash
            dead_session = session_id is not None and session_id not in live_sessions
            dead_key = key_hash is not None and key_hash not in live_keys
            if (dead_session or dead_key) and item in self._watched:
                self._watched.discard(item)
                item.on_revoked()

    async def aclose(self) -> None:
        """Stop checking."""
        self._watched.clear()
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
