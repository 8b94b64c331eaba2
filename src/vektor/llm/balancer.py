"""Load balancing over the deployments of each public model: weighted choice, failover
before the first token and in the middle of an answer (`take_over`), a circuit breaker per
deployment, and per-deployment counters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from loguru import logger

from vektor.core.balancing import weighted_order
from vektor.core.breaker import CircuitBreaker
from vektor.core.errors import NotFound, Unavailable, UpstreamError
from vektor.core.metrics import LLM_FIRST_TOKEN, LLM_REQUESTS
from vektor.core.secrets import mask_text, mask_url
from vektor.llm.base import GenerationRequest, Provider, ProviderError, ProviderEvent
from vektor.llm.config import DeploymentConfig
from vektor.llm.continuation import continuation_request
from vektor.llm.providers import ProviderContext, provider_class
from vektor.llm.providers.local import LocalModel

DEFAULT_CONTEXT_WINDOW = 128_000


@dataclass
class Deployment:
    """One deployment, its provider and its health."""

    config: DeploymentConfig
    provider: Provider
    key: str
    context_window: int | None = None  # the entry's, else its provider's default
    breaker: CircuitBreaker = field(default_factory=lambda: CircuitBreaker(base_s=5.0))
    requests: int = 0
    failures: int = 0
    last_error: str | None = None
    first_token_ms: list[float] = field(default_factory=list)

    @property
    def prefills(self) -> bool:
        """Whether it is asked to continue an answer by prefill (else by instruction)."""
        if self.config.continuation is not None:
            return self.config.continuation == "prefill"
        return bool(getattr(self.provider, "continues_prefill", False))

    def available(self, now: float) -> bool:
        """Not cooling down, and not being tested by another request (half-open)."""
        return self.breaker.available(now)

    def record_success(self, first_token_s: float) -> None:
        """A stream started: close the breaker."""
        LLM_REQUESTS.labels(self.config.name, self.key, "success").inc()
        LLM_FIRST_TOKEN.labels(self.config.name, self.key).observe(first_token_s)
        self.breaker.record_success()
        self.first_token_ms.append(first_token_s * 1000)
        del self.first_token_ms[:-200]

    def record_failure(self, error: str, now: float) -> None:
        """Open the breaker for a growing cooldown."""
        LLM_REQUESTS.labels(self.config.name, self.key, "failure").inc()
        self.failures += 1
        self.last_error = mask_text(error)
        self.breaker.record_failure(now)

    def status(self, now: float) -> dict[str, Any]:
        """Counters for monitoring."""
        latencies = sorted(self.first_token_ms)
        return {
            "deployment": self.key,
            "provider": self.config.provider,
            "base_url": mask_url(self.config.base_url) if self.config.base_url else None,
            "weight": self.config.weight,
            "state": "healthy" if self.available(now) else "cooldown",
            "requests": self.requests,
            "failures": self.failures,
            "last_error": self.last_error,
            "first_token_ms_p50": latencies[len(latencies) // 2] if latencies else None,
        }


class _IdleWatchdog:
    """Cancels the task when one wait lasts `limit` seconds. One timer for the whole stream,
    re-armed only when it fires, instead of a timeout set up and torn down per event."""

    def __init__(self, limit: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        self.limit = limit
        self.waiting = False
        self.since = self.loop.time()
        self.fired = False
        self.handle = self.loop.call_at(self.since + limit, self._check)

    def _check(self) -> None:
        now = self.loop.time()
        if self.waiting and now >= self.since + self.limit and self.task is not None:
            self.fired = True
            self.task.cancel()
            return
        start = self.since if self.waiting else now
        self.handle = self.loop.call_at(start + self.limit, self._check)

    def expired(self) -> bool:
        """Whether the cancellation being handled is this watchdog's (and only its)."""
        return self.fired and self.task is not None and self.task.uncancel() == 0

    def stop(self) -> None:
        self.handle.cancel()


@dataclass
class OpenedStream:
    """A generation that has produced its first event on some deployment."""

    deployment: Deployment
    first: ProviderEvent | None
    rest: AsyncIterator[ProviderEvent]

    async def events(self) -> AsyncIterator[ProviderEvent]:
        """Every event, the first one included. An upstream that sends no complete event for
        the deployment's `timeout_s` (stalled, or dripping bytes) fails the stream."""
        if self.first is not None:
            yield self.first
        limit = self.deployment.config.timeout_s
        watchdog = _IdleWatchdog(limit)
        try:
            while True:
                watchdog.waiting = True
                watchdog.since = watchdog.loop.time()
                try:
                    event = await anext(self.rest)
                except StopAsyncIteration:
                    return
                except asyncio.CancelledError:
                    if watchdog.expired():
                        raise ProviderError(
                            f"upstream stalled: no event for {limit:g} s", retryable=True
                        ) from None
                    raise
                finally:
                    watchdog.waiting = False
                yield event
        finally:
            watchdog.stop()

    async def aclose(self) -> None:
        """Close the upstream request."""
        closer = getattr(self.rest, "aclose", None)
        if closer is not None:
            await closer()


class ModelBalancer:
    """Public model name → deployments."""

    def __init__(
        self,
        configs: list[DeploymentConfig],
        session: aiohttp.ClientSession,
        *,
        cooldown_s: float = 5.0,
    ) -> None:
        self.session = session
        self.cooldown_s = cooldown_s
        self.local_model = LocalModel()
        self.context = ProviderContext(session=session, local_model=self.local_model)
        self.deployments: dict[str, list[Deployment]] = {}
        self.reload(configs)

    def reload(self, configs: list[DeploymentConfig]) -> None:
        """Replace the deployments; counters of unchanged deployments are kept."""
        previous = {d.key: d for group in self.deployments.values() for d in group}
        grouped: dict[str, list[Deployment]] = {}
        for config in configs:
            # `<name>#<index>`: the base URL may carry a key, and the key names the
            # deployment in metrics, logs and /api/status.
            key = f"{config.name}#{len(grouped.get(config.name, []))}"
            kept = previous.get(key)
            if kept is not None and kept.config == config:
                grouped.setdefault(config.name, []).append(kept)
                continue
            kind = provider_class(config.provider)
            deployment = Deployment(
                config=config,
                provider=kind.build(config, self.context),
                key=key,
                context_window=config.context_window or kind.default_context_window,
                breaker=CircuitBreaker(base_s=self.cooldown_s),
            )
            grouped.setdefault(config.name, []).append(deployment)
        self.deployments = grouped

    def models(self) -> list[dict[str, Any]]:
        """One row per public model."""
        rows = []
        for name, group in self.deployments.items():
            first = group[0].config
            rows.append(
                {
                    "name": name,
                    "description": next(
                        (d.config.description for d in group if d.config.description), None
                    ),
                    "provider": first.provider,
                    "streaming": any(d.config.streaming for d in group),
                }
            )
        return rows

    def has_model(self, name: str) -> bool:
        """Whether a public model of that name exists."""
        return name in self.deployments

    def max_tokens(self, name: str) -> int | None:
        """The smallest answer cap among the model's deployments, if any sets one."""
        caps = [d.config.max_tokens for d in self.deployments.get(name, []) if d.config.max_tokens]
        return min(caps) if caps else None

    def context_window(self, name: str) -> int:
        """The smallest context window among the model's deployments."""
        known = [d.context_window for d in self.deployments.get(name, []) if d.context_window]
        return min(known) if known else DEFAULT_CONTEXT_WINDOW

    def _candidates(self, name: str) -> list[Deployment]:
        """Available deployments in weighted random order; standbys (weight 0) last."""
        now = time.monotonic()
        group = [d for d in self.deployments.get(name, []) if d.available(now)]
        return weighted_order(group, lambda d: d.config.weight)

    async def open(self, name: str, request: GenerationRequest) -> OpenedStream:
        """Start a generation on some deployment; fail over until one produces an event."""
        if name not in self.deployments:
            raise NotFound(f"Unknown model '{name}'")
        candidates = self._candidates(name)
        if not candidates:
            raise self._unavailable(name)
        opened = await self._first_of(candidates, lambda _deployment: request)
        if opened is None:
            raise self._unavailable(name)
        return opened

    async def take_over(
        self, name: str, request: GenerationRequest, partial: str, failed: OpenedStream, error: str
    ) -> OpenedStream | None:
        """After `failed` died in the middle of an answer, start another deployment of the
        model on `request` plus the `partial` answer to continue; None when none can (the
        model has no other deployment available, or failover is off on either side)."""
        dead = failed.deployment
        if not dead.config.mid_stream_failover:
            return None
        candidates = [
            d for d in self._candidates(name) if d is not dead and d.config.mid_stream_failover
        ]
        if not candidates:
            return None
        message = mask_text(error)
        dead.record_failure(message, time.monotonic())
        logger.warning("deployment {} failed mid-answer: {}", dead.key, message)

        def continuing(deployment: Deployment) -> GenerationRequest:
            return continuation_request(request, partial, prefill=deployment.prefills)

        try:
            return await self._first_of(candidates, continuing)
        except UpstreamError as exc:
            logger.warning("no deployment of {} continued the answer: {}", name, exc)
            return None

    async def _first_of(
        self,
        candidates: list[Deployment],
        request_for: Callable[[Deployment], GenerationRequest],
    ) -> OpenedStream | None:
        """The stream of the first candidate that produces an event, in order; None if every
        one failed in a way worth failing over from."""
        for deployment in candidates:
            breaker = deployment.breaker
            if not breaker.acquire(time.monotonic()):
                continue  # another request took the half-open probe since the choice
            probe = breaker.probing
            try:
                opened = await self._attempt(deployment, request_for(deployment))
            finally:
                # However the attempt ended (a refusal, a cancellation), it no longer tests
                # the deployment: a probe left set would keep it out of rotation for good.
                if probe:
                    breaker.release()
            if opened is not None:
                return opened
        return None

    async def _attempt(
        self, deployment: Deployment, request: GenerationRequest
    ) -> OpenedStream | None:
        """One try on one deployment: its stream, or None after a failure worth failing
        over from. A request the upstream refuses is an UpstreamError at once."""
        deployment.requests += 1
        started = time.monotonic()
        iterator = deployment.provider.stream(request).__aiter__()
        try:
            async with asyncio.timeout(deployment.config.timeout_s):
                first: ProviderEvent | None = await iterator.__anext__()
        except StopAsyncIteration:
            first = None
        except (ProviderError, TimeoutError) as exc:
            await _close(iterator)
            message = mask_text(str(exc) or type(exc).__name__)
            retryable = isinstance(exc, TimeoutError) or exc.retryable
            if not retryable:
                raise UpstreamError(f"Upstream refused the request: {message}") from exc
            deployment.record_failure(message, time.monotonic())
            logger.warning("deployment {} failed before first token: {}", deployment.key, message)
            return None
        deployment.record_success(time.monotonic() - started)
        return OpenedStream(deployment=deployment, first=first, rest=iterator)

    def _unavailable(self, name: str) -> Unavailable:
        now = time.monotonic()
        deployments = self.deployments[name]
        wait = min((d.breaker.cooldown_until - now for d in deployments), default=1.0)
        return Unavailable(
            f"No deployment of '{name}' is available",
            headers={"Retry-After": str(max(1, int(wait) + 1))},
        )

    def public_configs(self) -> list[dict[str, Any]]:
        """Every deployment's configuration, secrets masked, with its live state."""
        now = time.monotonic()
        return [
            {**d.config.public(), "state": "healthy" if d.available(now) else "cooldown"}
            for group in self.deployments.values()
            for d in group
        ]

    def status(self) -> dict[str, list[dict[str, Any]]]:
        """Per-model, per-deployment counters."""
        now = time.monotonic()
        return {name: [d.status(now) for d in group] for name, group in self.deployments.items()}

    async def aclose(self) -> None:
        """Free the local model."""
        self.local_model.close()


async def _close(iterator: AsyncIterator[ProviderEvent]) -> None:
    closer = getattr(iterator, "aclose", None)
    if closer is not None:
        await closer()
