"""Request context: X-Request-ID, one api.log line per request, JSON for unexpected errors."""

from __future__ import annotations

import itertools
import os
import re
import secrets
import time
from typing import Any

from loguru import logger
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vektor.core.logging import log_access
from vektor.core.metrics import UNMATCHED, RequestStats

REQUEST_ID_HEADER = "X-Request-ID"
CONTEXT_KEY = "vektor.context"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Request ids made here: this process's random half and a counter, 32 hex digits. Unique,
# and free of the system call uuid4 makes, which hands the interpreter lock to the
# database and log threads in the middle of every request.
_ID_PREFIX = secrets.token_hex(8)
_ID_COUNTER = itertools.count(1)


def _new_id_prefix() -> None:
    """A forked worker draws its own random half."""
    global _ID_PREFIX
    _ID_PREFIX = secrets.token_hex(8)


os.register_at_fork(after_in_child=_new_id_prefix)


def request_context(scope: Scope) -> dict[str, Any]:
    """The per-request dict shared by middleware and dependencies (request id, user id)."""
    ctx: dict[str, Any] = scope.setdefault(CONTEXT_KEY, {})
    return ctx


def _incoming_request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            if _VALID_REQUEST_ID.match(text):
                return text
            break
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _limit_body(receive: Receive, max_bytes: int) -> Receive:
    """Count body bytes as they arrive; too many is a JSON 413.

    An HTTPException, because FastAPI turns any other error raised while it reads the
    body into a 400.
    """
    received = 0

    async def receive_limited() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > max_bytes:
                raise HTTPException(413, f"Request body larger than {max_bytes} bytes")
        return message

    return receive_limited


class RequestContextMiddleware:
    """Outermost middleware: tags, times, counts and logs every HTTP request; caps its
    body."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        larger_bodies: dict[str, int] | None = None,
        stats: RequestStats | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.larger_bodies = larger_bodies or {}  # path → its own cap (uploads)
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request with its id bound to every log record."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = request_context(scope)
        request_id = ctx["request_id"] = _incoming_request_id(scope)
        client = scope.get("client")
        ctx["client"] = client[0] if client else None
        started = time.perf_counter()
        status = {"code": 500, "sent": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["sent"] = True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        with logger.contextualize(request_id=request_id):
            try:
                cap = self.larger_bodies.get(scope["path"], self.max_body_bytes)
                length = _content_length(scope)
                if length is not None and length > cap:
                    detail = f"Request body larger than {cap} bytes"
                    response = JSONResponse({"detail": detail}, status_code=413)
                    await response(scope, receive, send_with_id)
                    return
                receive = _limit_body(receive, cap)
                await self.app(scope, receive, send_with_id)
            except Exception:
                logger.exception("unhandled error on {} {}", scope["method"], scope["path"])
                if not status["sent"]:
                    response = JSONResponse({"detail": "Internal server error"}, status_code=500)
                    await response(scope, receive, send_with_id)
            finally:
                self._log(scope, ctx, status["code"], started)

    def _log(self, scope: Scope, ctx: dict[str, Any], status: int, started: float) -> None:
        elapsed = time.perf_counter() - started
        elapsed_ms = round(elapsed * 1000, 2)
        route = scope.get("route")
        template = getattr(route, "path", None)
        if self.stats is not None:
            self.stats.record(scope["method"], template or UNMATCHED, status, elapsed)
        log_access(
            f"{scope['method']} {scope['path']} {status} {elapsed_ms}ms",
            {
                "method": scope["method"],
                "path": scope["path"],
                "route": template,
                "status": status,
                "duration_ms": elapsed_ms,
                "request_id": ctx["request_id"],
                "user_id": ctx.get("user_id"),
                "client": ctx.get("client"),
            },
        )
