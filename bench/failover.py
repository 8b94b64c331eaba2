"""Failover in the middle of an answer: the gap the client sees between the last piece from
a deployment that dies and the first piece from the one that continues, against that next
deployment's own time to first content (TTFC), measured in the same run.

`uv run python -m bench.failover [--answers N] [--runs R] [--database sqlite|postgresql]`

One scripted upstream process serves two scripts: `dying` streams ten pieces 10 ms apart and
drops the connection after the fifth; `next` streams ten other pieces, the first after
10 ms. Vektor (one `vektor serve` on loopback) has the model `fo` (dying, then next as the
standby) and the model `next` (next alone). Alternately, in each run: N answers of `fo`
over /chat/stream (the gap, from the client's clock: the last `delta` before `failover` to
the first `delta` after), N answers of `next` through Vektor (TTFC through Vektor), and N
requests of `next` straight to the upstream (the next deployment's own TTFC, from the bench
client). At the end, `/api/status` gives the TTFC Vektor itself measured on each deployment
(request sent to first event, the last 200): `fo#1` is the next deployment taking answers
over, `next#0` the same script answering afresh. Medians over the runs of each p50 and p99;
CPU of the Vektor process per answer for `fo` and `next`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from bench.common import Server, percentile, scripted_upstream, vektor_server
from bench.load import cpu_seconds, make_users

DYING = "chunks=10;delay=0.01;text=uno dos tres;drop=5"
NEXT = "chunks=10;delay=0.01;text=cuatro cinco seis"


def write_models(config: Path, upstream_port: int) -> None:
    """`fo`: the dying deployment, then `next` as its standby; `next` alone."""
    base = f"http://127.0.0.1:{upstream_port}/v1"
    entry = {"provider": "openai", "base_url": base, "timeout_s": 30}
    deployments = [
        {**entry, "name": "fo", "model": DYING, "weight": 1},
        {**entry, "name": "fo", "model": NEXT, "weight": 0},
        {**entry, "name": "next", "model": NEXT},
    ]
    (config / "model_configs.json").write_text(json.dumps(deployments))


async def _events(client: httpx.AsyncClient, model: str, token: str) -> list[tuple[float, dict]]:
    """One /chat/stream answer: each event with the time it arrived, from the request."""
    body = {"model": model, "messages": [{"role": "user", "content": "hola"}]}
    headers = {"Authorization": f"Bearer {token}"}
    seen: list[tuple[float, dict]] = []
    started = time.perf_counter()
    async with client.stream("POST", "/chat/stream", json=body, headers=headers) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                seen.append((time.perf_counter() - started, json.loads(line[6:])))
    return seen


def gap_of(events: list[tuple[float, dict]]) -> float:
    """Seconds from the last delta before the `failover` event to the first one after."""
    kinds = [event["type"] for _, event in events]
    switch = kinds.index("failover")
    before = max(at for at, e in events[:switch] if e["type"] == "delta")
    after = min(at for at, e in events[switch:] if e["type"] == "delta")
    return after - before


def ttfc_of(events: list[tuple[float, dict]]) -> float:
    """Seconds to the first delta."""
    return min(at for at, event in events if event["type"] == "delta")


async def _direct_ttfc(client: httpx.AsyncClient, upstream: str) -> float:
    """The next deployment's own TTFC: a streamed request straight to the upstream."""
    body = {"model": NEXT, "messages": [{"role": "user", "content": "hola"}], "stream": True}
    started = time.perf_counter()
    async with client.stream("POST", f"{upstream}/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if '"content": "cuatro"' in line:
                return time.perf_counter() - started
    raise RuntimeError("the upstream sent no content")


async def one_run(base: str, upstream: str, token: str, pid: int, answers: int) -> dict[str, Any]:
    """Each kind of request `answers` times, alternating: samples in ms, CPU per answer."""
    samples: dict[str, list[float]] = {"gap": [], "ttfc_vektor": [], "ttfc_direct": []}
    cpu = {"fo": 0.0, "next": 0.0}
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for _ in range(answers):
            before = cpu_seconds(pid)
            events = await _events(client, "fo", token)
            cpu["fo"] += cpu_seconds(pid) - before
            samples["gap"].append(gap_of(events) * 1000)
            before = cpu_seconds(pid)
            events = await _events(client, "next", token)
            cpu["next"] += cpu_seconds(pid) - before
            samples["ttfc_vektor"].append(ttfc_of(events) * 1000)
            samples["ttfc_direct"].append(await _direct_ttfc(client, upstream) * 1000)
            await asyncio.sleep(0.002)  # past the dead deployment's cooldown
    figures: dict[str, Any] = {
        name: (percentile(values, 50), percentile(values, 99)) for name, values in samples.items()
    }
    figures["cpu_ms"] = {name: spent / answers * 1000 for name, spent in cpu.items()}
    return figures


def server_ttfc(server: Server) -> dict[str, float | None]:
    """The p50 TTFC Vektor measured on each deployment, from `/api/status` (as an admin)."""
    env = {**os.environ, "DATABASE_URL": server.database_url, "SECRET_KEY": "b" * 64}
    account = ["--email", "ops@example.com", "--username", "ops", "--password", "ops password"]
    subprocess.run(
        [sys.executable, "-m", "vektor", "create-user", *account, "--admin"],
        env=env,
        cwd=server.workdir,
        check=True,
        capture_output=True,
        timeout=120,
    )
    with httpx.Client(base_url=server.base, timeout=30) as client:
        login = client.post("/auth/login", data={"username": "ops", "password": "ops password"})
        token = login.raise_for_status().json()["access_token"]
        status = client.get("/api/status", headers={"Authorization": f"Bearer {token}"})
    models = status.raise_for_status().json()["models"]
    return {d["deployment"]: d["first_token_ms_p50"] for group in models.values() for d in group}


def run(database: str = "sqlite", *, answers: int = 100, runs: int = 3) -> dict[str, Any]:
    """Start the upstream and Vektor, measure `runs` times; medians of the runs."""
    config = Path(tempfile.mkdtemp(prefix="vektor-bench-config-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, config, True)
        up_port, _ = stack.enter_context(scripted_upstream(quiet=True))
        write_models(config, up_port)
        server = stack.enter_context(
            vektor_server(
                database,
                VEKTOR_CONFIG_DIR=str(config),
                RATE_LIMIT_CHAT="1000000/minute",
                BCRYPT_ROUNDS="4",
                LLM_COOLDOWN_SECONDS="0.001",  # the dead one is the first choice every time
            )
        )
        [(token, _key)] = make_users(server.base, 1)
        upstream = f"http://127.0.0.1:{up_port}/v1"
        figures = [
            asyncio.run(one_run(server.base, upstream, token, server.process.pid, answers))
            for _ in range(runs)
        ]
        measured_inside = server_ttfc(server)
    result: dict[str, Any] = {"database": database, "answers": answers, "runs": runs}
    for name in ("gap", "ttfc_vektor", "ttfc_direct"):
        result[f"{name}_p50_ms"] = statistics.median(f[name][0] for f in figures)
        result[f"{name}_p99_ms"] = statistics.median(f[name][1] for f in figures)
    for name in ("fo", "next"):
        result[f"cpu_ms_{name}"] = statistics.median(f["cpu_ms"][name] for f in figures)
    result["server_ttfc_p50_ms"] = {k: measured_inside[k] for k in ("fo#1", "next#0")}
    result["gap_over_direct_ttfc_p50_ms"] = result["gap_p50_ms"] - result["ttfc_direct_p50_ms"]
    result["gap_to_vektor_ttfc_p50"] = result["gap_p50_ms"] / result["ttfc_vektor_p50_ms"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--answers", type=int, default=100, help="answers of each kind per run")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    result = run(args.database, answers=args.answers, runs=args.runs)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
