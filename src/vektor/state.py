"""The process's resources, built once in the app's lifespan (`app.py`) and read by the
HTTP edge (routes and dependencies) through `app_state`. Nothing stateful exists at import
time; everything below is created, and closed, by the lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.requests import HTTPConnection

if TYPE_CHECKING:
    import asyncio

    import aiohttp
    import httpx
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

    from vektor.answers.event_log import EventLog
    from vektor.answers.jobs import AnswerJobs
    from vektor.answers.service import Pipeline
    from vektor.answers.socket_watch import SocketWatch
    from vektor.apikeys.hot_repository import ApiKeyHotRepository
    from vektor.apikeys.live_cache import LiveKeys
    from vektor.auth.hot_repository import SessionHotRepository
    from vektor.auth.live_cache import LiveSessions
    from vektor.configuration.notifier import AdapterNotifier
    from vektor.core.config import Settings
    from vektor.core.credential_cache import Epochs
    from vektor.core.direct import DirectDatabase
    from vektor.core.events import EventBus
    from vektor.core.metrics import RequestStats
    from vektor.core.ratelimit import RateLimiter
    from vektor.gateway.server import GatewayServer
    from vektor.llm.balancer import ModelBalancer
    from vektor.mcp.registry import McpRegistry
    from vektor.sync.backups import BackupManager


@dataclass(eq=False)
class AppState:
    """Everything the lifespan builds, typed."""

    settings: Settings
    stats: RequestStats
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    direct: DirectDatabase
    session_check: SessionHotRepository
    key_check: ApiKeyHotRepository
    live_sessions: LiveSessions  # the session check through the per-process cache
    live_keys: LiveKeys
    revocations: Epochs  # bumped after every committed revocation (auth.dependencies)
    rate_limiter: RateLimiter
    upstream_session: aiohttp.ClientSession
    http_client: httpx.AsyncClient
    balancer: ModelBalancer
    events: EventBus
    event_log: EventLog
    mcp: McpRegistry
    adapters: AdapterNotifier
    pipeline: Pipeline
    jobs: AnswerJobs
    sockets: SocketWatch
    backups: BackupManager
    started_at: float
    gateway: GatewayServer | None = None  # /mcp, when MCP_GATEWAY is on
    ready: bool = False  # /health/ready answers 503 until started and once shutting down
    draining: asyncio.Future[None] | None = None


def app_state(request: HTTPConnection) -> AppState:
    """The resources of the app serving this request (or WebSocket)."""
    return state_of(request.app)


def state_of(app: FastAPI) -> AppState:
    """The resources of a running app (set by its lifespan)."""
    state: AppState = app.state.vektor
    return state
