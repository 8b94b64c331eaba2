"""The response cache's entries and their store in this process.

An entry is what the upstream sent for one answer: its text in the pieces it came in (a
hit replays them one by one, as the original streamed), its token counts, finish reason
and deployment. Entries are kept as compressed bytes (zlib over JSON), the same in memory
and on Redis (`redis_cache.py`), so the memory store's byte bound is exact.
"""

from __future__ import annotations

import time
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import orjson

from vektor.llm.base import Finish, ProviderEvent, TextDelta, Usage

COMPRESSION_LEVEL = 6


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """One answer as the upstream streamed it."""

    pieces: tuple[str, ...]
    finish_reason: str
    deployment: str
    prompt_tokens: int | None = None  # None: the upstream reported no counts
    completion_tokens: int | None = None

    def encode(self) -> bytes:
        """Compressed JSON."""
        data = {
            "p": list(self.pieces),
            "f": self.finish_reason,
            "d": self.deployment,
            "u": None
            if self.prompt_tokens is None
            else [self.prompt_tokens, self.completion_tokens],
        }
        return zlib.compress(orjson.dumps(data), COMPRESSION_LEVEL)

    @classmethod
    def decode(cls, raw: bytes) -> CachedAnswer | None:
        """The entry, or None when the bytes are not one (another version's, damaged)."""
        try:
            data = orjson.loads(zlib.decompress(raw))
            usage = data["u"]
            return cls(
                pieces=tuple(str(p) for p in data["p"]),
                finish_reason=str(data["f"]),
                deployment=str(data["d"]),
                prompt_tokens=None if usage is None else int(usage[0]),
                completion_tokens=None if usage is None else int(usage[1]),
            )
        except (zlib.error, orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError):
            return None

    async def replay(self) -> AsyncIterator[ProviderEvent]:
        """The upstream's events again: each piece, the counts, the finish."""
        for piece in self.pieces:
            yield TextDelta(piece)
        if self.prompt_tokens is not None and self.completion_tokens is not None:
            yield Usage(self.prompt_tokens, self.completion_tokens)
        yield Finish(self.finish_reason)


class ResponseStore(Protocol):
    """Where entries are kept: this process's memory, or Redis."""

    async def get(self, key: str) -> bytes | None:
        """The entry's bytes, or None (absent, expired, or the store unreachable)."""
        ...

    async def put(self, key: str, value: bytes, ttl_s: int) -> None:
        """Keep an entry for `ttl_s` seconds (a store that cannot be reached drops it)."""
        ...

    async def clear(self) -> int:
        """Remove every entry; how many there were."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class MemoryResponseStore:
    """An LRU of entries, bounded by their number and their bytes, each with its TTL."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        """The entry, now the most recently used; None when absent or expired."""
        found = self._entries.get(key)
        if found is None:
            return None
        expires, value = found
        if time.monotonic() >= expires:
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return value

    async def put(self, key: str, value: bytes, ttl_s: int) -> None:
        """Keep the entry; the least recently used go while a bound is exceeded. An entry
        larger than the whole byte bound is not kept."""
        if len(value) > self.max_bytes or ttl_s <= 0:
            return
        if key in self._entries:
            self._remove(key)
        self._entries[key] = (time.monotonic() + ttl_s, value)
        self.bytes += len(value)
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._remove(oldest)

    async def clear(self) -> int:
        """Forget every entry."""
        count = len(self._entries)
        self._entries.clear()
        self.bytes = 0
        return count

    async def aclose(self) -> None:
        """Nothing to release."""

    def _remove(self, key: str) -> None:
        _, value = self._entries.pop(key)
        self.bytes -= len(value)
