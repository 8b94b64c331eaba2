"""Health for people and orchestrators, status, info, the route list, Prometheus metrics."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from fastapi import APIRouter, Request
from fastapi.dependencies.models import Dependant
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts
from starlette.routing import Route

from vektor import __version__
from vektor.auth.dependencies import AdminUser
from vektor.core.access import declared_access
from vektor.core.dependencies import SessionDep
from vektor.core.errors import Unauthorized
from vektor.core.metrics import QUOTA_REFUSALS, STREAMS, TOKEN_TOTALS, exposition
from vektor.core.pages import secure_page
from vektor.llm.providers import provider_names
from vektor.monitoring.service import check_database, check_redis, mcp_check, models_check
from vektor.state import AppState, app_state
from vektor.usage import service as usage_service
from vektor.usage.schemas import UsageDashboard

router = APIRouter(tags=["system"])
DASHBOARD = Path(__file__).parent / "static" / "dashboard.html"
TITLE = "Vektor"
OPENAPI = "/openapi.json"
# The API docs load Swagger UI and ReDoc from their CDN, and ReDoc styles itself inline.
_CDN = "https://cdn.jsdelivr.net"
_DOCS_SOURCES = {
    "script-src": [_CDN],
    "style-src": [_CDN, "https://fonts.googleapis.com", "'unsafe-inline'"],
    "font-src": ["https://fonts.gstatic.com"],
    "img-src": ["'self'", "data:", _CDN, "https://fastapi.tiangolo.com"],
    "worker-src": ["blob:"],
}
PAGE_SOURCES: dict[str, dict[str, list[str]]] = {"docs": _DOCS_SOURCES, "redoc": _DOCS_SOURCES}
DOWN: dict[int | str, dict[str, Any]] = {503: {"description": "The database is unreachable"}}
_process = psutil.Process(os.getpid())


_pages: dict[str, str] = {}  # rendered once, on first use


def _html(response: HTMLResponse) -> str:
    return bytes(response.body).decode()


async def _page(name: str, render: Callable[[], str]) -> HTMLResponse:
    html = _pages.get(name)
    if html is None:
        html = _pages[name] = await asyncio.to_thread(render)
    return secure_page(html, PAGE_SOURCES.get(name))


@router.get("/", include_in_schema=False)
async def dashboard() -> HTMLResponse:
    """The live dashboard: a static page that signs in and polls /api/status."""
    return await _page("dashboard", lambda: DASHBOARD.read_text(encoding="utf-8"))


@router.get("/docs", include_in_schema=False)
async def swagger_ui() -> HTMLResponse:
    """Swagger UI for /openapi.json."""
    return await _page(
        "docs",
        lambda: _html(get_swagger_ui_html(openapi_url=OPENAPI, title=f"{TITLE} — Swagger UI")),
    )


@router.get("/redoc", include_in_schema=False)
async def redoc() -> HTMLResponse:
    """ReDoc for /openapi.json."""
    return await _page(
        "redoc",
        lambda: _html(get_redoc_html(openapi_url=OPENAPI, title=f"{TITLE} — ReDoc")),
    )


@router.get("/health", operation_id="health", responses=DOWN)
async def health(request: Request) -> JSONResponse:
    """Service health with its checks (database, Redis when configured, models, MCP pools):
    200 `ok`, or 503 `degraded` when the database is unreachable. A model or MCP pool with no
    healthy deployment or replica shows as `degraded` in its check without a 503."""
    state = app_state(request)
    checks: dict[str, Any] = {"database": await check_database(state.engine)}
    if state.settings.redis_url:
        checks["redis"] = await check_redis(state.rate_limiter.storage)
    checks["models"] = models_check(state.balancer.status())
    checks["mcp"] = mcp_check(state.mcp.status())
    healthy = checks["database"]["status"] == "ok"
    body = {"status": "ok" if healthy else "degraded", "version": __version__, "checks": checks}
    return JSONResponse(body, status_code=200 if healthy else 503)


@router.get("/health/live", operation_id="health_live")
async def live() -> dict[str, str]:
    """The process is up and its event loop answers (liveness probe)."""
    return {"status": "ok"}


@router.get(
    "/health/ready",
    operation_id="health_ready",
    responses={503: {"description": "Shutting down, or the database is unreachable"}},
)
async def ready(request: Request) -> JSONResponse:
    """Ready for traffic: started, not shutting down, database reachable (readiness probe)."""
    state = app_state(request)
    if not state.ready:
        return JSONResponse({"status": "unavailable", "reason": "shutting down"}, 503)
    database = await check_database(state.engine)
    if database["status"] != "ok":
        return JSONResponse({"status": "unavailable", "reason": "database unreachable"}, 503)
    return JSONResponse({"status": "ok"})


@router.get(
    "/api/status",
    operation_id="api_status",
    responses={401: {"description": "Not signed in"}, 403: {"description": "Not an admin"}},
)
async def status(request: Request, admin: AdminUser) -> dict[str, Any]:
    """Admin: this process's uptime, requests, errors, latency percentiles per route, active
    streams, model deployments and MCP replicas with their counts, database pool, memory
    and CPU."""
    state = app_state(request)
    pool = state.engine.pool
    memory, cpu = await asyncio.to_thread(_process_usage)
    return {
        "version": __version__,
        **state.stats.summary(),
        "active_streams": STREAMS["active"],
        "tokens": dict(TOKEN_TOTALS),
        "models": state.balancer.status(),
        "mcp": state.mcp.status(),
        "mcp_gateway": _gateway_status(state),
        "database": {
            "dialect": state.engine.dialect.name,
            "pool": pool.status(),
            "checked_out": getattr(pool, "checkedout", lambda: None)(),
        },
        "process": {"pid": os.getpid(), "rss_bytes": memory, "cpu_percent": cpu},
    }


@router.get(
    "/api/dashboard/usage",
    operation_id="api_dashboard_usage",
    response_model=UsageDashboard,
    responses={401: {"description": "Not signed in"}, 403: {"description": "Not an admin"}},
)
async def dashboard_usage(admin: AdminUser, session: SessionDep) -> UsageDashboard:
    """Admin: the dashboard's usage charts: every model's tokens on each of the last 30
    UTC days, the ten users who spent most this UTC month, and this process's quota
    rejections by limit."""
    return await usage_service.dashboard(
        session, today=datetime.now(UTC).date(), quota_rejections=dict(QUOTA_REFUSALS)
    )


def _gateway_status(state: AppState) -> dict[str, Any]:
    """Calls through /mcp per pool and per user (this process's), when it is served."""
    if state.gateway is None:
        return {"enabled": False, "calls": 0, "refused": 0, "pools": {}, "users": []}
    return {"enabled": True, **state.gateway.gateway.stats.summary()}


def _process_usage() -> tuple[int, float]:
    return _process.memory_info().rss, _process.cpu_percent(interval=None)


@router.get("/api/info", operation_id="api_info")
async def info(request: Request) -> dict[str, Any]:
    """Version, limits and capabilities (no secrets)."""
    settings = app_state(request).settings
    return {
        "name": "Vektor",
        "version": __version__,
        "limits": {
            "rate_limit_auth": settings.rate_limit_auth,
            "rate_limit_chat": settings.rate_limit_chat,
            "max_body_bytes": settings.max_body_bytes,
            "max_upload_bytes": settings.max_upload_bytes,
            "max_user_storage_bytes": settings.max_user_storage_bytes,
            "max_messages_per_request": settings.max_messages_per_request,
            "max_message_chars": settings.max_message_chars,
            "max_answer_tokens": settings.max_answer_tokens,
            "max_concurrent_streams": settings.max_concurrent_streams,
            "max_tool_rounds": settings.max_tool_rounds,
            "rate_limit_mcp": settings.rate_limit_mcp,
        },
        "capabilities": {
            "streaming": "sse",
            "websocket": "/chat/ws",
            "providers": provider_names(),
            "mcp_transports": ["streamable-http", "sse", "stdio"],
            "openai_compatible_api": "/v1",
            "mcp_gateway": "/mcp" if settings.mcp_gateway else None,
            "database": app_state(request).engine.dialect.name,
            "shared_state": "redis" if settings.redis_url else "memory",
            "metrics": "/metrics",
        },
    }


def _auth(dependant: Dependant) -> str | None:
    """What a route asks of its caller, from the auth dependencies in its tree."""
    found: str | None = None
    for dependency in dependant.dependencies:
        who = declared_access(dependency.call)
        if who == "admin":
            return "admin"
        if who is not None:
            found = who
        deeper = _auth(dependency)
        if deeper == "admin":
            return "admin"
        found = found or deeper
    return found


@router.get("/api/endpoints", operation_id="api_endpoints")
async def endpoints(request: Request) -> list[dict[str, Any]]:
    """Every API route: path, methods, tags, and whether (and what) auth it needs."""
    rows = []
    for context in iter_route_contexts(request.app.routes):
        route = context.original_route
        if isinstance(route, APIWebSocketRoute):  # a GET that upgrades; it signs in itself
            needs = declared_access(route.dependant.call) or _auth(route.dependant)
            path, methods, tags = context.path or route.path, ["GET"], []
        elif isinstance(route, APIRoute):
            needs = _auth(route.dependant)
            path, methods = context.path or route.path, sorted(context.methods or ())
            tags = list(route.tags)
        elif isinstance(route, Route) and declared_access(route.endpoint):  # /mcp, plain ASGI
            needs = declared_access(route.endpoint)
            path, methods, tags = route.path, ["DELETE", "GET", "POST"], ["mcp"]
        else:
            continue
        who = needs or "anyone"
        rows.append(
            {"path": path, "methods": methods, "tags": tags, "auth": needs is not None, "who": who}
        )
    return sorted(rows, key=lambda r: (r["path"], r["methods"]))


@router.get(
    "/metrics",
    operation_id="metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition"},
        401: {"description": "METRICS_TOKEN is set and the bearer token does not match it"},
    },
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this process (of every worker under Gunicorn)."""
    token = app_state(request).settings.metrics_token
    if token:
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise Unauthorized("A valid metrics token is required")
    body, content_type = await asyncio.to_thread(exposition)
    return Response(body, media_type=content_type)
