"""CPU per streamed answer of each provider's client side: Vektor's provider classes (the
HTTP request, SigV4 signing for Bedrock, reading and decoding the stream) against the
scripted native upstream in its own process, so only the provider's work is counted.

Rounds alternate between the providers so that machine drift hits all alike; the figure
is this process's CPU seconds over the answers of a round, and the ratio to `openai` is
taken within each pair of rounds, then its median.

    uv run python -m bench.providers [--answers 300] [--rounds 6] [--chunks 20]
        [--concurrency 10] [--providers openai bedrock gemini ollama azure]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from typing import Any

from tests.support.bedrock_upstream import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY

from bench.common import ROOT, free_port, start, stop
from vektor.llm.base import ChatMessage, Finish, GenerationRequest, TextDelta
from vektor.llm.config import DeploymentConfig
from vektor.llm.http import new_session
from vektor.llm.providers import ProviderContext, provider_class

os.environ.setdefault("BENCH_AWS_KEY_ID", ACCESS_KEY_ID)
os.environ.setdefault("BENCH_AWS_SECRET", SECRET_ACCESS_KEY)


def entry(provider: str, origin: str, chunks: int) -> DeploymentConfig:
    """A deployment of `provider` on the scripted upstream answering `chunks` pieces."""
    script = f"chunks={chunks}"
    fields: dict[str, Any] = {"name": provider, "provider": provider, "model": script}
    fields["base_url"] = origin + ("/v1" if provider == "openai" else "")
    fields["api_key"] = "bench-key"
    if provider == "azure":
        fields["deployment"] = script
    if provider == "bedrock":
        fields |= {
            "region": REGION,
            "aws_access_key_id_env": "BENCH_AWS_KEY_ID",
            "aws_secret_access_key_env": "BENCH_AWS_SECRET",
        }
    return DeploymentConfig(**fields)


async def answer(provider: Any, request: GenerationRequest, chunks: int) -> None:
    """One streamed answer, checked whole."""
    pieces = finished = 0
    async for event in provider.stream(request):
        pieces += isinstance(event, TextDelta)
        finished += isinstance(event, Finish)
    if (pieces, finished) != (chunks, 1):
        raise RuntimeError(f"broken answer: {pieces} pieces, {finished} finishes")


async def one_round(provider: Any, answers: int, concurrency: int, chunks: int) -> float:
    """CPU milliseconds of this process per answer, over `answers` streamed answers."""
    request = GenerationRequest(messages=[ChatMessage("user", "Hola")])
    left = answers

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await answer(provider, request, chunks)

    cpu = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.process_time() - cpu) * 1000 / answers


async def measure(args: argparse.Namespace, origin: str) -> dict[str, list[float]]:
    """Per provider, the CPU ms per answer of each round."""
    seen: dict[str, list[float]] = {name: [] for name in args.providers}
    async with new_session() as session:
        context = ProviderContext(session=session, local_model=None)  # type: ignore[arg-type]
        built = {
            name: provider_class(name).build(entry(name, origin, args.chunks), context)
            for name in args.providers
        }
        for provider in built.values():  # warm: connections, imports, caches
            await one_round(provider, args.concurrency, args.concurrency, args.chunks)
        for number in range(args.rounds):
            order = args.providers if number % 2 == 0 else args.providers[::-1]
            for name in order:
                cpu = await one_round(built[name], args.answers, args.concurrency, args.chunks)
                seen[name].append(cpu)
            print(
                f"round {number + 1}: "
                + ", ".join(f"{n} {seen[n][-1]:.3f} ms" for n in args.providers),
                flush=True,
            )
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument(
        "--providers", nargs="+", default=["openai", "bedrock", "gemini", "ollama", "azure"]
    )
    args = parser.parse_args()
    if args.providers[0] != "openai":
        args.providers.insert(0, "openai")
    port = free_port()
    upstream = start(
        [sys.executable, "-m", "tests.support.native_upstream", str(port)],
        {**os.environ, "PYTHONPATH": str(ROOT)},
        ROOT,
    )
    try:
        time.sleep(0.2)
        wait_native(port, upstream)
        seen = asyncio.run(measure(args, f"http://127.0.0.1:{port}"))
    finally:
        stop(upstream)
    print(
        f"{args.answers} answers of {args.chunks} pieces per round, concurrency {args.concurrency}"
    )
    for name, values in seen.items():
        ratios = [v / o for v, o in zip(values, seen["openai"], strict=True)]
        print(
            f"{name:<8} CPU per answer median {statistics.median(values):.3f} ms, "
            f"/openai median {statistics.median(ratios):.3f} "
            f"(range {min(ratios):.3f}-{max(ratios):.3f})"
        )


def wait_native(port: int, process: Any) -> None:
    """Wait until the native upstream answers (or its process died)."""
    import httpx

    for _ in range(200):
        if process.poll() is not None:
            raise SystemExit("the native upstream exited")
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("the native upstream did not start")


if __name__ == "__main__":
    main()
