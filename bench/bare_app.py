"""The reference for authenticated reads: a bare FastAPI app answering a constant JSON,
served by Uvicorn with the settings `vektor serve` uses.

    uv run python -m bench.bare_app --port 8123
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from vektor.server import WS_OPTIONS

app = FastAPI()
BODY = {"id": "00000000-0000-0000-0000-000000000000", "email": "bench@example.com"}


@app.get("/users/me")
async def me() -> dict[str, str]:
    """The same constant every time."""
    return BODY


def serve(asgi: Any, port: int) -> None:
    """Serve a reference app on loopback with Uvicorn, as `vektor serve` serves Vektor."""
    import uvicorn

    uvicorn.run(
        asgi,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        **WS_OPTIONS,
    )


def serve_relay(doc: str | None, build: Callable[[str], Any], upstream: str) -> None:
    """The command line of a reference relay (`--port`, `--upstream`: `upstream` says what
    it is): `build(upstream URL)` served on the port."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help=upstream)
    args = parser.parse_args()
    serve(build(args.upstream), args.port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    serve(app, parser.parse_args().port)


if __name__ == "__main__":
    main()
