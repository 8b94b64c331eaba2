"""The response cache: time to first content of a cached answer against a fresh one and
against the upstream itself, in one run.

Starts the scripted upstream (20 chunks, 10 ms apart, as `bench.stream`) and one Vektor
server with RESPONSE_CACHE=on (in memory, or on Redis with `--redis`), registers one user
per client, and measures, alternately at each concurrency:

- `direct`: the upstream itself;
- `fresh`: /chat/stream on a model without caching (every answer asks the upstream);
- `cached`: /chat/stream at temperature 0 on the same upstream script with
  `cache_ttl_s` and `cache_scope: global` (filled once during the warm-up, then all hits);
- `v1-fresh` and `v1-cached`: the same through /v1/chat/completions, streamed.

Reports medians of the repeats, the Vektor process's CPU per answer, and the ratios of the
cached rows to the fresh and direct ones of the same run.

    uv run python -m bench.cache [--database postgresql] [--concurrency 1 50]
        [--repeats 3] [--streams 300] [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import uuid
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.common import scripted_upstream, vektor_server
from bench.load import (
    OPENAI_DONE,
    OPENAI_FIRST,
    VEKTOR_DONE,
    VEKTOR_FIRST,
    Target,
    http_request,
    make_users,
    run_async,
    run_load,
)
from bench.report import loop_seconds
from bench.sections import cache_ratios
from bench.stream import SCRIPT, Result, _median, print_table

MESSAGES = [{"role": "user", "content": "Hola"}]


def _drop_namespace(url: str, namespace: str) -> None:
    """Delete the run's keys from Redis."""
    from redis import Redis

    client = Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{namespace}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _deployments(up_port: int) -> list[dict[str, Any]]:
    base = {"provider": "openai", "model": SCRIPT, "base_url": f"http://127.0.0.1:{up_port}/v1"}
    return [
        {"name": "fresh", **base, "timeout_s": 30},
        {"name": "cached", **base, "timeout_s": 30, "cache_ttl_s": 3600, "cache_scope": "global"},
    ]


def _targets(
    up: tuple[int, int], vektor: tuple[int, int], users: list[tuple[str, str]]
) -> list[Target]:
    """direct, fresh, cached, v1-fresh, v1-cached; one request per client."""
    direct = http_request(
        "/v1/chat/completions", {"model": SCRIPT, "stream": True, "messages": MESSAGES}
    )
    targets = [
        Target("direct", up[0], True, OPENAI_FIRST, OPENAI_DONE, [direct] * len(users), up[1])
    ]
    for model in ("fresh", "cached"):
        chat = {"model": model, "messages": MESSAGES, "temperature": 0}
        requests = [http_request("/chat/stream", chat, token) for token, _ in users]
        targets.append(
            Target(model, vektor[0], True, VEKTOR_FIRST, VEKTOR_DONE, requests, vektor[1])
        )
    for model in ("fresh", "cached"):
        body = {"model": model, "messages": MESSAGES, "temperature": 0, "stream": True}
        requests = [http_request("/v1/chat/completions", body, key) for _, key in users]
        targets.append(
            Target(f"v1-{model}", vektor[0], True, OPENAI_FIRST, OPENAI_DONE, requests, vektor[1])
        )
    return targets


def measure(
    database: str,
    *,
    concurrency: list[int],
    repeats: int = 3,
    streams: int = 300,
    single_requests: int = 30,
    redis_url: str | None = None,
) -> list[Result]:
    """Start the upstream and Vektor, run every concurrency × target alternately, stop."""
    results: list[Result] = []
    config = Path(tempfile.mkdtemp(prefix="vektor-bench-config-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, config, True)
        up_port, upstream = stack.enter_context(scripted_upstream())
        (config / "model_configs.json").write_text(json.dumps(_deployments(up_port)))
        namespace = f"bench-{uuid.uuid4().hex[:8]}"
        extra = {"REDIS_URL": redis_url, "REDIS_NAMESPACE": namespace}
        if redis_url:
            stack.callback(_drop_namespace, redis_url, namespace)
        server = stack.enter_context(
            vektor_server(
                database,
                VEKTOR_CONFIG_DIR=str(config),
                RATE_LIMIT_CHAT="1000000/minute",
                BCRYPT_ROUNDS="4",
                RESPONSE_CACHE="on",
                **(extra if redis_url else {}),
            )
        )
        vk_port = int(server.base.rsplit(":", 1)[1])
        users = make_users(server.base, max(concurrency))
        built = _targets((up_port, upstream.pid), (vk_port, server.process.pid), users)
        for target in built:  # warm up; fills the cache (one global entry per route)
            run_async(run_load(target, min(len(users), 10), 20))
        for c in concurrency:
            total = single_requests if c == 1 else streams
            runs: dict[str, list[dict[str, Any]]] = {t.name: [] for t in built}
            for _ in range(repeats):
                for target in built:  # alternate, so drift hits all alike
                    runs[target.name].append(run_async(run_load(target, c, total)))
            for target in built:
                results.append(
                    _median(database, "stream", target.name, c, total, runs[target.name])
                )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--streams", type=int, default=300, help="answers per run at c > 1")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--redis", default=None, help="REDIS_URL: the cache on Redis")
    args = parser.parse_args()
    print(
        f"database={args.database} cache={'redis' if args.redis else 'memory'} upstream: "
        f"{SCRIPT}; medians of {args.repeats} runs; machine speed: {loop_seconds():.2f} s per loop"
    )
    results = measure(
        args.database,
        concurrency=args.concurrency,
        repeats=args.repeats,
        streams=args.streams,
        redis_url=args.redis,
    )
    print_table(results)
    print("\n".join(cache_ratios([asdict(r) for r in results])))


if __name__ == "__main__":
    main()
