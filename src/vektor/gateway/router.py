"""The /mcp route: the bearer check of /v1 (an API key or an access token), then the MCP
server of `server.py`. The SDK's transport is an ASGI app, so the route is one too."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi.security.utils import get_authorization_scheme_param
from starlette.requests import Request
from starlette.routing import Route

from vektor.apikeys.dependencies import get_api_user
from vektor.core.access import who_may_call
from vektor.core.errors import NotFound
from vektor.state import app_state

if TYPE_CHECKING:
    from fastapi.security import HTTPAuthorizationCredentials
    from starlette.types import Receive, Scope, Send

PATH = "/mcp"


def _credentials(request: Request) -> HTTPAuthorizationCredentials | None:
    from fastapi.security import HTTPAuthorizationCredentials

    scheme, token = get_authorization_scheme_param(request.headers.get("Authorization"))
    if not scheme or not token:
        return None
    return HTTPAuthorizationCredentials(scheme=scheme, credentials=token)


class GatewayEndpoint:
    """ASGI: authenticate, bind an MCP session to its credential, hand over to the SDK.
    Errors raised before the SDK answers (401, a database outage) are rendered by the app's
    error handlers like any route's."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request to /mcp."""
        request = Request(scope, receive)
        state = app_state(request)
        if state.gateway is None:  # MCP_GATEWAY=off: the route is not even mounted
            raise NotFound("Not Found")
        credentials = _credentials(request)
        user_id = await get_api_user(request, credentials)
        await state.gateway.handle(scope, receive, send, caller=user_id)


who_may_call("user or API key")(GatewayEndpoint)


def gateway_route() -> Route:
    """The /mcp route, every method (POST, GET for the 2025 revisions' stream, DELETE)."""
    return Route(PATH, GatewayEndpoint(), include_in_schema=False)
