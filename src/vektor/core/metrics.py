"""Prometheus metrics (prometheus-client) and the in-process figures of /api/status.

Under Gunicorn, set PROMETHEUS_MULTIPROC_DIR (`vektor serve --workers N` does) and every
worker writes its samples to files there; /metrics then aggregates all workers.
"""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict, deque
from decimal import Decimal
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

UNMATCHED = "unmatched"  # requests no route matched: one label, not one per path
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

HTTP_REQUESTS = Counter(
    "vektor_http_requests",
    "HTTP requests by route template, method and status",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "vektor_http_request_duration_seconds",
    "Time to answer an HTTP request (streams: whole)",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
ACTIVE_STREAMS = Gauge(
    "vektor_active_streams",
    "Answers being generated (chat and /v1 streams)",
    multiprocess_mode="livesum",
)
TOKENS = Counter(
    "vektor_tokens", "Tokens by model and kind (prompt or completion)", ["model", "kind"]
)
COST = Counter("vektor_cost_usd", "USD spent by model, at the deployments' prices", ["model"])
LLM_REQUESTS = Counter(
    "vektor_llm_requests",
    "Attempts on LLM deployments by outcome",
    ["model", "deployment", "outcome"],
)
LLM_FIRST_TOKEN = Histogram(
    "vektor_llm_first_token_seconds",
    "Time to the first event of a deployment",
    ["model", "deployment"],
    buckets=LATENCY_BUCKETS,
)
MCP_CALLS = Counter(
    "vektor_mcp_calls", "Tool calls on MCP replicas by outcome", ["pool", "replica", "outcome"]
)
MCP_LATENCY = Histogram(
    "vektor_mcp_call_seconds",
    "Duration of successful MCP tool calls",
    ["pool", "replica"],
    buckets=LATENCY_BUCKETS,
)
CACHE_REQUESTS = Counter(
    "vektor_cache_requests",
    "Requests to models that use the response cache: hit, miss or bypass",
    ["result"],
)
GATEWAY_CALLS = Counter(
    "vektor_mcp_gateway_calls",
    "Tool calls through /mcp by pool and result (ok, tool_error, refused)",
    ["pool", "result"],
)
# Per user: one series per user who called through /mcp, named by the user's id (no secret).
GATEWAY_USER_CALLS = Counter(
    "vektor_mcp_gateway_user_calls", "Tool calls through /mcp by user id", ["user"]
)
RATE_LIMITED = Counter(
    "vektor_rate_limit_rejections", "Requests refused by a rate limit", ["scope"]
)
QUOTA_REJECTIONS = Counter(
    "vektor_quota_rejections", "Answers refused because a quota was used up", ["limit"]
)


STREAMS = {"active": 0}  # this process's answers in progress (chat and /v1)


def stream_started() -> None:
    """An answer began."""
    ACTIVE_STREAMS.inc()
    STREAMS["active"] += 1


def stream_ended() -> None:
    """An answer ended."""
    ACTIVE_STREAMS.dec()
    STREAMS["active"] -= 1


TOKEN_TOTALS = {"in": 0, "out": 0}  # this process's, for /api/status and the dashboard


def count_tokens(model: str, prompt: int, completion: int, cost: Decimal) -> None:
    """Tokens and cost of one answer, into the Prometheus counters (a float there: the
    exact sums are the usage rows') and this process's totals."""
    TOKENS.labels(model, "prompt").inc(prompt)
    TOKENS.labels(model, "completion").inc(completion)
    COST.labels(model).inc(float(cost))
    TOKEN_TOTALS["in"] += prompt
    TOKEN_TOTALS["out"] += completion


QUOTA_REFUSALS: dict[str, int] = {}  # this process's, by limit, for the dashboard


def count_quota_rejection(limit: str) -> None:
    """An answer refused by a quota."""
    QUOTA_REJECTIONS.labels(limit).inc()
    QUOTA_REFUSALS[limit] = QUOTA_REFUSALS.get(limit, 0) + 1


def exposition() -> tuple[bytes, str]:
    """The text exposition: this process's registry, or every worker's in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class RequestStats:
    """Recent requests of this process, for /api/status: counts and latency percentiles."""

    def __init__(self, window: int = 1000) -> None:
        self.started = time.time()
        self.requests = 0
        self.errors = 0  # 5xx answers
        self.by_route: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=window))

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request (also into the Prometheus metrics)."""
        self.requests += 1
        if status >= 500:
            self.errors += 1
        self.by_route[f"{method} {route}"].append(seconds)
        HTTP_REQUESTS.labels(method, route, str(status)).inc()
        HTTP_LATENCY.labels(method, route).observe(seconds)

    def summary(self) -> dict[str, Any]:
        """Uptime, totals and per-route p50/p95/p99 in milliseconds."""
        routes = {}
        for key, samples in sorted(self.by_route.items()):
            ordered = sorted(samples)

            def rank(q: float, ordered: list[float] = ordered) -> float:
                """Nearest-rank percentile, in milliseconds."""
                return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000, 2)

            routes[key] = {
                "count": len(ordered),
                "p50_ms": rank(0.50),
                "p95_ms": rank(0.95),
                "p99_ms": rank(0.99),
            }
        return {
            "uptime_s": round(time.time() - self.started, 1),
            "requests": self.requests,
            "errors": self.errors,
            "routes": routes,
        }
