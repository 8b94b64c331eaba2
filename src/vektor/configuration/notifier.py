"""Adapters of kind `webhook` or `slack` receive notifications of chosen events, off the
request path: a background task per delivery, a timeout, retries with backoff."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from loguru import logger
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from vektor.configuration.adapters import check_form, load_adapters
from vektor.core.errors import AppError
from vektor.core.secrets import mask_text

DEFAULT_EVENTS = ("conversation.finished",)
DELIVERY_KINDS = ("webhook", "slack")


class RetryableDelivery(Exception):
    """The receiver was unreachable or answered 429/5xx."""


class AdapterNotifier:
    """Delivers events to the webhook and Slack adapters of the config folder."""

    def __init__(
        self, config_dir: Path, allow: list[str], http: httpx.AsyncClient, attempts: int = 3
    ) -> None:
        self.config_dir = config_dir
        self.allow = allow
        self.http = http
        self.attempts = attempts
        self.adapters: dict[str, dict[str, Any]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.delivered = 0
        self.failed = 0

    async def reload(self) -> None:
        """Read the adapters folder again."""
        self.adapters = await asyncio.to_thread(load_adapters, self.config_dir)

    def notify(self, event: str, data: dict[str, Any]) -> None:
        """Schedule a delivery to every adapter that wants `event`; never blocks or raises."""
        for name, settings in self.adapters.items():
            if settings.get("kind") not in DELIVERY_KINDS or not settings.get("url"):
                continue
            if event not in settings.get("events", DEFAULT_EVENTS):
                continue
            task = asyncio.create_task(self._deliver(name, settings, event, data))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _deliver(
        self, name: str, settings: dict[str, Any], event: str, data: dict[str, Any]
    ) -> None:
        url = str(settings["url"])
        at = datetime.now(UTC).isoformat()
        if settings.get("kind") == "slack":
            body: dict[str, Any] = {"text": f"Vektor: {event} ({data.get('model', '')})"}
        else:
            body = {"event": event, "at": at, **data}
        timeout = float(settings.get("timeout_s", 5))
        try:
            # The address is checked by the client's connector on the connection it makes
            # (egress.PublicOnlyConnector): a name may resolve elsewhere than when saved.
            check_form(url)
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential(multiplier=0.2, max=2),
                retry=retry_if_exception_type(RetryableDelivery),
                reraise=True,
            ):
                with attempt:
                    await self._post(url, body, timeout, settings.get("headers") or {})
        except (RetryableDelivery, AppError, httpx.HTTPError) as exc:
            self.failed += 1
            # Named by the adapter, never by its URL (a webhook URL is a secret).
            reason = mask_text(str(exc)) or type(exc).__name__
            logger.warning("adapter {} did not take {}: {}", name, event, reason)
            return
        self.delivered += 1

    async def _post(
        self, url: str, body: dict[str, Any], limit_s: float, headers: dict[str, str]
    ) -> None:
        try:
            response = await self.http.post(
                url,
                json=body,
                timeout=limit_s,
                headers={str(k): str(v) for k, v in headers.items()},
            )
        except httpx.TransportError as exc:
            raise RetryableDelivery(type(exc).__name__) from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise RetryableDelivery(f"answered {response.status_code}")
        if response.status_code >= 400:
            raise AppError(f"answered {response.status_code}")

    async def aclose(self) -> None:
        """Give deliveries in flight a moment, then stop them."""
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=2)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
