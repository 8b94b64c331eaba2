"""The response cache (SPEC §3.11) where the pipeline opens a deployment: a hit replays a
kept answer instead of asking a deployment; a miss asks one through a single flight, which
identical requests arriving meanwhile follow, and keeps its answer when it ends well.

Which requests qualify and their keys: `cache_keys.py`; entries and the memory store:
`cache.py`; the Redis store: `redis_cache.py`; flights: `single_flight.py`.
"""

from __future__ import annotations

from loguru import logger

from vektor.answers.cache import CachedAnswer, MemoryResponseStore, ResponseStore
from vektor.answers.cache_keys import CachePolicy, cache_key, wants_cache
from vektor.answers.request import AnswerRequest
from vektor.answers.single_flight import Flight
from vektor.core.config import Settings
from vektor.core.errors import NotFound
from vektor.core.metrics import CACHE_REQUESTS
from vektor.llm.balancer import Deployment, ModelBalancer, OpenedStream
from vektor.llm.base import Finish, GenerationRequest, ProviderEvent, TextDelta, ToolCall, Usage

REDIS_TIMEOUT_S = 1.0  # a Redis gone silent delays a request by this much, then it is a miss


class AnswerCache:
    """Kept answers and the flights in progress; `store` None is RESPONSE_CACHE off."""

    def __init__(self, store: ResponseStore | None, balancer: ModelBalancer) -> None:
        self.store = store
        self.balancer = balancer
        self.flights: dict[str, Flight] = {}

    @classmethod
    def from_settings(cls, settings: Settings, balancer: ModelBalancer) -> AnswerCache:
        """Off, in memory, or on Redis when REDIS_URL is set."""
        if not settings.response_cache:
            return cls(None, balancer)
        if not settings.redis_url:
            memory = MemoryResponseStore(
                settings.response_cache_max_entries, settings.response_cache_max_bytes
            )
            return cls(memory, balancer)
        from redis.asyncio import Redis

        from vektor.answers.redis_cache import RedisResponseStore

        redis = Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=REDIS_TIMEOUT_S,
            socket_timeout=REDIS_TIMEOUT_S,
        )
        return cls(RedisResponseStore(redis, settings.redis_namespace), balancer)

    def _lookup(self, request: AnswerRequest, generation: GenerationRequest) -> tuple[str, int]:
        """The request's key and TTL; ("", 0) when the cache does not apply."""
        if self.store is None:
            return "", 0
        deployments = self.balancer.deployments.get(request.model, [])
        policy = CachePolicy.of([d.config for d in deployments])
        if policy.ttl_s <= 0:
            return "", 0
        if not wants_cache(request.temperature, request.cache):
            CACHE_REQUESTS.labels("bypass").inc()
            return "", 0
        return cache_key(request.model, generation, policy.scope, request.user_id), policy.ttl_s

    async def open(
        self, request: AnswerRequest, generation: GenerationRequest
    ) -> tuple[OpenedStream, bool]:
        """The answer's stream, and whether it comes from the cache (a kept answer, or a
        flight another request started)."""

        key, ttl = self._lookup(request, generation)
        if not key:
            return await self.balancer.open(request.model, generation), False
        assert self.store is not None
        raw = await self.store.get(key)
        entry = CachedAnswer.decode(raw) if raw is not None else None
        if entry is not None:
            CACHE_REQUESTS.labels("hit").inc()
            deployment = self._deployment(request.model, entry.deployment)
            return OpenedStream(deployment=deployment, first=None, rest=entry.replay()), True
        flight = self.flights.get(key)
        shared = flight is not None and flight.joinable
        if flight is None or not shared:
            flight = self._fly(key, ttl, request, generation)
        CACHE_REQUESTS.labels("hit" if shared else "miss").inc()
        subscription = flight.subscribe()
        try:
            deployment = await flight.deployment()
        except BaseException:
            await subscription.aclose()
            raise
        return OpenedStream(deployment=deployment, first=None, rest=subscription), shared

    def _fly(
        self, key: str, ttl: int, request: AnswerRequest, generation: GenerationRequest
    ) -> Flight:
        """Start the upstream request that identical requests will follow."""

        async def keep(deployment: Deployment, events: list[ProviderEvent]) -> None:
            entry = _entry(deployment, events)
            if entry is not None and self.store is not None:
                await self.store.put(key, entry.encode(), ttl)

        flight = Flight(lambda: self.balancer.open(request.model, generation), keep, name=key[:12])
        self.flights[key] = flight

        def forget() -> None:
            if self.flights.get(key) is flight:
                del self.flights[key]

        flight.when_done(forget)
        return flight

    def _deployment(self, model: str, key: str) -> Deployment:
        """The deployment that made a kept answer, or (gone since) the model's first."""
        group = self.balancer.deployments.get(model)
        if not group:  # removed by a reload since the request was checked
            raise NotFound(f"Unknown model '{model}'")
        return next((d for d in group if d.key == key), group[0])

    async def clear(self) -> int:
        """Empty the cache (every instance's, on Redis); how many answers it held."""
        if self.store is None:
            return 0
        removed = await self.store.clear()
        logger.info("response cache emptied: {} answers", removed)
        return removed

    async def aclose(self) -> None:
        """Release the store's connections."""
        if self.store is not None:
            await self.store.aclose()


def _entry(deployment: Deployment, events: list[ProviderEvent]) -> CachedAnswer | None:
    """What is kept of an upstream answer; None for one that called tools."""
    pieces: list[str] = []
    usage: Usage | None = None
    finish = "stop"
    for event in events:
        if isinstance(event, TextDelta):
            pieces.append(event.content)
        elif isinstance(event, Usage):
            usage = event
        elif isinstance(event, Finish):
            finish = event.reason
        elif isinstance(event, ToolCall):
            return None
    if finish == "tool_calls":
        return None
    return CachedAnswer(
        pieces=tuple(pieces),
        finish_reason=finish,
        deployment=deployment.key,
        prompt_tokens=usage.prompt_tokens if usage else None,
        completion_tokens=usage.completion_tokens if usage else None,
    )
