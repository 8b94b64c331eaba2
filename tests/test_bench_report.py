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


def test_the_gateway_section_sets_vektor_beside_a_bare_sdk_relay():
    def way(p50, rate, cpu):
        return {
            "p50_ms": p50,
            "p99_ms": 2 * p50,
            "calls_per_s_c20": rate,
            "c20_cpu_ms_mcp_server": 1.0,
            "c20_cpu_ms_client": 1.5,
            "c20_cpu_ms_relay": cpu if cpu == 2.0 else 0.0,
            "c20_cpu_ms_vektor": cpu if cpu == 3.0 else 0.0,
            "c20_cores_busy": 1.7,
        }

    gateway = {
        "direct": way(2.0, 600.0, 0.0),
        "relay": way(5.0, 300.0, 2.0),
        "gateway": way(6.0, 240.0, 3.0),
        "relay_added_p50_ms": 3.0,
        "relay_share_of_direct_c20": 0.5,
        "gateway_added_p50_ms": 4.0,
        "gateway_share_of_direct_c20": 0.4,
        "vektor_cpu_ms_per_call": 3.2,
        "cores": 2,
    }
    section = "\n".join(sections.gateway_section(gateway))
    assert "| bare SDK relay | 5.00 ms | 10.0 ms | 300 |" in section
    assert "| through /mcp | 1.00 ms | 1.50 ms | 3.00 ms | 1.70 |" in section
    assert "reaches 50% of direct's calls/s at c=20 on 2 cores" in section
    assert "Vektor's CPU per call is 1.50× the bare relay's" in section
