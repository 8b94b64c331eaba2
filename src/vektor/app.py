"""The application factory: lifespan resources, middleware, error handlers, routers."""

from __future__ import annotations

import asyncio
import gc
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from httpx_aiohttp import HttpxAiohttpClient
from loguru import logger
from sqlalchemy import exc as sa_exc

from vektor import __version__
from vektor.apikeys.key_check import KeyCheck
from vektor.apikeys.router import router as api_keys_router
from vektor.auth.router import router as auth_router
from vektor.auth.session_check import SessionCheck
from vektor.chat.generation import GenerationManager
from vektor.chat.router import router as chat_router
from vektor.chat.streams import MemoryStreamStore, StreamStore
from vektor.chat.tools import ToolRunner
from vektor.chat.writes import ChatWrites
from vektor.compat.router import router as compat_router
from vektor.configuration.notifier import AdapterNotifier
from vektor.configuration.router import router as configuration_router
from vektor.core.config import Settings, get_settings
from vektor.core.database import (
    DATABASE_DOWN_ERRORS,
    create_engine,
    create_sessionmaker,
    is_database_down,
)
from vektor.core.direct import DirectDatabase
from vektor.core.errors import AppError
from vektor.core.events import EventBus, MemoryEventBus
from vektor.core.logging import configure_logging, flush_logs
from vektor.core.middleware import REQUEST_ID_HEADER, RequestContextMiddleware
from vektor.core.ratelimit import RateLimiter
from vektor.llm.balancer import ModelBalancer
from vektor.llm.config import load_deployments
from vektor.llm.http import new_session
from vektor.mcp.config import load_mcp_servers
from vektor.mcp.registry import McpRegistry
from vektor.monitoring.metrics import RequestStats
from vektor.monitoring.router import router as monitoring_router
from vektor.sync.backups import BackupManager
from vektor.sync.router import router as sync_router
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


async def _start_answering(app: FastAPI, settings: Settings) -> None:
    """Models, MCP tools, adapters, shared streams and events, and the generation manager."""
    deployments = await asyncio.to_thread(load_deployments, settings.vektor_config_dir)
    app.state.model_router = ModelBalancer(
        deployments, app.state.upstream_session, cooldown_s=settings.llm_cooldown_seconds
    )
    app.state.streams, app.state.events = _shared_state(settings)
    mcp_servers = await asyncio.to_thread(load_mcp_servers, settings.vektor_config_dir)
    app.state.mcp = McpRegistry(mcp_servers)
    app.state.mcp.start()
    tools = ToolRunner(
        app.state.mcp,
        app.state.model_router,
        max_rounds=settings.max_tool_rounds,
        timeout_s=settings.tool_call_timeout_seconds,
    )
    app.state.adapters = AdapterNotifier(
        settings.vektor_config_dir, settings.adapter_url_allowlist, app.state.http_client
    )
    await app.state.adapters.reload()
    app.state.generations = GenerationManager(
        ChatWrites(app.state.direct),
        app.state.streams,
        app.state.events,
        tools=tools,
        on_finished=app.state.adapters.notify,
    )
    app.state.streams.start(on_cancel=app.state.generations.cancel)


# Young objects between collections: a streamed answer makes thousands of short-lived
# objects; the default (700) collects many times per answer.
GC_THRESHOLD = (50_000, 50, 100)


def _settle_collector() -> None:
    """Move everything built at start out of the collector's way, and run it less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Build the process's resources, hand them out through app.state, release them."""
    settings: Settings = app.state.settings
    configure_logging(settings)
    if settings.secret_key_is_ephemeral:
        logger.warning("no SECRET_KEY set: using a per-run key; run `vektor init-config`")
    engine = create_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    app.state.engine = engine
    app.state.sessionmaker = create_sessionmaker(engine)
    app.state.direct = DirectDatabase(engine)
    app.state.session_check = SessionCheck(app.state.direct)
    app.state.key_check = KeyCheck(app.state.direct)
    app.state.rate_limiter = RateLimiter(settings.redis_url, namespace=settings.redis_namespace)
    # Model providers speak aiohttp directly (vektor.llm.http); other outgoing requests
    # (adapter notifications) use httpx's API on aiohttp's connection handling.
    app.state.upstream_session = new_session()
    app.state.http_client = HttpxAiohttpClient(
        limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
        follow_redirects=False,
    )
    await _start_answering(app, settings)
    app.state.backups = BackupManager(engine, app.state.sessionmaker, settings.backup_dir)
    app.state.started_at = time.time()
    app.state.ready = True
    restore_sigterm = _drain_on_sigterm(app)
    if settings.gc_freeze:
        _settle_collector()
    logger.info("vektor {} started (database: {})", __version__, engine.dialect.name)
    try:
        yield
    finally:
        restore_sigterm()
        app.state.ready = False  # /health/ready answers 503 from here on
        await app.state.generations.shutdown()
        await app.state.backups.shutdown()
        await app.state.streams.aclose()
        await app.state.events.aclose()
        await app.state.adapters.aclose()
        await app.state.mcp.aclose()
        await app.state.model_router.aclose()
        await app.state.http_client.aclose()
        await app.state.upstream_session.close()
        await app.state.rate_limiter.close()
        await app.state.direct.aclose()
        await engine.dispose()
        logger.info("vektor stopped")
        await flush_logs()


OPENAI_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("not_found_error", "model_not_found"),
    409: ("invalid_request_error", None),
    413: ("invalid_request_error", "request_too_large"),
    422: ("invalid_request_error", None),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    502: ("api_error", "upstream_error"),
    503: ("api_error", "service_unavailable"),
}


def _error(
    request: Request, status_code: int, detail: Any, headers: dict[str, str] | None = None
) -> JSONResponse:
    """`{"detail": …}`, or OpenAI's error shape on the `/v1` API."""
    if not request.url.path.startswith("/v1/"):
        return JSONResponse({"detail": detail}, status_code=status_code, headers=headers)
    kind, code = OPENAI_ERROR_TYPES.get(status_code, ("api_error", None))
    if isinstance(detail, list):  # validation errors
        param = ".".join(str(p) for p in detail[0]["loc"][1:]) if detail else None
        message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in detail)
    else:
        param, message = None, str(detail)
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status_code, headers=headers)


def _shared_state(settings: Settings) -> tuple[StreamStore, EventBus]:
    """Chat streams and the change feed: in this process, or on Redis when REDIS_URL is set
    so that every instance sees them."""
    if not settings.redis_url:
        return MemoryStreamStore(settings.stream_retention_seconds), MemoryEventBus()
    from redis.asyncio import Redis

    from vektor.chat.redis_streams import RedisStreamStore
    from vektor.core.redis_events import RedisEventBus

    def client() -> Redis:
        assert settings.redis_url is not None
        return Redis.from_url(settings.redis_url, socket_connect_timeout=2)

    streams = RedisStreamStore(
        client(), settings.redis_namespace, settings.stream_retention_seconds
    )
    return streams, RedisEventBus(client(), settings.redis_namespace)


def _drain_on_sigterm(app: FastAPI) -> Callable[[], None]:
    """On SIGTERM, while the server stops accepting and waits for open connections, give
    answers in progress SHUTDOWN_GRACE_SECONDS, then stop them so that their streams end
    with `done` before the connections are cut. The server's own handler still runs."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # signals can only be handled there
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)
    grace = app.state.settings.shutdown_grace_seconds

    def begin_drain() -> None:
        app.state.ready = False
        if getattr(app.state, "draining", None) is None:
            app.state.draining = asyncio.ensure_future(app.state.generations.drain(grace))

    def on_sigterm(number: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(begin_drain)
        if callable(previous):
            previous(number, frame)

    signal.signal(signal.SIGTERM, on_sigterm)

    def restore() -> None:
        if signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, previous)

    return restore


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return _error(request, exc.status_code, exc.detail, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 with location and message only: the input is not echoed (it may be a password)."""
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": err.get("type")}
        for err in exc.errors()
    ]
    return _error(request, 422, errors)


async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    """A dependency outage is a 503 with a log line, never a 500."""
    if not is_database_down(exc):
        raise exc
    logger.opt(exception=exc).warning(
        "database unavailable on {}: {}", request.url.path, type(exc).__name__
    )
    return _error(request, 503, "Database unavailable")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI application."""
    settings = settings or get_settings()
    app = FastAPI(
        title="Vektor",
        version=__version__,
        summary="Backend for AI-assistant platforms",
        lifespan=lifespan,
        responses=COMMON_RESPONSES,
        telemetry=None
        if settings.otel_enabled
        else {"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.stats = RequestStats()
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for error in (*DATABASE_DOWN_ERRORS, sa_exc.DBAPIError):
        app.add_exception_handler(error, _database_down)
    if settings.backend_cors_origins:  # otherwise no origin is allowed: nothing to add
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.backend_cors_origins,
            allow_credentials=settings.cors_credentials_enabled,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=[REQUEST_ID_HEADER, "Retry-After"],
        )
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_body_bytes,
        larger_bodies={"/sync/restore": settings.max_upload_bytes},
        stats=app.state.stats,
    )
    app.include_router(auth_router)
    app.include_router(users_router, responses=AUTH_RESPONSES)
    app.include_router(chat_router, responses=AUTH_RESPONSES)
    app.include_router(sync_router, responses=AUTH_RESPONSES)
    app.include_router(configuration_router, responses=AUTH_RESPONSES)
    app.include_router(api_keys_router, responses=AUTH_RESPONSES)
    app.include_router(compat_router)
    app.include_router(monitoring_router)
    return app
