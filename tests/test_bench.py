"""The benchmark suite's smoke run: every kind of measure for a few seconds, the completions
in both layouts (embedded and Redis), so the suite cannot rot between full runs."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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
    for section in ("## Targets", "## 1. Streaming", "## 2. Plain", "## 3.", "## 4.", "## 6."):
        assert section in report, section
    assert "| Vektor /chat/stream | 5 |" in report
    assert "| Vektor /v1 | 5 |" in report
    assert "| Vektor /chat/stream, Redis | 5 |" in report  # the production layout too
    plots = {p.name for p in (tmp_path / "bench").glob("*.png")}
    assert plots == {"stream_rate.png", "stream_latency.png", "plain_rate.png", "plain_latency.png"}
