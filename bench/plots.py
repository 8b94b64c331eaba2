"""The report's plots: rate by concurrency and latency distributions, per database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.sections import DATABASES, NAMES, lookup


def make_plots(results: dict[str, Any], folder: Path) -> list[tuple[str, str]]:
    """PNG plots: rate by concurrency and latency distributions. Returns (file, title)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results.get("completions", [])
    made: list[tuple[str, str]] = []

    def figure(name: str, title: str, databases: list[str], draw: Any, *args: Any) -> None:
        """One panel per database; `draw(axis, database, *args)` fills a panel."""
        shape, axes = plt.subplots(1, len(databases), figsize=(5 * len(databases), 3.6))
        for axis, database in zip(
            [axes] if len(databases) == 1 else list(axes), databases, strict=True
        ):
            draw(axis, database, *args)
            axis.grid(alpha=0.3)
            axis.legend(fontsize=8)
        shape.tight_layout()
        shape.savefig(folder / name, dpi=110)
        plt.close(shape)
        made.append((name, title))

    for mode, unit in (("stream", "streams/s"), ("plain", "requests/s")):
        chosen = [r for r in rows if r["mode"] == mode]
        databases = [d for d in DATABASES if any(r["database"] == d for r in chosen)]
        if not databases:
            continue
        top = max(r["concurrency"] for r in chosen)
        latency = "TTFC" if mode == "stream" else "latency"
        figure(f"{mode}_rate.png", f"{unit} by concurrency", databases, _rates, chosen, unit)
        figure(
            f"{mode}_latency.png", f"{latency} distribution", databases, _cdf, chosen, top, latency
        )
    return made


def _rates(axis: Any, database: str, rows: list[dict[str, Any]], unit: str) -> None:
    """Rate by concurrency, a line per target."""
    for target in NAMES:
        points = sorted(
            (r["concurrency"], r["rate"])
            for r in rows
            if r["database"] == database and r["target"] == target
        )
        if points:
            axis.plot(*zip(*points, strict=True), marker="o", label=NAMES[target])
    axis.set_title(DATABASES[database])
    axis.set_xlabel("concurrent clients")
    axis.set_ylabel(unit)


def _cdf(axis: Any, database: str, rows: list[dict[str, Any]], top: int, latency: str) -> None:
    """Latency distribution at the top concurrency, a curve per target."""
    for target in NAMES:
        row = lookup(rows, database=database, target=target, concurrency=top)
        if row and row["latencies_ms"]:
            samples = sorted(row["latencies_ms"])
            share = [(i + 1) / len(samples) for i in range(len(samples))]
            axis.plot(samples, share, label=NAMES[target])
    axis.set_xscale("log")
    axis.set_title(f"{DATABASES[database]}, c={top}")
    axis.set_xlabel(f"{latency} (ms, log)")
    axis.set_ylabel("share of requests")
