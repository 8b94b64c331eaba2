"""Which routes the app serves, in which order, and what every operation documents."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from vektor.admin.router import router as admin_router
from vektor.answers.router import admin_router as cache_admin_router
from vektor.answers.router import router as answers_router
from vektor.answers.websocket import router as socket_router
from vektor.apikeys.router import router as api_keys_router
from vektor.auth.router import router as auth_router
from vektor.chat.router import router as chat_router
from vektor.compat.router import router as compat_router
from vektor.configuration.router import router as configuration_router
from vektor.gateway.router import gateway_route
from vektor.monitoring.router import router as monitoring_router
from vektor.sync.router import router as sync_router
from vektor.usage.router import admin_router as admin_usage_router
from vektor.usage.router import router as usage_router
from vektor.users.router import router as users_router

# Documented on every operation: statuses any endpoint can answer.
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed request"},
    413: {"description": "Request body too large"},
    422: {"description": "Validation error"},
    429: {"description": "Too many requests (see Retry-After)"},
    503: {"description": "A dependency (the database) is unavailable"},
}
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing, invalid or revoked credentials"},
}


def include_routes(app: FastAPI, *, mcp_gateway: bool) -> None:
    """Every router, the busiest first: a request is matched against every route of every
    router included before the one that serves it (twice, in this FastAPI), and /v1 used
    to be tenth."""
    app.include_router(compat_router)
    app.include_router(answers_router, responses=AUTH_RESPONSES)
    app.include_router(auth_router)
    app.include_router(users_router, responses=AUTH_RESPONSES)
    app.include_router(cache_admin_router, responses=AUTH_RESPONSES)
    app.include_router(socket_router)
    app.include_router(chat_router, responses=AUTH_RESPONSES)
    app.include_router(sync_router, responses=AUTH_RESPONSES)
    app.include_router(configuration_router, responses=AUTH_RESPONSES)
    app.include_router(api_keys_router, responses=AUTH_RESPONSES)
    app.include_router(usage_router, responses=AUTH_RESPONSES)
    app.include_router(
        admin_router, responses={**AUTH_RESPONSES, 403: {"description": "Not an admin"}}
    )
    app.include_router(admin_usage_router, responses=AUTH_RESPONSES)
    app.include_router(monitoring_router)
    if mcp_gateway:  # first: one tool call is one request, matched once here
        app.router.routes.insert(0, gateway_route())
