"""Scripted upstreams for the providers' native protocols, on the plumbing of
`upstream.py` (same scripts in the model name, same counters), written from the public API
references:

- Azure OpenAI: `POST /openai/deployments/{deployment}/chat/completions?api-version=…`,
  key in `api-key`; the deployment name is the script (the body names no model).
- Ollama: `POST /api/chat`, one JSON object per line (`application/x-ndjson`), the last with
  `done: true`, `done_reason`, `prompt_eval_count` (13 here) and `eval_count`; tool calls
  in `message.tool_calls` with their arguments as an object.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.upstream import DropConnection, Script, ScriptedUpstream


class NativeUpstream(ScriptedUpstream):
    """One server speaking every protocol above besides OpenAI's and Anthropic's."""

    def __init__(self) -> None:
        super().__init__()
        self.queries: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.app.router.routes.extend(
            [
                Route(
                    "/openai/deployments/{deployment}/chat/completions",
                    self.azure,
                    methods=["POST"],
                ),
                Route("/api/chat", self.ollama, methods=["POST"]),
            ]
        )

    @property
    def origin(self) -> str:
        """The server's root URL (Azure's resource endpoint, Ollama's and Gemini's base)."""
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        super().reset()
        self.queries.clear()
        self.paths.clear()

    def _seen(self, request: Request) -> None:
        self.queries.append(dict(request.query_params))
        self.paths.append(request.url.path)

    async def azure(self, request: Request) -> Response:
        """Azure OpenAI: 401 without `api-key`, 404 without `api-version` (as Azure does)."""
        self._seen(request)
        if "api-key" not in request.headers:
            return _error(401, "Access denied due to invalid subscription key.")
        if "api-version" not in request.query_params:
            return _error(404, "Resource not found")
        return await self.chat(request, request.path_params["deployment"])

    async def ollama(self, request: Request) -> Response:
        """Ollama's /api/chat, streamed as NDJSON unless `stream` is false."""
        self._seen(request)
        body, script = await self._begin(request)
        if script.status:
            return JSONResponse({"error": "scripted failure"}, status_code=script.status)
        pieces = script.pieces()
        calls = _tool_calls(
            body, script, lambda args: {"function": {"name": script.tool, "arguments": args}}
        )
        final = {
            "model": body["model"],
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 13,
            "eval_count": len(pieces),
        }
        if body.get("stream") is False:
            self.completed += 1
            message = {"role": "assistant", "content": "".join(pieces), "tool_calls": calls}
            return JSONResponse({**final, "message": message})
        lines = self._ollama_lines(script, pieces, calls, final)
        return StreamingResponse(lines, media_type="application/x-ndjson")

    async def _ollama_lines(
        self, script: Script, pieces: list[str], calls: list[Any], final: dict[str, Any]
    ) -> AsyncIterator[str]:
        def line(message: dict[str, Any], **extra: Any) -> str:
            return json.dumps({"model": final["model"], "message": message, **extra}) + "\n"

        for index, piece in enumerate(pieces):
            if script.drop is not None and index == script.drop:
                raise DropConnection
            if script.bad is not None and index == script.bad:
                yield '{"message": "not an object"}\n'
                continue
            if script.delay:
                await asyncio.sleep(script.delay)
            yield line({"role": "assistant", "content": piece}, done=False)
        if calls:
            yield line({"role": "assistant", "content": "", "tool_calls": calls}, done=False)
        self.completed += 1
        yield line({"role": "assistant", "content": ""}, **final)


def _tool_calls(body: dict[str, Any], script: Script, shape: Any) -> list[Any]:
    """The scripted tool call in the protocol's `shape` (given the arguments as an object),
    unless the last message is a tool result (with `loop`, always)."""
    last = (body.get("messages") or [{}])[-1]
    answered = last.get("role") == "tool"
    if not script.tool or (answered and not script.loop):
        return []
    return [shape(json.loads(script.tool_args))]


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": {"code": str(status), "message": message}}, status_code=status)
