"""The benchmark report shows the Redis layout's rows beside the embedded ones, and the CPU
goals as ratios of the same run."""

from bench import report


def row(target, cpu_ms, database="sqlite", concurrency=50):
    return {
        "database": database,
        "mode": "stream",
        "target": target,
        "concurrency": concurrency,
        "requests": 600,
        "p50_ms": 20.0,
        "p99_ms": 40.0,
        "rate": 200.0,
        "cpu_ms": cpu_ms,
        "latencies_ms": [20.0],
    }


def test_redis_rows_and_cpu_ratios_of_one_run():
    rows = [row("direct", 1.6), row("vektor", 4.0), row("vektor+redis", 5.2)]
    tables = "\n".join(report.completions_section(rows, "stream"))
    assert "| Vektor /chat/stream, Redis | 50 | 600 |" in tables
    assert "| Vektor /chat/stream | 50 | 600 |" in tables
    targets = "\n".join(report.targets_section({"completions": rows}))
    assert (
        "SQLite: /chat/stream CPU per answer at c=50, × the upstream's | ≤ 2.5 × | 2.50 × | met"
        in targets
    )
    assert "Redis × embedded | ≤ 1.2 × | 1.30 × | missed by 0.10 ×" in targets


def test_without_the_redis_layout_there_is_no_redis_goal():
    rows = [row("direct", 1.0), row("vektor", 3.0)]
    targets = "\n".join(report.targets_section({"completions": rows}))
    assert "3.00 × | missed by 0.50 ×" in targets
    assert "Redis × embedded" not in targets
