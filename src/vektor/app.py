"""The application factory: lifespan resources, middleware, error handlers, and the routes of
`routes.py`."""

from __future__ import annotations

import asyncio
import gc
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import FrameType
from typing import TypedDict

import aiohttp
import httpx
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from loguru import logger
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from vektor import __version__
from vektor.answers.admission import StreamSlots
from vektor.answers.event_log import EventLog, MemoryEventLog
from vektor.answers.jobs import AnswerJobs
from vektor.answers.response_cache import AnswerCache
from vektor.answers.service import Pipeline
from vektor.answers.socket_watch import SocketWatch
from vektor.answers.store import AnswerStore
from vektor.answers.tools import ToolRunner
from vektor.apikeys.hot_repository import ApiKeyHotRepository
from vektor.apikeys.live_cache import LiveKeys
from vektor.auth.hot_repository import TOUCH_INTERVAL, McpPoolsHotRepository, SessionHotRepository
from vektor.auth.live_cache import LivePools, LiveSessions
from vektor.chat.hot_repository import ChatHotRepository
from vektor.configuration.egress import public_http_client
from vektor.configuration.notifier import AdapterNotifier
from vektor.core.config import Settings, get_settings
from vektor.core.credential_cache import credential_cache, revocation_epochs
from vektor.core.database import create_engine, create_sessionmaker
from vektor.core.direct import DirectDatabase
from vektor.core.error_handlers import install_error_handlers
from vektor.core.events import EventBus, MemoryEventBus
from vektor.core.logging import configure_logging, flush_logs
from vektor.core.metrics import RequestStats
from vektor.core.middleware import REQUEST_ID_HEADER, RequestContextMiddleware
from vektor.core.ratelimit import RateLimiter
from vektor.gateway.server import GatewayServer
from vektor.gateway.service import Gateway
from vektor.llm.balancer import ModelBalancer
from vektor.llm.deployments import load_deployments
from vektor.llm.http import new_session
from vektor.mcp.config import load_mcp_servers
from vektor.mcp.registry import McpRegistry
from vektor.routes import COMMON_RESPONSES, include_routes
from vektor.state import AppState
from vektor.sync.backups import BackupManager
from vektor.usage.quota import Quotas

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


class _Answering(TypedDict):
    balancer: ModelBalancer
    event_log: EventLog
    events: EventBus
    mcp: McpRegistry
    adapters: AdapterNotifier
    pipeline: Pipeline
    jobs: AnswerJobs


async def _answering(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    direct: DirectDatabase,
    http: httpx.AsyncClient,
    upstream: aiohttp.ClientSession,
    pools: LivePools,
) -> _Answering:
    """Models, MCP tools, adapters, shared event logs and change feed, and the pipeline."""
    deployments = await asyncio.to_thread(load_deployments, settings.vektor_config_dir)
    balancer = ModelBalancer(deployments, upstream, cooldown_s=settings.llm_cooldown_seconds)
    event_log, events, slots = _shared_state(settings)
    mcp_servers = await asyncio.to_thread(load_mcp_servers, settings.vektor_config_dir)
    mcp = McpRegistry(mcp_servers)
    mcp.start()
    adapters = AdapterNotifier(settings.vektor_config_dir, settings.adapter_url_allowlist, http)
    await adapters.reload()
    tools = ToolRunner(
        mcp,
        balancer,
        max_rounds=settings.max_tool_rounds,
        timeout_s=settings.tool_call_timeout_seconds,
    )
    store = AnswerStore(ChatHotRepository(direct), sessionmaker, events, notify=adapters.notify)
    quotas = Quotas.from_settings(settings, sessionmaker, direct, getattr(slots, "redis", None))
    pipeline = Pipeline(
        settings=settings,
        balancer=balancer,
        slots=slots,
        store=store,
        tools=tools,
        quotas=quotas,
        cache=AnswerCache.from_settings(settings, balancer),
        pools=pools,
    )
    jobs = AnswerJobs(pipeline, event_log)
    event_log.start(on_cancel=jobs.cancel)
    slots.start()
    return _Answering(
        balancer=balancer,
        event_log=event_log,
        events=events,
        mcp=mcp,
        adapters=adapters,
        pipeline=pipeline,
        jobs=jobs,
    )


def _backups(
    settings: Settings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    direct: DirectDatabase,
) -> BackupManager:
    """Backups and restores; on SQLite a restore's batches take turns with the answers'
    writes (`DirectDatabase.sqlite_turn`)."""
    return BackupManager(
        engine,
        sessionmaker,
        settings.backup_dir,
        keep=settings.max_backups_per_user,
        workers=settings.backup_workers,
        storage_limit=settings.max_user_storage_bytes,
        turn=direct.sqlite_turn,
    )


async def _build_state(settings: Settings, stats: RequestStats) -> AppState:
    """Every resource of the process, in the order they depend on each other."""
    engine = create_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    sessionmaker = create_sessionmaker(engine)
    direct = DirectDatabase(engine)
    # Model providers speak aiohttp directly (vektor.llm.http); other outgoing requests
    # (adapter notifications) use httpx's API on aiohttp's connection handling.
    upstream = new_session()
    http = public_http_client(settings.adapter_url_allowlist)
    revocations = revocation_epochs(settings)
    lifetime_s = TOUCH_INTERVAL.total_seconds()  # activity is still recorded every minute
    pools = LivePools(
        McpPoolsHotRepository(direct), credential_cache(settings, revocations, lifetime_s)
    )
    answering = await _answering(settings, sessionmaker, direct, http, upstream, pools)
    session_check, key_check = SessionHotRepository(direct), ApiKeyHotRepository(direct)
    limiter = RateLimiter(settings.redis_url, namespace=settings.redis_namespace)
    return AppState(
        settings=settings,
        stats=stats,
        engine=engine,
        sessionmaker=sessionmaker,
        direct=direct,
        session_check=session_check,
        key_check=key_check,
        live_sessions=LiveSessions(
            session_check, credential_cache(settings, revocations, lifetime_s)
        ),
        live_keys=LiveKeys(key_check, credential_cache(settings, revocations, lifetime_s)),
        revocations=revocations,
        sockets=SocketWatch(session_check, key_check, settings.ws_revocation_check_seconds),
        rate_limiter=limiter,
        gateway=_gateway(settings, answering["mcp"], pools, limiter),
        upstream_session=upstream,
        http_client=http,
        backups=_backups(settings, engine, sessionmaker, direct),
        started_at=time.time(),
        **answering,
    )


def _gateway(
    settings: Settings, mcp: McpRegistry, pools: LivePools, limiter: RateLimiter
) -> GatewayServer | None:
    """/mcp's server, when MCP_GATEWAY is on (the SDK loads on its first request)."""
    if not settings.mcp_gateway:
        return None
    gateway = Gateway(
        mcp,
        pools,
        limiter,
        rate_limit=settings.rate_limit_mcp,
        timeout_s=settings.tool_call_timeout_seconds,
    )
    return GatewayServer(gateway, max_body_bytes=settings.max_body_bytes)


async def _close_state(state: AppState) -> None:
    """Stop answering, then release every resource, innermost last."""
    await state.sockets.aclose()
    if state.gateway is not None:
        await state.gateway.aclose()
    await state.jobs.shutdown()
    await state.backups.shutdown()
    await state.event_log.aclose()
    await state.pipeline.slots.aclose()
    await state.pipeline.cache.aclose()
    await state.events.aclose()
    await state.adapters.aclose()
    await state.mcp.aclose()
    await state.balancer.aclose()
    await state.http_client.aclose()
    await state.upstream_session.close()
    await state.rate_limiter.close()
    await state.revocations.aclose()
    await state.direct.aclose()
    await state.engine.dispose()


# Young objects between collections: a streamed answer makes thousands of short-lived
# objects; the default (700) collects many times per answer.
GC_THRESHOLD = (50_000, 50, 100)
REDIS_COMMAND_TIMEOUT_S = 5.0  # redis-py's default: a command to a Redis gone silent fails


def _settle_collector() -> None:
    """Move everything built at start out of the collector's way, and run it less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def _lifespan(settings: Settings, stats: RequestStats) -> Lifespan:
    """The app's lifespan: build the process's resources as one `AppState` (set as
    `app.state.vektor`), hand it out, release it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings)
        if settings.secret_key_is_ephemeral:
            logger.warning("no SECRET_KEY set: using a per-run key; run `vektor init-config`")
        state = await _build_state(settings, stats)
        app.state.vektor = state
        state.ready = True
        restore_sigterm = _drain_on_sigterm(state)
        if settings.gc_freeze:
            _settle_collector()
        logger.info("vektor {} started (database: {})", __version__, state.engine.dialect.name)
        try:
            yield
        finally:
            restore_sigterm()
            state.ready = False  # /health/ready answers 503 from here on
            await _close_state(state)
            logger.info("vektor stopped")
            await flush_logs()

    return lifespan


def _shared_state(settings: Settings) -> tuple[EventLog, EventBus, StreamSlots]:
    """Answers' event logs, the change feed and the users' stream slots: in this process, or
    on Redis when REDIS_URL is set so that every instance sees them."""
    limit = settings.max_concurrent_streams
    if not settings.redis_url:
        memory_log = MemoryEventLog(settings.stream_retention_seconds)
        return memory_log, MemoryEventBus(), StreamSlots(limit)
    from redis.asyncio import Redis

    from vektor.answers.redis_admission import RedisStreamSlots
    from vektor.answers.redis_event_log import RedisEventLog
    from vektor.core.redis_batch import CommandBatch
    from vektor.core.redis_events import RedisEventBus

    def client(timeout_s: float) -> Redis:
        assert settings.redis_url is not None
        return Redis.from_url(
            settings.redis_url, socket_connect_timeout=2, socket_timeout=timeout_s
        )

    # Commands fail fast when Redis is gone; XREAD blocks for the SSE ping, so its own
    # clients wait that long and a little more before calling Redis unreachable.
    read_s = settings.sse_ping_seconds + REDIS_COMMAND_TIMEOUT_S
    ns = settings.redis_namespace
    # The change feed's entries, the slots' takes and releases and the streams' openings
    # share one batch: an answer's last entry and its slot's release go out as one pipeline.
    commands = client(REDIS_COMMAND_TIMEOUT_S)
    batch = CommandBatch(commands)
    log = RedisEventLog(
        client(REDIS_COMMAND_TIMEOUT_S),
        ns,
        settings.stream_retention_seconds,
        client(read_s),
        batch=batch,
    )
    bus = RedisEventBus(commands, ns, client(read_s), batch=batch)
    return log, bus, RedisStreamSlots(commands, ns, limit, batch=batch)


def _drain_on_sigterm(state: AppState) -> Callable[[], None]:
    """On SIGTERM, while the server stops accepting and waits for open connections, give
    answers in progress SHUTDOWN_GRACE_SECONDS, then stop them so that their streams end
    with `done` before the connections are cut. The server's own handler still runs."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # signals can only be handled there
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)
    grace = state.settings.shutdown_grace_seconds

    def begin_drain() -> None:
        state.ready = False
        if state.draining is None:
            state.draining = asyncio.ensure_future(state.jobs.drain(grace))

    def on_sigterm(number: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(begin_drain)
        if callable(previous):
            previous(number, frame)

    signal.signal(signal.SIGTERM, on_sigterm)

    def restore() -> None:
        if signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, previous)

    return restore


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI application."""
    settings = settings or get_settings()
    stats = RequestStats()
    app = FastAPI(
        title="Vektor",
        version=__version__,
        summary="Backend for AI-assistant platforms",
        lifespan=_lifespan(settings, stats),
        responses=COMMON_RESPONSES,
        docs_url=None,  # served with security headers by monitoring's router
        redoc_url=None,
        telemetry=None
        if settings.otel_enabled
        else {"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
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
        stats=stats,
    )
    include_routes(app, mcp_gateway=settings.mcp_gateway)
    return app
