"""The ids of a backup being restored, kept on disk so memory stays bounded.

A restore checks that no id appears twice in the file and that no id is the one another
id would be moved to, then remembers which conversations it wrote (for `replace`). A
file within the storage quota may hold millions of ids: a set of them would take
gigabytes, so they go to a private temporary SQLite file with a small page cache.

Blocking (sqlite3): callers run it in a worker thread, one call at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import uuid
from collections.abc import Iterator

_SCHEMA = """
PRAGMA cache_size = -8192;
PRAGMA journal_mode = OFF;
PRAGMA synchronous = OFF;
CREATE TABLE ids (id BLOB PRIMARY KEY, moved BLOB NOT NULL, conversation INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE TABLE written (id BLOB PRIMARY KEY) WITHOUT ROWID;
"""
PAGE = 5000


class DuplicateId(ValueError):
    """An id appears twice in the file."""


class BackupIndex:
    """Every id of one backup file, and the conversations a restore of it wrote."""

    def __init__(self) -> None:
        # "" opens a temporary database on disk, deleted when closed.
        self._db = sqlite3.connect("", check_same_thread=False, isolation_level=None)
        self._db.executescript(_SCHEMA)

    def add(self, conversation: uuid.UUID, messages: list[uuid.UUID], moved: MoveIds) -> None:
        """Record a conversation's ids with where each would move; DuplicateId if seen."""
        rows = [(conversation.bytes, moved.bytes(conversation), 1)]
        rows += [(m.bytes, moved.bytes(m), 0) for m in messages]
        try:
            with self._transaction():
                self._db.executemany("INSERT INTO ids VALUES (?, ?, ?)", rows)
        except sqlite3.IntegrityError as exc:
            raise DuplicateId("an id appears twice") from exc

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def has_collision(self) -> bool:
        """Whether an id of the file is where another of its ids would move."""
        row = self._db.execute(
            "SELECT 1 FROM ids a JOIN ids b ON b.id = a.moved WHERE a.id != b.id LIMIT 1"
        ).fetchone()
        return row is not None

    def conversations(self) -> Iterator[list[uuid.UUID]]:
        """The file's conversation ids, a page at a time."""
        after = b""
        while True:
            rows = self._db.execute(
                "SELECT id FROM ids WHERE conversation = 1 AND id > ? ORDER BY id LIMIT ?",
                (after, PAGE),
            ).fetchall()
            if not rows:
                return
            after = rows[-1][0]
            yield [uuid.UUID(bytes=row[0]) for row in rows]

    def mark_written(self, conversations: list[uuid.UUID]) -> None:
        """Remember conversations the restore wrote (under their final ids)."""
        with self._transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO written VALUES (?)", [(c.bytes,) for c in conversations]
            )

    def written_among(self, conversations: list[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these conversations the restore wrote."""
        found: set[uuid.UUID] = set()
        for start in range(0, len(conversations), PAGE):
            chunk = [c.bytes for c in conversations[start : start + PAGE]]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT id FROM written WHERE id IN ({marks})", chunk)  # noqa: S608
            found.update(uuid.UUID(bytes=row[0]) for row in rows)
        return found

    def close(self) -> None:
        """Drop the temporary file."""
        self._db.close()


class MoveIds:
    """Where an id goes when it is taken by other data: derived from the user and the id,
    so a second restore of the same file gives the same ids."""

    _NAMESPACE = uuid.UUID("8a5b7f0e-4f6b-4c1e-9d2a-6f0f3c1d2b7a")

    def __init__(self, user_id: uuid.UUID) -> None:
        self._prefix = hashlib.sha1(self._NAMESPACE.bytes + f"{user_id}:".encode())  # noqa: S324

    def __call__(self, original: uuid.UUID) -> uuid.UUID:
        return uuid.UUID(bytes=self.bytes(original))

    def bytes(self, original: uuid.UUID) -> bytes:
        """uuid5(namespace, f"{user_id}:{original}"), as its 16 bytes, without the object."""
        digest = self._prefix.copy()
        digest.update(str(original).encode())
        raw = bytearray(digest.digest()[:16])
        raw[6] = (raw[6] & 0x0F) | 0x50  # version 5
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
        return bytes(raw)
