"""The benchmark report shows the Redis layout's rows beside the embedded ones, and the CPU
goals as ratios of the same run."""

from bench import report, sections


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


def test_the_cache_section_names_the_runs_database_and_its_ratios():
    targets = ("direct", "fresh", "cached", "v1-fresh", "v1-cached")
    rows = [row(t, cpu, "postgresql", 1) for t, cpu in zip(targets, (1, 4, 1, 4, 2), strict=True)]
    section = "\n".join(sections.cache_section(rows))
    assert "`bench.cache` on PostgreSQL" in section
    assert "c=1 /chat/stream: TTFC cached 20.0 ms = 1.00× fresh" in section
    assert "CPU per answer cached 2.00 ms = 0.50× fresh (4.00 ms)" in section
