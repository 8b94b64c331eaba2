"""Write docs/BENCHMARKS.md and its plots from the results of `python -m bench all`.

The report is generated; the hand-written part between the NOTES markers (analysis, and
benchmarks outside the suite) is kept from the existing file.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

from bench.plots import make_plots
from bench.sections import (
    DATABASES,
    NAMES,
    cache_section,
    gateway_section,
    history_section,
    lookup,
    mcp_section,
    memory_section,
    ms,
    table,
)

NOTES_START = "<!-- notes: kept when the report is regenerated -->"
NOTES_END = "<!-- /notes -->"


def loop_seconds() -> float:
    """How fast the machine runs Python now: the best of three runs of a fixed loop of 10⁷
    additions. Shared machines drift (twofold within an hour has been seen here), so the
    report gives this beside the figures, taken at the start and at the end of a run."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for value in range(10_000_000):
            total += value
        best = min(best, time.perf_counter() - started)
    return round(best, 3)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import os

    import psutil

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def versions(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Versions of Vektor and of the libraries on the measured path."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in (
        "vektor",
        "fastapi",
        "starlette",
        "uvicorn",
        "sqlalchemy",
        "asyncpg",
        "aiosqlite",
        "httpx",
        "aiohttp",
    ):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return {**found, **(extra or {})}


def _ratio(value: float, reference: float | None) -> str:
    if not reference:
        return "—"
    return f"{value / reference:.2f}×"


def completions_section(rows: list[dict[str, Any]], mode: str) -> list[str]:
    """One table per database: every target at every concurrency, with ratios."""
    lines: list[str] = []
    unit = "streams/s" if mode == "stream" else "req/s"
    latency = "TTFC" if mode == "stream" else "latency"
    for database in DATABASES:
        chosen = [r for r in rows if r["mode"] == mode and r["database"] == database]
        if not chosen:
            continue
        lines += ["", f"**{DATABASES[database]}**", ""]
        body = []
        for row in chosen:
            direct = lookup(chosen, target="direct", concurrency=row["concurrency"])
            peer = lookup(chosen, target="litellm", concurrency=row["concurrency"])
            added = None if direct is None else row["p50_ms"] - direct["p50_ms"]
            body.append(
                [
                    NAMES.get(row["target"], row["target"]),
                    str(row["concurrency"]),
                    str(row["requests"]),
                    ms(row["p50_ms"]),
                    ms(row["p99_ms"]),
                    "—" if added is None or row["target"] == "direct" else f"{added:+.1f} ms",
                    f"{row['rate']:.1f}",
                    _ratio(row["rate"], direct["rate"] if direct else None),
                    _ratio(row["rate"], peer["rate"] if peer else None),
                    f"{row['cpu_ms']:.2f} ms",
                ]
            )
        lines += table(
            [
                "target",
                "c",
                "n",
                f"{latency} p50",
                f"{latency} p99",
                "p50 added",
                unit,
                "× direct",
                "× LiteLLM",
                "CPU/request",
            ],
            body,
        )
    return lines


def targets_section(results: dict[str, Any]) -> list[str]:
    """The issue's targets next to what was measured."""
    rows = results.get("completions", [])
    checks: list[tuple[str, str, float | None, float, bool]] = []  # what, unit, value, goal, ≥?

    def pick(database: str, mode: str, target: str, c: int, field: str) -> float | None:
        row = lookup(rows, database=database, mode=mode, target=target, concurrency=c)
        return None if row is None else float(row[field])

    for database in DATABASES:
        name = DATABASES[database]
        rate = pick(database, "stream", "vektor", 50, "rate")
        checks.append((f"{name}: /chat/stream streams/s at c=50", "", rate, 180, True))
        ttfc = pick(database, "stream", "vektor", 50, "p50_ms")
        checks.append((f"{name}: /chat/stream TTFC p50 at c=50", "ms", ttfc, 40, False))
        one = pick(database, "stream", "vektor", 1, "p50_ms")
        checks.append((f"{name}: /chat/stream TTFC p50 at c=1", "ms", one, 13, False))
        plain = pick(database, "plain", "v1", 50, "rate")
        checks.append((f"{name}: /v1 plain req/s at c=50", "", plain, 1000, True))
        cpu = {t: pick(database, "stream", t, 50, "cpu_ms") for t in ("vektor", "direct")}
        cpu["vektor+redis"] = pick(database, "stream", "vektor+redis", 50, "cpu_ms")
        checks += _cpu_checks(name, cpu)
        vk = pick(database, "plain", "v1", 1, "p50_ms")
        direct = pick(database, "plain", "direct", 1, "p50_ms")
        added = None if vk is None or direct is None else vk - direct
        checks.append((f"{name}: /v1 plain added at c=1", "ms", added, 2, False))
    memory = results.get("memory") or {}
    streams = memory.get("streams") or {}
    checks.append(
        ("1,000 concurrent streams: peak RSS", "MB", streams.get("peak_rss_mb"), 400, False)
    )
    checks.append(("idle RSS without the local model", "MB", memory.get("idle_rss_mb"), 150, False))
    for row in results.get("history", []):
        checks.append(
            (
                f"{DATABASES.get(row['database'], row['database'])}: history {row['query']} p99",
                "ms",
                row.get("p99_ms"),
                20,
                False,
            )
        )
    body = []
    for what, unit, value, goal, at_least in checks:
        if value is None:
            body.append([what, f"{'≥' if at_least else '≤'} {goal:g} {unit}", "not measured", ""])
            continue
        met = value >= goal if at_least else value <= goal
        digits = 2 if unit == "×" else 1  # ratios
        shown = f"{value:.{digits}f} {unit}".strip()
        miss = "met" if met else f"missed by {abs(value - goal):.{digits}f} {unit}".strip()
        body.append([what, f"{'≥' if at_least else '≤'} {goal:g} {unit}".strip(), shown, miss])
    return table(["target", "goal", "measured", ""], body)


def _cpu_checks(
    name: str, cpu: dict[str, float | None]
) -> list[tuple[str, str, float | None, float, bool]]:
    """CPU per answer at c=50 as ratios of the same run: /chat/stream over the upstream's
    own CPU per stream, and the Redis layout over the embedded one (when measured)."""
    vektor, direct, redis = cpu["vektor"], cpu["direct"], cpu["vektor+redis"]
    checks: list[tuple[str, str, float | None, float, bool]] = []
    if vektor is not None and direct:
        what = f"{name}: /chat/stream CPU per answer at c=50, × the upstream's"
        checks.append((what, "×", vektor / direct, 2.5, False))
    if redis is not None and vektor:
        what = f"{name}: /chat/stream CPU per answer at c=50, Redis × embedded"
        checks.append((what, "×", redis / vektor, 1.2, False))
    return checks


def _speed_lines(results: dict[str, Any]) -> list[str]:
    speed = results.get("loop_seconds")
    if not speed:
        return []
    return [
        f"Speed: a fixed pure-Python loop (10⁷ additions, `bench.report.loop_seconds`) took "
        f"{speed['start']:.2f} s at the start of the run and {speed['end']:.2f} s at the end. "
        "A rough yardstick: it shows drift in raw Python speed, not in socket and memory "
        "work, so compare rows with the direct rows of the same run rather than across runs.",
        "",
    ]


def write(results: dict[str, Any], docs: Path) -> Path:
    """Write docs/BENCHMARKS.md, docs/bench/*.png and docs/bench/results.json."""
    folder = docs / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    plots = make_plots(results, folder)
    path = docs / "BENCHMARKS.md"
    notes = _kept_notes(path)
    info = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `uv run python -m bench all"
        + (" --peers litellm" if results.get("peers") else "")
        + (" --redis" if results.get("redis") else "")
        + f"` on {results['date']} in {results['duration_s'] / 60:.0f} minutes; raw figures in "
        "[bench/results.json](bench/results.json). Everything runs on loopback on one "
        "machine: the load generator, the scripted upstream, Vektor and the peer share its "
        "cores, and targets are measured alternately so drift hits all alike; each figure "
        "is the median of the repeats.",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB, "
        f"{info['os']}, Python {info['python']}.",
        "",
        *_speed_lines(results),
        "Versions: "
        + ", ".join(f"{name} {value}" for name, value in results["versions"].items())
        + ".",
        "",
        "## Targets",
        "",
        *targets_section(results),
        "",
        NOTES_START,
        notes,
        NOTES_END,
        "",
        "## 1. Streaming completions",
        "",
        "The scripted upstream sends 20 chunks 10 ms apart. TTFC is the time from sending the "
        "request to the first chunk carrying answer text; every request opens its own "
        "connection. `/chat/stream` runs with auth and persistence on (one user per client; "
        "the question and the answer stored); `/v1` with an API key per client, nothing "
        "stored (its default). CPU/request is the serving process's CPU time per request "
        "(for `direct`, the upstream's own).",
        *completions_section(results.get("completions", []), "stream"),
        "",
        *[f"![{title}](bench/{name})" for name, title in plots if name.startswith("stream")],
        "",
        "## 2. Plain (non-streaming) completions",
        "",
        "The same upstream answering the same 20 pieces at once, as one JSON body "
        "(`stream: false`). Latency is to the end of the answer.",
        *completions_section(results.get("completions", []), "plain"),
        "",
        *[f"![{title}](bench/{name})" for name, title in plots if name.startswith("plain")],
        "",
        *memory_section(results.get("memory")),
        "",
        *history_section(results.get("history", [])),
        "",
        *mcp_section(results.get("mcp")),
        "",
        *gateway_section(results.get("mcp_gateway")),
        "",
        *cache_section(results.get("cache", [])),
        "",
        "## Reproduce",
        "",
        "```sh",
        "uv run python -m bench all --peers litellm   # everything, about "
        f"{results['duration_s'] / 60:.0f} minutes here",
        "uv run python -m bench report                # rewrite this file from results.json",
        "uv run python -m bench.stream --help         # one measure at a time",
        "```",
        "",
        "LiteLLM's proxy is installed into its own throw-away virtual environment under the "
        "user's cache folder (never a dependency of Vektor) and configured with the same "
        "upstream.",
        "",
    ]
    path.write_text("\n".join(lines))
    return path


def _kept_notes(path: Path) -> str:
    if not path.exists():
        return ""
    text = path.read_text()
    if NOTES_START not in text or NOTES_END not in text:
        return ""
    return text.split(NOTES_START, 1)[1].split(NOTES_END, 1)[0].strip("\n")
