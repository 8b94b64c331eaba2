"""Login and GET /users/me latency against a real server on loopback.

Starts `vektor serve` on a spare port (SQLite by default, or `--database postgresql`),
registers one user, then times sequential requests and prints p50/p90/p99.

    uv run python -m bench.auth_latency --logins 200 --reads 500
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx

from bench.common import percentile, vektor_server


def report(name: str, samples: list[float]) -> None:
    ms = [s * 1000 for s in samples]
    print(
        f"{name:<16} n={len(ms):<5} p50={statistics.median(ms):7.2f} ms  "
        f"p90={percentile(ms, 90):7.2f} ms  p99={percentile(ms, 99):7.2f} ms"
    )


def measure(base: str, logins: int, reads: int) -> None:
    password = "benchmark password"
    with httpx.Client(base_url=base, timeout=30) as client:
        client.post(
            "/auth/register",
            json={"email": "bench@example.com", "username": "bench", "password": password},
        ).raise_for_status()
        login_times = []
        tokens = {}
        for _ in range(logins):
            started = time.perf_counter()
            response = client.post("/auth/login", data={"username": "bench", "password": password})
            login_times.append(time.perf_counter() - started)
            response.raise_for_status()
            tokens = response.json()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        read_times = []
        for _ in range(reads):
            started = time.perf_counter()
            response = client.get("/users/me", headers=headers)
            read_times.append(time.perf_counter() - started)
            response.raise_for_status()
    report("POST /auth/login", login_times)
    report("GET /users/me", read_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--logins", type=int, default=200)
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument("--bcrypt-rounds", type=int, default=12)
    args = parser.parse_args()
    with vektor_server(args.database, BCRYPT_ROUNDS=str(args.bcrypt_rounds)) as server:
        print(f"database={args.database} bcrypt_rounds={args.bcrypt_rounds} concurrency=1")
        measure(server.base, args.logins, args.reads)


if __name__ == "__main__":
    main()
