"""The reference for Vektor's completions: the least an OpenAI-compatible proxy does. A
FastAPI route reads the request, passes it to the upstream on the HTTP client Vektor's
providers use (one shared aiohttp session, the same connector), and relays the answer: the
stream chunk by chunk as it arrives (through Vektor's own streamed response), or the whole
JSON. No authentication, routing, limits, storage or accounting; served by Uvicorn with the
settings `vektor serve` uses.

    uv run python -m bench.bare_proxy --port 8126 --upstream http://127.0.0.1:8127
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from bench.bare_app import serve_relay
from vektor.core.streaming import SSE_HEADERS, EventStreamResponse
from vektor.llm.http import new_session


def build(upstream: str) -> FastAPI:
    """The proxy app for one upstream (its base URL, without /v1)."""
    held: dict[str, aiohttp.ClientSession] = {}
    url = f"{upstream}/v1/chat/completions"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with new_session() as session:
            held["session"] = session
            yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> Response:
        body = await request.body()
        stream = bool(orjson.loads(body).get("stream"))
        answer = await held["session"].post(
            url, data=body, headers={"Content-Type": "application/json"}
        )
        if not stream:
            async with answer:
                return Response(await answer.read(), answer.status, media_type=answer.content_type)

        async def relay() -> AsyncIterator[bytes]:
            async with answer:
                async for chunk in answer.content.iter_any():
                    yield chunk

        return EventStreamResponse(relay(), headers=SSE_HEADERS)

    return app


def main() -> None:
    serve_relay(__doc__, build, "the upstream's base URL")


if __name__ == "__main__":
    main()
