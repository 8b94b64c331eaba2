"""Old code against new, alternately: `bench.stream` run by each checkout's interpreter in
turn, so that machine drift hits both alike; the pairs and the median ratio of CPU per answer.

Each side is a checkout with its own environment (`uv sync` in it). The load generator is
this checkout's `bench.stream` for both; each side's server is its own code, started by its
interpreter (`python -m vektor serve`).

    uv run python -m bench.alternate --old ../old-checkout [--new .] [--database postgresql]
        [--pairs 6] [--concurrency 50] [--targets vektor v1] [--redis] [--workers 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
RUN_TIMEOUT_S = 600


def run_once(
    checkout: Path, database: str, concurrency: int, targets: list[str], extra: list[str]
) -> dict[str, tuple[float, float, float]]:
    """One `bench.stream` run with the checkout's interpreter: per target, (streams/s,
    TTFC p50 ms, CPU ms per answer). `extra`: more options of `bench.stream`."""
    python = checkout / ".venv" / "bin" / "python"
    command = [str(python), "-m", "bench.stream", "--database", database, "--repeats", "1"]
    command += ["--concurrency", str(concurrency), "--targets", *targets, *extra]
    done = subprocess.run(
        command, cwd=HERE, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=True
    )
    figures: dict[str, tuple[float, float, float]] = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        target = parts[2].removesuffix("+redis") if len(parts) == 9 else ""
        if parts and parts[0] == database and target in targets:
            p50, rate, cpu = parts[5], parts[7], parts[8]
            figures[target] = (float(rate), float(p50[:-2]), float(cpu[:-2]))
    if set(figures) != set(targets):
        raise RuntimeError(f"bench.stream printed no result for {targets}:\n{done.stdout}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="the old checkout")
    parser.add_argument("--new", type=Path, default=HERE, help="the new checkout")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument(
        "--targets", nargs="+", choices=["direct", "vektor", "v1"], default=["vektor"]
    )
    parser.add_argument(
        "--plain", action="store_true", help="non-streamed completions (`bench.stream --plain`)"
    )
    parser.add_argument("--redis", action="store_true", help="both sides with REDIS_URL set")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    extra = ["--workers", str(args.workers)] + (["--redis"] if args.redis else [])
    extra += ["--plain"] if args.plain else []
    sides = {"old": args.old.resolve(), "new": args.new.resolve()}
    ratios: dict[str, list[float]] = {t: [] for t in args.targets}
    seen: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    print(
        f"database={args.database} c={args.concurrency} workers={args.workers} "
        f"redis={args.redis}; streams/s, TTFC p50, CPU per answer"
    )
    for pair in range(1, args.pairs + 1):
        # The side that goes first alternates too.
        order = ["old", "new"] if pair % 2 else ["new", "old"]
        got = {
            side: run_once(sides[side], args.database, args.concurrency, args.targets, extra)
            for side in order
        }
        for target in args.targets:
            (o_rate, o_p50, o_cpu), (n_rate, n_p50, n_cpu) = got["old"][target], got["new"][target]
            ratios[target].append(n_cpu / o_cpu)
            for side in sides:
                seen.setdefault((target, side), []).append(got[side][target])
            print(
                f"pair {pair} {target:<6} old {o_rate:6.1f}/s {o_p50:6.1f} ms {o_cpu:5.2f} ms"
                f" | new {n_rate:6.1f}/s {n_p50:6.1f} ms {n_cpu:5.2f} ms"
                f" | new/old CPU {n_cpu / o_cpu:.3f}",
                flush=True,
            )
    for target, values in ratios.items():
        for side in sides:
            rate, p50, cpu = (statistics.median(v) for v in zip(*seen[(target, side)], strict=True))
            print(f"{target} {side}: medians {rate:.1f}/s, TTFC {p50:.1f} ms, CPU {cpu:.2f} ms")
        print(f"{target}: median new/old CPU per answer {statistics.median(values):.3f}")
    if "direct" in args.targets:
        # The upstream's own CPU per request, measured beside each side: the goal's yardstick.
        for target in (t for t in args.targets if t != "direct"):
            for side in sides:
                mine = [cpu for _, _, cpu in seen[(target, side)]]
                theirs = [cpu for _, _, cpu in seen[("direct", side)]]
                ratio = statistics.median(m / u for m, u in zip(mine, theirs, strict=True))
                print(f"{target} {side}: median CPU per request / upstream's {ratio:.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
