"""The providers' HTTP: aiohttp itself, with one shared session (and its keep-alive pool).

Every streamed answer reads twenty-odd chunks through this, so it sits on the hot path:
httpx's layers over the same aiohttp transport cost about as much CPU per answer as
aiohttp's own work, so providers do not use them.
"""

from __future__ import annotations

import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar, Self

import aiohttp
import orjson
from yarl import URL

from vektor.llm.base import ProviderError

if TYPE_CHECKING:
    from vektor.llm.config import DeploymentConfig
    from vektor.llm.providers import ProviderContext

# Statuses after which another deployment may well succeed.
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
ERROR_BODY_LIMIT = 2048


def new_session() -> aiohttp.ClientSession:
    """The session every provider shares. Proxies come from `env_proxy`, not `trust_env`:
    with it aiohttp reads the environment and ~/.netrc in a worker thread on every request."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1000, limit_per_host=0, keepalive_timeout=30)
    )


@lru_cache(maxsize=256)
def env_proxy(scheme: str, host: str) -> URL | None:
    """The proxy (credentials included) from HTTP_PROXY / HTTPS_PROXY / ALL_PROXY for a host
    that NO_PROXY does not exempt; read once per upstream host, so a change needs a restart."""
    if urllib.request.proxy_bypass(host):
        return None
    proxies = urllib.request.getproxies()
    found = proxies.get(scheme) or proxies.get("all")
    return URL(found) if found else None


def upstream_timeout(timeout_s: float) -> aiohttp.ClientTimeout:
    """Connect fast. Reads have no timeout here: the router bounds the wait for the first
    event and then for each next one (`ModelBalancer.open`, `OpenedStream.events`). aiohttp's
    `sock_read` would re-arm an event-loop timer on every packet of every answer."""
    return aiohttp.ClientTimeout(
        total=None,
        connect=timeout_s,
        sock_connect=min(5.0, timeout_s),
        sock_read=None,
    )


@asynccontextmanager
async def post_json(
    session: aiohttp.ClientSession,
    url: str | URL,
    body: dict[str, Any] | bytes,
    headers: dict[str, str],
    timeouts: aiohttp.ClientTimeout,
) -> AsyncIterator[aiohttp.ClientResponse]:
    """POST a JSON body (an object, or its bytes when they were signed); an error status, a
    failure to connect and a timeout or a broken connection while reading are
    ProviderErrors (the last two retryable). A URL object is sent as it is encoded."""
    target = url if isinstance(url, URL) else URL(url)
    if target.user is not None and "Authorization" in headers:
        # The deployment's key wins over credentials in its URL: aiohttp refuses both.
        target = target.with_user(None)
    try:
        async with session.post(
            target,
            data=body if isinstance(body, bytes) else orjson.dumps(body),
            headers={**headers, "Content-Type": "application/json"},
            timeout=timeouts,
            allow_redirects=False,
            proxy=env_proxy(target.scheme, target.host or ""),
        ) as response:
            if response.status >= 400:
                raise await _status_error(response)
            yield response
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ProviderError(f"upstream unreachable: {type(exc).__name__}", retryable=True) from exc


async def _status_error(response: aiohttp.ClientResponse) -> ProviderError:
    """An error status, with at most a little of its body."""
    body = b""
    async for chunk in response.content.iter_any():
        body += chunk
        if len(body) >= ERROR_BODY_LIMIT:
            break
    return ProviderError(
        f"upstream answered {response.status}: {body[:200].decode('utf-8', 'replace')}",
        retryable=response.status in RETRYABLE_STATUSES,
        status=response.status,
    )


def content_type(response: aiohttp.ClientResponse) -> str:
    """The response's media type, lower-case, without parameters."""
    return response.headers.get("content-type", "").partition(";")[0].strip().lower()


class HttpProvider:
    """What every provider that speaks HTTP on the shared session has: its deployment's
    entry, the session, the entry's base URL (or the provider's public one) and timeout."""

    default_context_window: ClassVar[int | None] = None
    required_fields: ClassVar[tuple[str, ...]] = ()
    default_base_url: ClassVar[str] = ""

    @classmethod
    def build(cls, config: DeploymentConfig, context: ProviderContext) -> Self:
        """A provider on the shared HTTP session."""
        return cls(config, context.session)

    def __init__(self, config: DeploymentConfig, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.session = session
        self.base_url = (config.base_url or self.default_base_url).rstrip("/")
        self.timeout = upstream_timeout(config.timeout_s)
