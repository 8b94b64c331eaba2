"""/mcp as an MCP server, from the official SDK's server side (streamable HTTP).

The SDK's session manager serves every revision it knows: 2025-06-18 and 2025-11-25 with
`initialize` and `Mcp-Session-Id` (a session is bound to the credential that opened it),
and 2026-07-28 as single self-contained POSTs (`server/discover`, no session). The handlers
below are the same for all of them; they find the caller in the HTTP request's scope,
where `router.py` put it after checking the bearer token.

The SDK is large and is imported, and the manager started, on the first request to /mcp,
so a process that is never asked pays nothing for it.
"""

from __future__ import annotations

import asyncio
import importlib
import uuid
from collections.abc import Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, cast

from loguru import logger

from vektor.core.errors import RateLimited
from vektor.gateway.service import Gateway, InvalidArguments, UnknownTool

if TYPE_CHECKING:
    from mcp.server.context import ServerRequestContext
    from mcp.server.lowlevel.server import Server
    from mcp.server.session import ServerSession
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from mcp.types import CallToolRequestParams, CallToolResult, ListToolsResult
    from mcp.types import PaginatedRequestParams as Paginated
    from starlette.types import Receive, Scope, Send

CALLER_KEY = "vektor.mcp_caller"  # the ASGI scope key holding the caller's user id
ALLOWED_KEY = "vektor.mcp_allowed"  # and the pools that caller may use (None: every pool)
_UNREAD = object()
# The caller's pools while the SDK serves a 2026-07-28 request in the route's own task: the
# SDK asks for a called tool's input schema before any handler runs, by name alone.
_ALLOWED: ContextVar[object] = ContextVar("vektor_mcp_allowed", default=_UNREAD)
WATCH_INTERVAL_S = 1.0  # how often the pooled catalog is compared for list changes
MAX_LISTENERS = 10_000  # the SDK's own default limit of open sessions
RATE_LIMITED_CODE = -32029  # a server error code (JSON-RPC reserves -32000..-32099)
_SDK = (
    "mcp.server.auth.middleware.bearer_auth",
    "mcp.server.lowlevel.server",
    "mcp.server.streamable_http_manager",
    "mcp.shared.exceptions",
    "mcp.types",
)


def _caller(ctx: ServerRequestContext[Any, Any]) -> uuid.UUID:
    """The user the HTTP request carrying this message was authenticated as."""
    request = ctx.request
    caller = request.scope.get(CALLER_KEY) if request is not None else None
    if not isinstance(caller, uuid.UUID):  # never reached: router.py refuses first
        from mcp.shared.exceptions import MCPError

        raise MCPError(code=-32001, message="Not authenticated")
    return caller


async def _allowed(gateway: Gateway, ctx: ServerRequestContext[Any, Any]) -> frozenset[str] | None:
    """The pools the caller may use, as read for the HTTP request carrying this message."""
    request = ctx.request
    if request is not None and ALLOWED_KEY in request.scope:
        return cast("frozenset[str] | None", request.scope[ALLOWED_KEY])
    return await gateway.allowed(_caller(ctx))


def _bind_session_owner(scope: Scope, user_id: str) -> None:
    """The SDK binds a 2025-revision session to the principal that opened it and answers
    404 to anyone else presenting its id: the principal is the user."""
    from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
    from mcp.server.auth.provider import AccessToken

    scope["user"] = AuthenticatedUser(AccessToken(token="", client_id=user_id, scopes=[]))


class GatewayServer:
    """The SDK server and session manager, started on first use and stopped with the app."""

    def __init__(self, gateway: Gateway, *, max_body_bytes: int) -> None:
        self.gateway = gateway
        self.max_body_bytes = max_body_bytes
        self._manager: StreamableHTTPSessionManager | None = None
        self._starting: asyncio.Lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # Sessions (2025 revisions) that listed tools, by Mcp-Session-Id: told when the
        # catalog changes. The SDK builds a ServerSession per request; any of a session's
        # sends on its standalone stream.
        self._listeners: dict[str, ServerSession] = {}

    async def handle(
        self, scope: Scope, receive: Receive, send: Send, *, caller: uuid.UUID
    ) -> None:
        """Serve one HTTP request to /mcp for the authenticated `caller`."""
        manager = self._manager or await self._start()
        scope[CALLER_KEY] = caller
        _bind_session_owner(scope, str(caller))
        if scope.get("method") != "POST":  # a stream's GET, a session's DELETE: no tools
            await manager.handle_request(scope, receive, send)
            return
        allowed = scope[ALLOWED_KEY] = await self.gateway.allowed(caller)
        token = _ALLOWED.set(allowed)
        try:
            await manager.handle_request(scope, receive, send)
        finally:
            _ALLOWED.reset(token)

    def input_schema(self, name: str) -> Mapping[str, Any] | None:
        """A called tool's input schema, among the caller's pools only, for the SDK's check
        of `Mcp-Param-*` headers (without it the SDK lists every tool on each call)."""
        allowed = _ALLOWED.get()
        if allowed is _UNREAD:
            return None
        tool = self.gateway.find(name, cast("frozenset[str] | None", allowed))
        return tool.input_schema if tool is not None else None

    async def _start(self) -> StreamableHTTPSessionManager:
        async with self._starting:
            if self._manager is None:
                await asyncio.to_thread(lambda: [importlib.import_module(m) for m in _SDK])
                manager = self._build()
                ready = asyncio.Event()
                self._tasks.append(asyncio.create_task(self._run(manager, ready)))
                await ready.wait()
                self._tasks.append(asyncio.create_task(self._watch_catalog()))
                self._manager = manager
        return self._manager

    async def _run(self, manager: StreamableHTTPSessionManager, ready: asyncio.Event) -> None:
        """Keep the manager's task group open (entered and left in this one task)."""
        async with manager.run():
            ready.set()
            await self._stop.wait()

    def _build(self) -> StreamableHTTPSessionManager:
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

        return StreamableHTTPSessionManager(
            _server(self),
            json_response=False,
            max_request_body_size=self.max_body_bytes,
        )

    async def aclose(self) -> None:
        """Close every session and stop the manager."""
        self._stop.set()
        for task in self._tasks[1:]:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: Paginated | None
    ) -> ListToolsResult:
        """tools/list: the caller's pooled tools, all on one page."""
        from mcp.types import ListToolsResult

        self._listen(ctx)
        return ListToolsResult(tools=self.gateway.list_tools(await _allowed(self.gateway, ctx)))

    def _listen(self, ctx: ServerRequestContext[Any, Any]) -> None:
        """Remember a 2025-revision session to tell of list changes (2026-07-28 has no
        standing stream to tell it on)."""
        session_id = ctx.request.headers.get("mcp-session-id") if ctx.request else None
        if session_id is None or session_id in self._listeners:
            return
        if len(self._listeners) >= MAX_LISTENERS:  # forget the oldest
            self._listeners.pop(next(iter(self._listeners)))
        self._listeners[session_id] = ctx.session

    async def call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: CallToolRequestParams
    ) -> CallToolResult:
        """tools/call through the pool; the server's own result passed on as it came."""
        from mcp.shared.exceptions import MCPError
        from mcp.types import INVALID_PARAMS, CallToolResult, TextContent

        async def progressed(progress: float, total: float | None, message: str | None) -> None:
            await ctx.session.report_progress(progress, total, message)

        try:
            allowed = await _allowed(self.gateway, ctx)
            result = await self.gateway.call_tool(
                _caller(ctx), params.name, params.arguments, progressed, allowed=allowed
            )
        except UnknownTool as exc:
            raise MCPError(code=INVALID_PARAMS, message=str(exc)) from exc
        except InvalidArguments as exc:
            # A tool execution error, as 2025-11-25 asks, so that a model can correct itself.
            return CallToolResult(content=[TextContent(text=str(exc))], is_error=True)
        except RateLimited as exc:
            message = f"Rate limit exceeded: retry after {exc.retry_after} s"
            data = {"retry_after": exc.retry_after}
            raise MCPError(code=RATE_LIMITED_CODE, message=message, data=data) from exc
        if result.raw is not None:
            return result.raw
        return CallToolResult(content=[TextContent(text=result.content)], is_error=result.is_error)

    async def _watch_catalog(self) -> None:
        """Tell the sessions that listed tools when the pooled catalog changes (the 2025
        revisions' `notifications/tools/list_changed`, on the session's GET stream)."""
        seen = self.gateway.catalog()
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            current = self.gateway.catalog()
            if current == seen:
                continue
            seen = current
            for session_id, session in list(self._listeners.items()):
                try:
                    await session.send_tool_list_changed()
                except Exception as exc:  # a session that went away: nothing to tell
                    self._listeners.pop(session_id, None)
                    logger.debug("tools/list_changed not delivered: {}", type(exc).__name__)


def _server(owner: GatewayServer) -> Server[Any]:
    """The low-level SDK server: tools only (see README, "Use Vektor's tools from any MCP
    client", for what is and is not passed through)."""
    from mcp.server.lowlevel.server import NotificationOptions, Server
    from mcp.server.models import InitializationOptions

    from vektor import __version__

    class _Server(Server[Any]):
        def create_initialization_options(
            self,
            notification_options: NotificationOptions | None = None,
            experimental_capabilities: dict[str, dict[str, Any]] | None = None,
            extensions: dict[str, dict[str, Any]] | None = None,
        ) -> InitializationOptions:
            """Announce `tools.listChanged`: the catalog watcher sends it."""
            return super().create_initialization_options(
                notification_options or NotificationOptions(tools_changed=True),
                experimental_capabilities,
                extensions,
            )

    server = _Server(
        "vektor",
        version=__version__,
        instructions="Vektor's pooled MCP tools, named <pool>__<tool>.",
        get_tool_input_schema=owner.input_schema,
        on_list_tools=owner.list_tools,
        on_call_tool=owner.call_tool,
    )
    # The SDK's default OpenTelemetry middleware opens a span per message even with no
    # exporter installed (about 1 % of the gateway's CPU); Vektor exports none.
    server.middleware.clear()
    return server
