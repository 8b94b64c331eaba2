"""The report's sections after the completions (measures 3 to 8), and what every part of
the report shares: the targets' names, table and figure helpers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

DATABASES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
NAMES = {
    "direct": "direct",
    "proxy": "bare proxy",
    "vektor": "Vektor /chat/stream",
    "v1": "Vektor /v1",
    "vektor+redis": "Vektor /chat/stream, Redis",
    "v1+redis": "Vektor /v1, Redis",
    "litellm": "LiteLLM",
}


def table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def ms(value: float | None) -> str:
    """Milliseconds, to the precision that means something."""
    if value is None:
        return "—"
    return f"{value:.1f} ms" if value >= 10 else f"{value:.2f} ms"


def lookup(rows: list[dict[str, Any]], **where: Any) -> dict[str, Any] | None:
    """The first row with these values."""
    for row in rows:
        if all(row.get(key) == value for key, value in where.items()):
            return row
    return None


def memory_section(memory: dict[str, Any] | None) -> list[str]:
    """Measures 3 and 5."""
    lines = ["## 3. 1,000 concurrent streams, and 5. idle memory", ""]
    if not memory:
        return [*lines, "Not measured in this run."]
    streams = memory.get("streams") or {}
    rows = [
        ["idle RSS right after start", f"{memory.get('idle_rss_start_mb', 0):.1f} MB"],
        ["idle RSS after 60 light requests", f"{memory.get('idle_rss_mb', 0):.1f} MB"],
    ]
    if "model_rss_mb" in memory:
        rows.append(["RSS with the local model loaded", f"{memory['model_rss_mb']:.1f} MB"])
    if streams:
        rows += [
            ["concurrent streams opened", str(streams.get("streams"))],
            ["completed with `done`", str(streams.get("completed"))],
            ["most open at once", str(streams.get("peak_open"))],
            ["RSS before", f"{streams.get('rss_before_mb', 0):.1f} MB"],
            ["peak RSS", f"{streams.get('peak_rss_mb', 0):.1f} MB"],
            ["wall time", f"{streams.get('seconds', 0):.1f} s"],
        ]
    return [*lines, *table(["measure", "value"], rows), "", memory.get("note", "")]


def history_section(rows: list[dict[str, Any]]) -> list[str]:
    """Measure 4."""
    lines = ["## 4. History with 10,000 conversations", ""]
    if not rows:
        return [*lines, "Not measured in this run."]
    body = [
        [
            DATABASES.get(r["database"], r["database"]),
            r["query"],
            str(r.get("n", "")),
            ms(r["p50_ms"]),
            ms(r["p99_ms"]),
        ]
        for r in rows
    ]
    return [
        *lines,
        "One user with 10,000 conversations (2 messages each); sequential "
        "`GET /chat/history` requests after a warm-up.",
        "",
        *table(["database", "query", "n", "p50", "p99"], body),
    ]


def mcp_section(mcp: dict[str, Any] | None) -> list[str]:
    """Measure 6."""
    lines = ["## 6. An MCP tool call through the pool", ""]
    if not mcp:
        return [*lines, "Not measured in this run."]
    floor = mcp.get("direct, one session", {}).get("p50_ms")
    body = [
        [
            way,
            ms(v["p50_ms"]),
            ms(v["p99_ms"]),
            "—" if floor is None else f"{v['p50_ms'] - floor:+.2f} ms",
        ]
        for way, v in mcp.items()
    ]
    return [
        *lines,
        "The project's test MCP server (official SDK, streamable HTTP) on loopback; "
        "sequential calls of its `add` tool, the three ways alternating.",
        "",
        *table(["way", "p50", "p99", "p50 over one session"], body),
    ]


def gateway_section(gateway: dict[str, Any] | None) -> list[str]:
    """Measure 7."""
    lines = ["## 7. An MCP tool call through the /mcp gateway", ""]
    if not gateway:
        return [*lines, "Not measured in this run."]
    ways = [("direct", "direct"), ("through /mcp", "gateway")]
    if "relay" in gateway:
        ways.insert(1, ("bare SDK relay", "relay"))
    body = [
        [
            name,
            ms(gateway[key]["p50_ms"]),
            ms(gateway[key]["p99_ms"]),
            f"{gateway[key]['calls_per_s_c20']:.0f}",
        ]
        for name, key in ways
    ]
    return [
        *lines,
        "The official client (one open client per caller, protocol 2026-07-28) calls the test "
        "MCP server's `add` directly, through a bare relay made of the SDK's server side and "
        "one held SDK client (`bench/mcp_relay.py`: nothing else), and through `vektor "
        "serve`'s /mcp, alternating run by run. Goals: p50 at c=1 at most +2 ms, calls/s at "
        "c=20 at least 80 % of direct.",
        "",
        *table(["way", "p50 (c=1)", "p99 (c=1)", "calls/s (c=20)"], body),
        "",
        f"Added p50: {gateway['gateway_added_p50_ms']:+.2f} ms; c=20 throughput "
        f"{gateway['gateway_share_of_direct_c20']:.0%} of direct; Vektor's CPU "
        f"{gateway['vektor_cpu_ms_per_call']:.2f} ms per relayed call.",
        *_gateway_cpu(gateway),
    ]


def _gateway_cpu(gateway: dict[str, Any]) -> list[str]:
    """The c=20 runs' CPU per call by process, and what the bare relay reached."""
    if "relay" not in gateway:
        return []
    ways = (("direct", "direct", None), ("bare SDK relay", "relay", "relay"))
    ways += (("through /mcp", "gateway", "vektor"),)
    body = [
        [
            name,
            ms(gateway[key]["c20_cpu_ms_mcp_server"]),
            ms(gateway[key]["c20_cpu_ms_client"]),
            "—" if middle is None else ms(gateway[key][f"c20_cpu_ms_{middle}"]),
            f"{gateway[key]['c20_cores_busy']:.2f}",
        ]
        for name, key, middle in ways
    ]
    relay = gateway["relay"]["c20_cpu_ms_relay"]
    vektor = gateway["gateway"]["c20_cpu_ms_vektor"]
    header = ["c=20, CPU per call", "MCP server", "clients", "in between", "cores busy"]
    return [
        "",
        *table(header, body),
        "",
        f"The bare relay adds {gateway['relay_added_p50_ms']:+.2f} ms at p50 and reaches "
        f"{gateway['relay_share_of_direct_c20']:.0%} of direct's calls/s at c=20 on "
        f"{gateway.get('cores', '?')} cores; Vektor's CPU per call is {vektor / relay:.2f}× "
        "the bare relay's.",
    ]


def cache_section(rows: list[dict[str, Any]]) -> list[str]:
    """Measure 8: the response cache."""
    lines = ["## 8. Cached answers", ""]
    if not rows:
        return [*lines, "Not measured in this run."]
    body = [
        [
            r["target"],
            str(r["concurrency"]),
            ms(r["p50_ms"]),
            ms(r["p99_ms"]),
            f"{r['rate']:.1f}",
            ms(r["cpu_ms"]),
        ]
        for r in rows
    ]
    return [
        *lines,
        f"`bench.cache` on {DATABASES.get(rows[0]['database'], rows[0]['database'])}, the "
        "cache in memory: the same upstream script as measure 1; "
        "`fresh` a model without caching, `cached` one with `cache_ttl_s` and a global scope "
        "(filled during the warm-up, then every answer a hit), through /chat/stream and "
        "through /v1 (streamed); TTFC p50 and p99, CPU of the Vektor process per answer.",
        "",
        *table(["target", "c", "TTFC p50", "TTFC p99", "per s", "CPU/answer"], body),
        "",
        *(f"- {line}" for line in cache_ratios(rows)),
    ]


def cache_ratios(rows: list[dict[str, Any]]) -> list[str]:
    """The cached rows' TTFC and CPU against the fresh and direct rows of the same run."""
    by = {(r["target"], r["concurrency"]): r for r in rows}
    lines = []
    for c in sorted({r["concurrency"] for r in rows}):
        direct = by[("direct", c)]
        for route, fresh_name, cached_name in (
            ("/chat/stream", "fresh", "cached"),
            ("/v1", "v1-fresh", "v1-cached"),
        ):
            fresh, cached = by[(fresh_name, c)], by[(cached_name, c)]
            lines.append(
                f"c={c} {route}: TTFC cached {ms(cached['p50_ms'])} = "
                f"{cached['p50_ms'] / fresh['p50_ms']:.2f}× fresh ({ms(fresh['p50_ms'])}), "
                f"{cached['p50_ms'] / direct['p50_ms']:.2f}× direct ({ms(direct['p50_ms'])}); "
                f"CPU per answer cached {ms(cached['cpu_ms'])} = "
                f"{cached['cpu_ms'] / fresh['cpu_ms']:.2f}× fresh ({ms(fresh['cpu_ms'])})"
            )
    return lines
