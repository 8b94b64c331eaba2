"""Streaming and plain completions: Vektor's /chat/stream and /v1/chat/completions against
the upstream itself (and, when asked, LiteLLM's proxy), in one run.

Starts, on loopback, the scripted OpenAI-compatible upstream (20 chunks, 10 ms apart, or one
plain JSON answer) and a Vektor server (auth and persistence on, SQLite or PostgreSQL),
registers one user (with an API key for /v1) per concurrent client, then measures time to
first content chunk (TTFC) and streams/s — or, without streaming, latency and requests/s —
at each concurrency, alternating the targets so machine drift hits all alike, and reports
medians of the repeats. Each request opens its own connection, as a browser tab would.

    uv run python -m bench.stream [--database postgresql] [--concurrency 1 10 50]
        [--repeats 3] [--targets direct vektor v1] [--peers litellm] [--plain]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import bare_proxy, redis_layout, scripted_upstream, vektor_server
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

SCRIPT = "chunks=20;delay=0.01;text=word"
# Plain answers: the same 20 pieces with no waits, so every target's upstream answers at once.
PLAIN_SCRIPT = "chunks=20;delay=0;text=word"
TARGETS = ("direct", "proxy", "vektor", "v1", "litellm")


@dataclass
class Result:
    """Medians over the repeats of one target at one concurrency."""

    database: str
    mode: str  # "stream" or "plain"
    target: str
    concurrency: int
    requests: int
    p50_ms: float  # TTFC when streaming, whole-answer latency when plain
    p99_ms: float
    rate: float  # streams/s or requests/s
    cpu_ms: float  # CPU of the serving process per request
    latencies_ms: list[float]  # every sample of the median run, for plots


def build_targets(
    *,
    stream: bool,
    names: list[str],
    clients: int,
    up: tuple[int, int],
    vektor: tuple[int, int],
    users: list[tuple[str, str]],
    litellm: tuple[int, int, str | None] | None,
    proxy: tuple[int, int] | None = None,
) -> list[Target]:
    """The targets asked for, each with one request per client."""
    messages = [{"role": "user", "content": "Hola"}]
    script, model = (SCRIPT, "bench") if stream else (PLAIN_SCRIPT, "bench-plain")
    openai_body = {"model": script, "stream": stream, "messages": messages}
    vektor_body = {"model": model, "stream": stream, "messages": messages}
    targets = []
    if "direct" in names:
        request = http_request("/v1/chat/completions", openai_body)
        targets.append(
            Target("direct", up[0], stream, *_markers(stream), [request] * clients, up[1])
        )
    if "proxy" in names and proxy is not None:
        request = http_request("/v1/chat/completions", openai_body)
        targets.append(
            Target("proxy", proxy[0], stream, *_markers(stream), [request] * clients, proxy[1])
        )
    if "vektor" in names and stream:
        chat: dict[str, object] = {"model": "bench", "messages": messages}
        requests = [http_request("/chat/stream", chat, token) for token, _ in users]
        targets.append(
            Target("vektor", vektor[0], True, VEKTOR_FIRST, VEKTOR_DONE, requests, vektor[1])
        )
    if "v1" in names:
        requests = [http_request("/v1/chat/completions", vektor_body, key) for _, key in users]
        targets.append(Target("v1", vektor[0], stream, *_markers(stream), requests, vektor[1]))
    if "litellm" in names and litellm is not None:
        port, pid, key = litellm
        request = http_request("/v1/chat/completions", openai_body, key)
        targets.append(Target("litellm", port, stream, *_markers(stream), [request] * clients, pid))
    return targets


def _markers(stream: bool) -> tuple[re.Pattern[bytes] | bytes, bytes | None]:
    return (OPENAI_FIRST, OPENAI_DONE) if stream else (OPENAI_FIRST, None)


def measure(
    database: str,
    *,
    concurrency: list[int],
    repeats: int = 3,
    streams: int = 600,
    targets: list[str] | tuple[str, ...] = ("direct", "vektor", "v1"),
    peers: list[str] | tuple[str, ...] = (),
    modes: tuple[str, ...] = ("stream",),
    workers: int = 1,
    single_requests: int = 30,
    layouts: tuple[str, ...] = ("embedded",),
    server: str = "uvicorn",
) -> list[Result]:
    """Start the upstream, Vektor (and peers), run every mode × concurrency × target,
    alternating targets within each repeat; stop everything. Returns medians. `layouts`:
    "embedded" (one process's own state), "redis" (the production layout, REDIS_URL set:
    streams, change feed, limits and slots on Redis), or both: one server each, measured
    alternately in the same run; the Redis one's targets are `vektor+redis` and `v1+redis`."""
    names = [t for t in targets if t != "litellm"] + (["litellm"] if "litellm" in peers else [])
    results: list[Result] = []
    config = Path(tempfile.mkdtemp(prefix="vektor-bench-config-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, config, True)
        up_port, upstream = stack.enter_context(scripted_upstream())
        proxy = stack.enter_context(bare_proxy(up_port)) if "proxy" in names else None
        deployments = [
            {
                "name": name,
                "provider": "openai",
                "model": script,
                "base_url": f"http://127.0.0.1:{up_port}/v1",
                "timeout_s": 30,
            }
            for name, script in (("bench", SCRIPT), ("bench-plain", PLAIN_SCRIPT))
        ]
        (config / "model_configs.json").write_text(json.dumps(deployments))
        servers = {
            layout: stack.enter_context(
                vektor_server(
                    database,
                    workers,
                    server,
                    VEKTOR_CONFIG_DIR=str(config),
                    RATE_LIMIT_CHAT="1000000/minute",
                    BCRYPT_ROUNDS="4",
                    **(stack.enter_context(redis_layout()) if layout == "redis" else {}),
                )
            )
            for layout in layouts
        }
        litellm = None
        if "litellm" in names:
            from bench.peers import litellm_proxy

            peer = stack.enter_context(
                litellm_proxy(f"http://127.0.0.1:{up_port}/v1", [SCRIPT, PLAIN_SCRIPT])
            )
            litellm = (peer.port, peer.pid, peer.headers["Authorization"].split(" ", 1)[1])
        clients = max(concurrency)
        users = {layout: make_users(s.base, clients) for layout, s in servers.items()}
        for mode in modes:
            built: list[Target] = []
            for index, (layout, vektor) in enumerate(servers.items()):
                # The upstream and the peer once; Vektor's targets once per layout.
                wanted = names if index == 0 else [n for n in names if n in ("vektor", "v1")]
                for target in build_targets(
                    stream=mode == "stream",
                    names=wanted,
                    clients=clients,
                    up=(up_port, upstream.pid),
                    vektor=(int(vektor.base.rsplit(":", 1)[1]), vektor.process.pid),
                    users=users[layout],
                    litellm=litellm,
                    proxy=proxy,
                ):
                    if layout == "redis" and target.name in ("vektor", "v1"):
                        target.name += "+redis"
                    built.append(target)
            for target in built:  # warm up connections, caches and lazy imports
                run_async(run_load(target, min(clients, 10), 20))
            for c in concurrency:
                total = single_requests if c == 1 else streams
                runs: dict[str, list[dict[str, Any]]] = {t.name: [] for t in built}
                for _ in range(repeats):
                    for target in built:  # alternate, so drift hits all alike
                        runs[target.name].append(run_async(run_load(target, c, total)))
                for target in built:
                    results.append(
                        _median(database, mode, target.name, c, total, runs[target.name])
                    )
    return results


def _median(
    database: str, mode: str, name: str, c: int, total: int, runs: list[dict[str, Any]]
) -> Result:
    rates = sorted(runs, key=lambda r: r["rate"])
    middle = rates[len(rates) // 2]
    return Result(
        database=database,
        mode=mode,
        target=name,
        concurrency=c,
        requests=total,
        p50_ms=statistics.median(r["p50"] for r in runs),
        p99_ms=statistics.median(r["p99"] for r in runs),
        rate=statistics.median(r["rate"] for r in runs),
        cpu_ms=statistics.median(r["cpu_ms"] for r in runs),
        latencies_ms=middle["samples"],
    )


def print_table(results: list[Result]) -> None:
    """One line per result."""
    print(
        f"{'db':<10} {'mode':<6} {'target':<8} {'c':>4} {'n':>6} {'p50':>10} {'p99':>10} "
        f"{'per s':>8} {'CPU/req':>9}"
    )
    for r in results:
        print(
            f"{r.database:<10} {r.mode:<6} {r.target:<8} {r.concurrency:>4} {r.requests:>6} "
            f"{r.p50_ms:>8.1f}ms {r.p99_ms:>8.1f}ms {r.rate:>8.1f} {r.cpu_ms:>7.2f}ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--streams", type=int, default=600, help="requests per run at c > 1")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="Gunicorn workers (1: Uvicorn)")
    parser.add_argument(
        "--targets",
        nargs="+",
        choices=["direct", "proxy", "vektor", "v1"],
        default=["direct", "vektor", "v1"],
        help="proxy: the least an OpenAI-compatible proxy does (bench/bare_proxy.py)",
    )
    parser.add_argument("--peers", nargs="*", choices=["litellm"], default=[])
    parser.add_argument("--plain", action="store_true", help="non-streaming completions instead")
    parser.add_argument(
        "--layouts",
        nargs="+",
        choices=["embedded", "redis"],
        default=["embedded"],
        help="Vektor's own state (embedded) or REDIS_URL set (redis); both alternate",
    )
    parser.add_argument("--redis", action="store_true", help="the same as --layouts redis")
    parser.add_argument("--server", choices=["uvicorn", "granian"], default="uvicorn")
    args = parser.parse_args()
    print(
        f"database={args.database} workers={args.workers} server={args.server} "
        f"layouts={'redis' if args.redis else ' '.join(args.layouts)} upstream: {SCRIPT}; "
        f"medians of {args.repeats} runs; machine speed: {loop_seconds():.2f} s per loop"
    )
    results = measure(
        args.database,
        concurrency=args.concurrency,
        repeats=args.repeats,
        streams=args.streams,
        targets=args.targets,
        peers=args.peers,
        modes=("plain",) if args.plain else ("stream",),
        workers=args.workers,
        layouts=("redis",) if args.redis else tuple(args.layouts),
        server=args.server,
    )
    print_table(results)


if __name__ == "__main__":
    main()
