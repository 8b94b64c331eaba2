"""The benchmark suite's smoke run: every kind of measure for a few seconds, the completions
in both layouts (embedded and Redis), so the suite cannot rot between full runs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _bench(module: str, *args: str, timeout: float) -> str:
    """Run `python -m bench.<module>`; its standard output, once it has exited with 0."""
    run = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    return run.stdout


# The run's own limit (300 s) decides, not the suite's default: pytest-timeout would stop
# the test and leave the run's servers behind.
@pytest.mark.timeout(330)
def test_bench_smoke_runs_every_measure_and_writes_a_report(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "bench", "smoke", "--redis", "--docs", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    report = (tmp_path / "BENCHMARKS.md").read_text()
    for section in (
        "## Targets",
        "## 1. Streaming",
        "## 2. Plain",
        "## 3.",
        "## 4.",
        "## 6.",
        "## 7.",
        "## 8. Cached answers",
    ):
        assert section in report, section
    assert "| Vektor /chat/stream | 5 |" in report
    assert "| Vektor /v1 | 5 |" in report
    assert "| bare proxy | 5 |" in report  # the floor under Vektor's own work
    assert "| Vektor /chat/stream, Redis | 5 |" in report  # the production layout too
    assert "| cached | 5 |" in report
    assert "c=5 /chat/stream: TTFC cached" in report
    assert "| bare SDK relay |" in report  # the gateway beside the SDK alone
    plots = {p.name for p in (tmp_path / "bench").glob("*.png")}
    assert plots == {"stream_rate.png", "stream_latency.png", "plain_rate.png", "plain_latency.png"}


def test_the_failover_bench_measures_a_gap_and_the_next_deployments_ttfc():
    result = json.loads(_bench("failover", "--answers", "3", "--runs", "1", timeout=300))
    assert result["gap_p50_ms"] > 0
    assert result["ttfc_direct_p50_ms"] > 0
    assert result["server_ttfc_p50_ms"]["fo#1"] is not None  # the standby took answers over


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_answer_writes_bench_gives_the_databases_cpu_per_answer(database):
    small = ["--answers", "40", "--concurrency", "8", "--rounds", "1"]
    output = _bench("answer_writes", "--database", database, *small, timeout=120)
    figures = output.strip().splitlines()[-1].split()
    wall, cpu = float(figures[4]), float(figures[10])
    assert wall > 0
    assert cpu > 0


def test_the_rate_limit_bench_compares_the_in_process_storages():
    output = _bench("rate_limit", "--counters", "10", "2000", "--hits", "200", timeout=120)
    rows = [line.split() for line in output.strip().splitlines()[1:]]
    assert [int(row[0]) for row in rows] == [10, 2000]
    library, vektor = float(rows[-1][1]), float(rows[-1][2])
    assert 0 < vektor < library  # 2,000 idle counters: the library sweeps them on each hit
