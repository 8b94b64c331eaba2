"""Dependencies every domain uses: settings, the request's database session, limits.

Dependencies that only read the app's state are `async def`: FastAPI runs a plain `def`
dependency in a worker thread, a thread hop per dependency per request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Protocol

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vektor.core.config import Settings
from vektor.core.database import session_scope
from vektor.core.events import EventBus
from vektor.core.middleware import request_context
from vektor.core.net import client_address
from vektor.core.ratelimit import RateLimiter


class CoreState(Protocol):
    """The part of the app's state (`vektor.state.AppState`) that core dependencies read."""

    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    rate_limiter: RateLimiter
    events: EventBus


def core_state(request: Request) -> CoreState:
    """The app's state, as far as core knows it."""
    state: CoreState = request.app.state.vektor
    return state


async def get_settings_dep(request: Request) -> Settings:
    """The settings the app was built with."""
    return core_state(request).settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session per request, committed before the response is sent."""
    async for session in session_scope(core_state(request).sessionmaker):
        yield session


async def get_rate_limiter(request: Request) -> RateLimiter:
    """The app's rate limiter."""
    return core_state(request).rate_limiter


async def get_events(request: Request) -> EventBus:
    """The app's change feed."""
    return core_state(request).events


async def get_client_address(request: Request, settings: SettingsDep) -> str:
    """The caller's address, believing X-Forwarded-For only from trusted proxies."""
    peer = request.client.host if request.client else None
    address = client_address(peer, request.headers.get("x-forwarded-for"), settings.trusted_proxies)
    request_context(request.scope)["client"] = address
    return address


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
RateLimiterDep = Annotated[RateLimiter, Depends(get_rate_limiter)]
ClientAddress = Annotated[str, Depends(get_client_address)]
EventsDep = Annotated[EventBus, Depends(get_events)]
