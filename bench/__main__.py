"""The benchmark suite: `uv run python -m bench all [--peers litellm]`.

    all      every measure on SQLite and PostgreSQL (the cached answers on the first database
             only), then docs/BENCHMARKS.md and its plots; with --redis the completions also
             in the production layout (REDIS_URL set)
    smoke    a few seconds of each kind of measure, report written to a temporary folder
             (what CI runs, so the suite cannot rot)
    report   rewrite docs/BENCHMARKS.md and the plots from docs/bench/results.json

Everything the suite starts (the scripted upstream, Vektor servers, MCP servers, LiteLLM's
proxy) listens on 127.0.0.1 and is stopped by its pid. Loads are bounded in count.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report
from bench.common import ROOT

DOCS = ROOT / "docs"


def run_suite(
    *, quick: bool, peers: list[str], databases: list[str], redis: bool = False
) -> dict[str, Any]:
    """Run every measure and return the results (JSON-ready). `redis`: the completions also
    on a second server with REDIS_URL set, measured alternately with the first."""
    from bench import memory, websocket

    started = time.monotonic()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": report.machine(),
        "loop_seconds": {"start": report.loop_seconds()},
        "peers": peers,
        "quick": quick,
        "redis": redis,
        "completions": _completions(databases, quick=quick, peers=peers, redis=redis),
    }
    extra_versions: dict[str, str] = {}
    if "litellm" in peers:
        from bench.peers import VERSION

        extra_versions["litellm"] = VERSION
    print("== memory", flush=True)
    results["memory"] = memory.run(streams=50 if quick else 1000, with_model=not quick)
    print(json.dumps(results["memory"], indent=1), flush=True)
    results["history"] = _history(databases, quick)
    print("== WebSocket", flush=True)
    results["websocket"] = websocket.run(
        databases[0],
        answers=20 if quick else 600,
        repeats=1 if quick else 3,
        idle=50 if quick else 1000,
        sockets=10 if quick else 100,
        per_socket=2 if quick else 10,
    )
    results.update(_mcp_calls(quick))
    print("== cached answers", flush=True)
    results["cache"] = _cached_answers(databases[0], quick)
    results["versions"] = report.versions(extra_versions)
    results["loop_seconds"]["end"] = report.loop_seconds()
    results["duration_s"] = time.monotonic() - started
    return results


def _completions(
    databases: list[str], *, quick: bool, peers: list[str], redis: bool
) -> list[dict[str, Any]]:
    """Measure 1: streaming and plain completions on each database (bench/stream.py)."""
    from bench import stream

    rows: list[dict[str, Any]] = []
    for index, database in enumerate(databases):
        print(f"== completions on {database}", flush=True)
        measured = stream.measure(
            database,
            concurrency=[1, 5] if quick else [1, 10, 50],
            repeats=1 if quick else 3,
            streams=20 if quick else 600,
            single_requests=5 if quick else 30,
            targets=("direct", "proxy", "vektor", "v1"),
            peers=peers if index == 0 else (),  # the peer does not use Vektor's database
            modes=("stream", "plain"),
            layouts=("embedded", "redis") if redis else ("embedded",),
        )
        stream.print_table(measured)
        rows += [asdict(r) for r in measured]
    return rows


def _history(databases: list[str], quick: bool) -> list[dict[str, Any]]:
    """Reading a long history, on each database (bench/history.py)."""
    from bench import history

    print("== history", flush=True)
    rows: list[dict[str, Any]] = []
    for database in databases:
        rows += history.run(
            database,
            conversations=200 if quick else 10_000,
            requests=20 if quick else 300,
        )
    for row in rows:
        print(row, flush=True)
    return rows


def _mcp_calls(quick: bool) -> dict[str, Any]:
    """A tool call to an MCP server directly and through /mcp (bench/mcp_tool.py,
    bench/mcp_gateway.py)."""
    from bench import mcp_gateway, mcp_tool

    print("== MCP tool call", flush=True)
    direct = mcp_tool.run(calls=20 if quick else 200, runs=1 if quick else 3)
    print(json.dumps(direct, indent=1), flush=True)
    print("== MCP tool call through /mcp", flush=True)
    gateway = mcp_gateway.run(calls=20 if quick else 200, runs=1 if quick else 3)
    print(json.dumps(gateway, indent=1), flush=True)
    return {"mcp": direct, "mcp_gateway": gateway}


def _cached_answers(database: str, quick: bool) -> list[dict[str, Any]]:
    """Measure 8: cached answers against fresh ones and the upstream (bench/cache.py)."""
    from bench import cache, stream

    rows = cache.measure(
        database,
        concurrency=[1, 5] if quick else [1, 50],
        repeats=1 if quick else 3,
        streams=20 if quick else 300,
        single_requests=5 if quick else 30,
    )
    stream.print_table(rows)
    return [asdict(r) for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["all", "smoke", "report"])
    parser.add_argument("--peers", nargs="*", choices=["litellm"], default=[])
    parser.add_argument("--databases", nargs="+", choices=["sqlite", "postgresql"], default=None)
    parser.add_argument("--docs", type=Path, default=None, help="where the report goes")
    parser.add_argument(
        "--redis", action="store_true", help="completions with REDIS_URL set too, alternately"
    )
    args = parser.parse_args()
    if args.command == "report":
        docs = args.docs or DOCS
        results = json.loads((docs / "bench" / "results.json").read_text())
        print(report.write(results, docs))
        return
    quick = args.command == "smoke"
    databases = args.databases or (["sqlite"] if quick else ["sqlite", "postgresql"])
    results = run_suite(quick=quick, peers=args.peers, databases=databases, redis=args.redis)
    if quick and args.docs is None:
        with tempfile.TemporaryDirectory() as folder:
            written = report.write(results, Path(folder))
            print(written.read_text()[:400])
        return
    print(report.write(results, args.docs or DOCS))


if __name__ == "__main__":
    main()
