"""Scripted upstreams for the providers' native protocols, on the plumbing of
`upstream.py` (same scripts in the model name, same counters), written from the public API
references:

- Azure OpenAI: `POST /openai/deployments/{deployment}/chat/completions?api-version=…`,
  key in `api-key`; the deployment name is the script (the body names no model).
- Ollama: `POST /api/chat`, one JSON object per line (`application/x-ndjson`), the last with
  `done: true`, `done_reason`, `prompt_eval_count` (13 here) and `eval_count`; tool calls
  in `message.tool_calls` with their arguments as an object.
- Gemini: `POST /v1beta/models/{model}:streamGenerateContent?alt=sse` (server-sent events
  of GenerateContentResponse objects) and `:generateContent`, key in `x-goog-api-key`; the
  model name is the script; `usageMetadata` with `promptTokenCount` 17; a tool call is a
  `functionCall` part carrying a `thoughtSignature`.
- Bedrock: `POST /model/{modelId}/converse-stream` and `/converse`, SigV4-checked, in
  `bedrock_upstream.py`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support import bedrock_upstream
from tests.support.upstream import Script, ScriptedUpstream


class NativeUpstream(ScriptedUpstream):
    """One server speaking every protocol above besides OpenAI's and Anthropic's."""

    def __init__(self) -> None:
        super().__init__()
        self.queries: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.signature_failures: list[str] = []
        self.app.router.routes.extend(
            [
                Route(
                    "/openai/deployments/{deployment}/chat/completions",
                    self.azure,
                    methods=["POST"],
                ),
                Route("/api/chat", self.ollama, methods=["POST"]),
                Route(
                    "/v1beta/models/{model}:streamGenerateContent", self.gemini, methods=["POST"]
                ),
                Route("/v1beta/models/{model}:generateContent", self.gemini, methods=["POST"]),
                Route("/model/{model}/converse", self.bedrock, methods=["POST"]),
                Route("/model/{model}/converse-stream", self.bedrock, methods=["POST"]),
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
        self.signature_failures.clear()

    async def bedrock(self, request: Request) -> Response:
        """Bedrock's Converse and ConverseStream (SigV4 checked)."""
        return await bedrock_upstream.converse(self, request)

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
        answered = (body.get("messages") or [{}])[-1].get("role") == "tool"
        calls = _tool_calls(
            answered, script, lambda args: {"function": {"name": script.tool, "arguments": args}}
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
            fault = await script.fault(index)
            if fault == "bad":
                yield '{"message": "not an object"}\n'
                continue
            if fault == "fail":
                yield json.dumps({"error": "scripted overload"}) + "\n"
                return
            if script.delay:
                await asyncio.sleep(script.delay)
            yield line({"role": "assistant", "content": piece}, done=False)
        if calls:
            yield line({"role": "assistant", "content": "", "tool_calls": calls}, done=False)
        self.completed += 1
        yield line({"role": "assistant", "content": ""}, **final)

    async def gemini(self, request: Request) -> Response:
        """Gemini's generateContent, and streamGenerateContent as SSE."""
        self._seen(request)
        if "x-goog-api-key" not in request.headers:
            return _error(403, "Method doesn't allow unregistered callers")
        body, script = await self._begin(request, request.path_params["model"])
        if script.status:
            return _error(script.status, "scripted failure")
        pieces = script.pieces()
        last = (body.get("contents") or [{}])[-1].get("parts") or []
        calls = _tool_calls(
            any("functionResponse" in part for part in last),
            script,
            lambda args: {
                "functionCall": {"name": script.tool, "args": args},
                "thoughtSignature": "c2lnbmF0dXJl",
            },
        )
        usage = {"promptTokenCount": 17, "candidatesTokenCount": len(pieces)}
        if not request.url.path.endswith(":streamGenerateContent"):
            self.completed += 1
            parts = [{"text": "".join(pieces)}, *calls]
            return JSONResponse(_candidate(parts, "STOP", usage))
        events = self._gemini_events(script, pieces, calls, usage)
        return StreamingResponse(events, media_type="text/event-stream")

    async def _gemini_events(
        self, script: Script, pieces: list[str], calls: list[Any], usage: dict[str, int]
    ) -> AsyncIterator[str]:
        for index, piece in enumerate(pieces):
            fault = await script.fault(index)
            if fault == "bad":
                yield 'data: {"candidates": "not a list"}\r\n\r\n'
                continue
            if fault == "fail":
                error = {"code": 503, "message": "scripted overload", "status": "UNAVAILABLE"}
                yield f"data: {json.dumps({'error': error})}\r\n\r\n"
                return
            if script.delay:
                await asyncio.sleep(script.delay)
            partial = {**usage, "candidatesTokenCount": index + 1}
            yield f"data: {json.dumps(_candidate([{'text': piece}], None, partial))}\r\n\r\n"
        self.completed += 1
        last = _candidate(calls or [{"text": ""}], "STOP", usage)
        yield f"data: {json.dumps(last)}\r\n\r\n"


def _candidate(parts: list[Any], finish: str | None, usage: dict[str, int]) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    total = {**usage, "totalTokenCount": sum(usage.values())}
    return {"candidates": [candidate], "usageMetadata": total, "modelVersion": "scripted"}


def _tool_calls(answered: bool, script: Script, shape: Any) -> list[Any]:
    """The scripted tool call in the protocol's `shape` (given the arguments as an object),
    unless the model was just given a tool result (with `loop`, always)."""
    if not script.tool or (answered and not script.loop):
        return []
    return [shape(json.loads(script.tool_args))]


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": {"code": str(status), "message": message}}, status_code=status)


def main() -> None:
    """Serve it in the foreground: `python -m tests.support.native_upstream PORT`."""
    import sys

    server = NativeUpstream()
    server.server.config.port = int(sys.argv[1]) if len(sys.argv) > 1 else server.port
    server.server.run()


if __name__ == "__main__":
    main()
