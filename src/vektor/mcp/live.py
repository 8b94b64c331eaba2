"""One long-lived MCP client per streamable-HTTP replica, shared by its calls.

Opening a client per call cost a task, two stream pairs and, for a 2025-revision server,
an `initialize` round trip: about two thirds of a relayed call. Here a client stays open
in a task of its own (`_hold`), so a server that dies mid-call can fail that task's
client, never a caller's task; each call still runs in its own task with its own time
limit (`attempts.in_own_task`) and is classified on its own.

The SDK lets a transport failure of one request escape into the client's task group,
which would end every call on the client. `FailureAnswers` turns those failures into the
JSON-RPC error answers the SDK hands to the one request they belong to: the connection
never made (`UNREACHED_CODE`, safe to retry elsewhere) or lost after the request was sent
(it may have run).

A client is retired after a failure, when its server's revision changed, or when the
pool closes: new calls open a new one, and the retired one closes once its last call is
over, so a retirement never spoils a call in flight.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx2
from loguru import logger

if TYPE_CHECKING:
    from mcp import Client

UNREACHED_CODE = -32098  # the request never left: no server ever sees this code
LOST_CODE = -32097  # the connection broke once the request was sent
CLOSE_WAIT_S = 5.0  # a closing client's goodbye (a 2025 session's DELETE) waits this long
_UNREACHED = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout)


class BodyBroken(httpx2.StreamError):
    """The connection broke while an answer was being read (the SDK reports a stream
    error to the one request it belonged to)."""


def _answer(request: httpx2.Request, code: int, error: Exception) -> httpx2.Response:
    message = f"{type(error).__name__}: {error}".rstrip(": ")
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}
    return httpx2.Response(
        502,
        headers={"content-type": "application/json"},
        content=json.dumps(body).encode(),
        request=request,
    )


class _GuardedBody(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream) -> None:
        self.inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.inner:
                yield chunk
        except httpx2.TransportError as exc:
            raise BodyBroken(f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        await self.inner.aclose()


class FailureAnswers(httpx2.AsyncBaseTransport):
    """An HTTP transport whose failures become answers to the one request that failed."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """The server's answer, or a JSON-RPC error standing for the failure."""
        try:
            response = await self.inner.handle_async_request(request)
        except _UNREACHED as exc:
            return _answer(request, UNREACHED_CODE, exc)
        except httpx2.TransportError as exc:
            return _answer(request, LOST_CODE, exc)
        stream = response.stream
        assert isinstance(stream, httpx2.AsyncByteStream)
        return httpx2.Response(
            response.status_code,
            headers=response.headers,
            stream=_GuardedBody(stream),
            extensions=response.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        """Close the connections."""
        await self.inner.aclose()


def answering_failures(client: httpx2.AsyncClient) -> httpx2.AsyncClient:
    """The client with each of its transports wrapped in `FailureAnswers`, the proxied ones
    from the environment included (a transport given to the constructor would replace
    those). httpx2 offers no public way to wrap them."""
    client._transport = FailureAnswers(client._transport)
    client._mounts = {
        pattern: None if transport is None else FailureAnswers(transport)
        for pattern, transport in client._mounts.items()
    }
    return client


Connect = Callable[[object], AbstractAsyncContextManager["Client"]]


@dataclass(eq=False)
class _Held:
    key: object  # what the client was opened with: another key needs another client
    opened: asyncio.Future[Client]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    users: int = 0
    retired: bool = False

    def usable(self, key: object) -> bool:
        return not self.retired and self.key is key and not (self.task and self.task.done())


class LiveClient:
    """The replica's open client, opened on first use and reopened once retired."""

    def __init__(self, connect: Connect) -> None:
        self.connect = connect
        self._current: _Held | None = None
        self._all: set[_Held] = set()

    @asynccontextmanager
    async def lease(self, key: object) -> AsyncIterator[Client]:
        """The open client (opened now if needed) for one call."""
        held = self._current
        if held is None or not held.usable(key):
            if held is not None:
                self._retire(held)
            held = self._current = self._open(key)
        held.users += 1
        try:
            yield await asyncio.shield(held.opened)
        finally:
            held.users -= 1
            if held.retired and held.users == 0:
                held.stop.set()

    def retire(self) -> None:
        """The next call opens a new client; this one closes after its calls."""
        if self._current is not None:
            self._retire(self._current)
            self._current = None

    def _retire(self, held: _Held) -> None:
        held.retired = True
        if held.users == 0:
            held.stop.set()

    def _open(self, key: object) -> _Held:
        held = _Held(key, asyncio.get_running_loop().create_future())
        # A context of its own: the task outlives the request that opened it.
        held.task = asyncio.create_task(self._hold(held), context=contextvars.Context())
        self._all.add(held)
        return held

    async def _hold(self, held: _Held) -> None:
        try:
            async with self.connect(held.key) as client:
                held.opened.set_result(client)
                await held.stop.wait()
        except Exception as exc:  # a failure to open goes to its callers; later, the calls'
            if not held.opened.done():
                held.opened.set_exception(exc)
            logger.debug("MCP client closed: {}", type(exc).__name__)
        except BaseException:
            if not held.opened.done():
                held.opened.cancel()
            raise
        finally:
            held.retired = True
            self._all.discard(held)

    async def aclose(self) -> None:
        """Close every client, waiting a moment for each to say goodbye."""
        self._current = None
        tasks = [held.task for held in self._all if held.task is not None]
        for held in self._all:
            held.retired = True
            held.stop.set()
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=CLOSE_WAIT_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
