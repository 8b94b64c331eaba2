"""What counting a request costs: the work the request middleware adds for metrics.

`uv run python -m bench.metrics_overhead`

Times `RequestStats.record` (Prometheus counter and histogram with route-template labels,
plus the in-process window behind /api/status) over many calls with realistic labels, in
single-process mode and in Gunicorn's multiprocess mode (samples written to mmap files),
and reports the median of 5 runs in microseconds per request.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

CALLS = 200_000
ROUTES = ["/users/me", "/chat/stream", "/chat/history/{conversation_id}", "/health", "unmatched"]


def measure() -> float:
    """µs per recorded request in this process's mode (median of 5 runs)."""
    from vektor.core.metrics import RequestStats

    stats = RequestStats()
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        for index in range(CALLS):
            stats.record("GET", ROUTES[index % len(ROUTES)], 200, 0.0042)
        runs.append((time.perf_counter() - started) / CALLS * 1e6)
    return statistics.median(runs)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(f"{measure():.2f}")
        return
    single = subprocess.run(
        [sys.executable, "-m", "bench.metrics_overhead", "--child"],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as folder:
        multi = subprocess.run(
            [sys.executable, "-m", "bench.metrics_overhead", "--child"],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": folder},
        ).stdout.strip()
    print(f"{CALLS} requests per run, median of 5 runs")
    print("| mode | added per request |")
    print("|---|---|")
    print(f"| one process | {single} µs |")
    print(f"| Gunicorn workers (multiprocess files) | {multi} µs |")


if __name__ == "__main__":
    main()
