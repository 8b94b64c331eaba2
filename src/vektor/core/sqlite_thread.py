"""SQLite's own connection in a thread of its own, for the hot path's units of work.

Units queue in the thread and run in turn, each in one hop from the event loop (see
`core/direct.py` for why). Under load the units that are waiting when the thread gets to
them run together in one transaction, committed once (a group commit): the commit, and the
full-text index's flush that comes with it, are the most expensive part of a chat answer's
writes, and a group pays them once. Each caller still hears of its own unit only once it is
committed. When any unit of a group fails, the group is rolled back and its units run again
one at a time, each in its own transaction as if it had been alone, so a failure touches
only the unit that caused it. A unit therefore writes through `sqlite_transaction` (which
inside a group is part of the group's transaction), never commits by itself, and may run
twice: it changes nothing but the database.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from vektor.core.database import SQLITE_BUSY_TIMEOUT_S, sqlite_pragmas

T = TypeVar("T")

HOLD_LIMIT_S = 60.0  # a holder that never lets go holds the thread this long at most
MAX_GROUP = 32  # units committed together at most


class GroupConnection(sqlite3.Connection):
    """The thread's connection, which knows whether a group's transaction is open."""

    in_group = False


@contextmanager
def sqlite_transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction that takes the write lock at once; committed, or rolled back.
    Inside a group's transaction it is part of that one (committed with the group)."""
    if getattr(connection, "in_group", False):
        yield connection
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.rollback()
        raise
    connection.commit()


@dataclass(frozen=True, slots=True)
class _Unit:
    work: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    alone: bool = False  # never part of a group (a holder waits inside it)

    def settle(self, outcome: tuple[bool, Any]) -> None:
        self.loop.call_soon_threadsafe(_settle, self.future, outcome)


class SqliteThread:
    """One sqlite3 connection in a thread of its own, running units of work in turn."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._units: queue.SimpleQueue[_Unit | None] = queue.SimpleQueue()
        self._connection: GroupConnection | None = None
        self._thread = threading.Thread(target=self._serve, name="vektor-sqlite", daemon=True)
        self._thread.start()

    async def run(self, work: Callable[[sqlite3.Connection], T], *, alone: bool = False) -> T:
        """`work(connection)` in the thread; its result or its exception. `alone`: in a
        transaction of its own, never in a group."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._units.put(_Unit(work, future, loop, alone))
        return await future

    async def aclose(self) -> None:
        """Finish the queued work, then close the connection."""
        self._units.put(None)
        await asyncio.to_thread(self._thread.join)

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """The thread's turn, kept while the caller writes through another connection: the
        work queued before runs first, the work queued after waits for the block's end.
        Writers of the two connections then take turns in order, not through SQLite's busy
        handler, whose sleep-and-retry steps (up to 100 ms) can miss the gap between two of
        the other connection's transactions again and again."""
        loop = asyncio.get_running_loop()
        taken: asyncio.Future[None] = loop.create_future()
        release = threading.Event()

        def wait(_connection: sqlite3.Connection) -> None:
            loop.call_soon_threadsafe(_settle, taken, (True, None))
            release.wait(HOLD_LIMIT_S)

        held = asyncio.ensure_future(self.run(wait, alone=True))
        try:
            await asyncio.wait({taken, held}, return_when=asyncio.FIRST_COMPLETED)
            if not taken.done():
                held.result()  # the thread could not run it: its error
            yield
        finally:
            release.set()
            await asyncio.gather(held, return_exceptions=True)

    def _serve(self) -> None:
        try:
            for group in self._groups():
                if len(group) == 1 or not self._ran_together(group):
                    for unit in group:
                        unit.settle(self._run_alone(unit))
        finally:
            if self._connection is not None:
                self._connection.close()

    def _groups(self) -> Iterator[list[_Unit]]:
        """The queued units in groups: a unit, with those waiting behind it, up to one
        that must run alone (or the end)."""
        unit = self._units.get()
        while unit is not None:
            group, held_back = [unit], list[_Unit | None]()
            while not unit.alone and len(group) < MAX_GROUP:
                try:
                    following = self._units.get_nowait()
                except queue.Empty:
                    break
                if following is None or following.alone:
                    held_back.append(following)
                    break
                group.append(following)
            yield group
            unit = held_back[0] if held_back else self._units.get()

    def _open(self) -> GroupConnection:
        if self._connection is None:
            self._connection = _open_sqlite(self.path)
        return self._connection

    def _ran_together(self, group: list[_Unit]) -> bool:
        """Run the group in one transaction and settle its units; False, with nothing
        written, when a unit or the commit failed (its units are then run one at a time)."""
        try:
            connection = self._open()
            connection.execute("BEGIN IMMEDIATE")
        except BaseException as exc:  # each unit alone would have met the same
            for unit in group:
                unit.settle((False, exc))
            return True
        try:
            connection.in_group = True
            try:
                results = [unit.work(connection) for unit in group]
            finally:
                connection.in_group = False
            connection.commit()
        except BaseException:
            if connection.in_transaction:
                connection.rollback()
            return False
        for unit, result in zip(group, results, strict=True):
            unit.settle((True, result))
        return True

    def _run_alone(self, unit: _Unit) -> tuple[bool, Any]:
        connection = self._connection
        try:
            connection = self._open()
            return True, unit.work(connection)
        except BaseException as exc:
            if connection is not None and connection.in_transaction:
                connection.rollback()
            return False, exc


def _open_sqlite(path: str) -> GroupConnection:
    connection = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S, factory=GroupConnection)
    sqlite_pragmas(connection)
    return connection


def _settle(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.done():  # the caller was cancelled; the work itself ran
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
