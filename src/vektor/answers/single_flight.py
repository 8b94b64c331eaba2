"""Single flight: identical cacheable requests that arrive while one is being answered make
one upstream call; the others follow its events.

A `Flight` owns the upstream request in a task of its own: it opens a deployment, keeps
every event it receives, and wakes its followers. Each answer reads the flight through a
`Subscription` (from the first event, whenever it joined), so an answer cancelled by its
client only leaves the flight; the upstream is stopped when the last one leaves. When the
upstream has finished, `on_done` gets every event (the response cache keeps the answer).

Flights are per process: identical requests on two instances make two upstream calls
(with REDIS_URL the later ones after the first answer is kept are hits).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from loguru import logger

from vektor.llm.balancer import Deployment, OpenedStream
from vektor.llm.base import ProviderError, ProviderEvent

Opener = Callable[[], Awaitable[OpenedStream]]
OnDone = Callable[[Deployment, list[ProviderEvent]], Awaitable[None]]


class Flight:
    """One upstream answer shared by the identical requests that wait for it."""

    def __init__(self, open_upstream: Opener, on_done: OnDone, name: str) -> None:
        self.events: list[ProviderEvent] = []
        self.finished = False
        self.error: str | None = None
        self.subscribers = 0
        self.opened: asyncio.Future[Deployment] = asyncio.get_running_loop().create_future()
        # Nobody may be waiting when the open fails (they all left): the error is read here.
        self.opened.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._changed = asyncio.Event()
        self._on_done = on_done
        self._task = asyncio.create_task(self._run(open_upstream), name=f"flight-{name}")

    @property
    def joinable(self) -> bool:
        """Answering, or keeping an answer that ended well: a request that joins now gets
        the whole answer."""
        return self.error is None and not self._task.done()

    def when_done(self, callback: Callable[[], object]) -> None:
        """Call `callback` once the flight is over (its answer kept, or not)."""
        self._task.add_done_callback(lambda _: callback())

    def subscribe(self) -> Subscription:
        """A reader of this flight's events from the first."""
        self.subscribers += 1
        return Subscription(self)

    def leave(self) -> None:
        """A reader is gone; the last one to leave stops the upstream request."""
        self.subscribers -= 1
        if self.subscribers <= 0 and not self.finished and not self._task.done():
            self.error = "cancelled"  # no longer joinable, from now
            self._task.cancel()

    async def deployment(self) -> Deployment:
        """The deployment that answers, once it produced its first event; the open's error
        (404, 502, 503) otherwise."""
        return await asyncio.shield(self.opened)

    async def wait(self) -> None:
        """Until the next event or the end."""
        await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed.clear()  # the waiters already woken stay woken

    async def _run(self, open_upstream: Opener) -> None:
        try:
            opened = await open_upstream()
        except asyncio.CancelledError:  # every reader left before a deployment answered
            self.finished = True
            self.opened.cancel()
            raise
        except Exception as exc:
            self.finished, self.error = True, str(exc)
            self.opened.set_exception(exc)
            self._notify()
            return
        self.opened.set_result(opened.deployment)
        try:
            async for event in opened.events():
                self.events.append(event)
                self._notify()
        except ProviderError as exc:
            self.error = str(exc)
        except asyncio.CancelledError:
            self.error = "cancelled"
            raise
        except Exception as exc:  # an upstream that breaks the protocol
            logger.exception("shared answer failed")
            self.error = f"upstream failure: {type(exc).__name__}"
        finally:
            self.finished = True
            self._notify()
            await opened.aclose()
        if self.error is None:
            await self._on_done(opened.deployment, self.events)


class Subscription:
    """One answer's reading of a flight: an async iterator of the upstream's events that
    leaves the flight when closed (closing an unstarted one leaves too)."""

    def __init__(self, flight: Flight) -> None:
        self.flight = flight
        self.index = 0
        self.closed = False

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> ProviderEvent:
        flight = self.flight
        while not self.closed:
            if self.index < len(flight.events):
                self.index += 1
                return flight.events[self.index - 1]
            if flight.finished:
                if flight.error is not None:
                    raise ProviderError(flight.error, retryable=False)
                break
            await flight.wait()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Leave the flight (once)."""
        if not self.closed:
            self.closed = True
            self.flight.leave()
