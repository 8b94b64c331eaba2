"""A scripted OpenAI-compatible (and Anthropic-compatible) server on loopback.

It runs uvicorn in a thread of the test process and is driven by the `model` name the
client asks for, a list of `key=value` items separated by `;`:

- `chunks=N` (20), `delay=S` (0.0): stream N text pieces S seconds apart;
- `text=WORDS`: the pieces (words) to send, repeated as needed;
- `status=CODE`: answer that HTTP status instead;
- `stall=S`: wait S seconds before the first byte;
- `drop=K`: close the connection after K pieces, mid-stream;
- `tool=NAME`: emit one tool call to NAME (unless the last message is a tool result;
  with `loop`, always); `args=JSON`: its arguments (default `{}`);
- `bad=K`: send a chunk that breaks the protocol after K pieces;
- `fail=K`: after K pieces, send the protocol's in-band error event (a 5xx mid-stream);
- `hang=K`: after K pieces, send nothing more (the connection stays open a minute);
- `late`: `drop`, `bad`, `fail` and `hang` apply only when the last message is a tool
  result (the round after a tool call);
- `nousage`: leave out the usage chunk;
- `drip=S`: after the first piece, send the rest one byte every S seconds;
- `huge=N`: after the first piece, send one event of N bytes (in 64 KiB writes).

Counters (`requests`, `disconnects`, `completed`) let tests see what the server saw.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


class DropConnection(Exception):
    """Raised inside a streaming body to make the server cut the connection."""


@dataclass
class Script:
    chunks: int = 20
    delay: float = 0.0
    words: list[str] = field(default_factory=lambda: ["Hola", "desde", "el", "servidor"])
    status: int | None = None
    stall: float = 0.0
    drop: int | None = None
    tool: str | None = None
    tool_args: str = "{}"
    usage: bool = True
    bad: int | None = None
    loop: bool = False
    drip: float = 0.0
    huge: int = 0
    fail: int | None = None
    hang: int | None = None
    late: bool = False

    @classmethod
    def parse(cls, model: str) -> Script:
        script = cls()
        for item in model.split(";"):
            key, _, value = item.partition("=")
            if key == "chunks":
                script.chunks = int(value)
            elif key == "delay":
                script.delay = float(value)
            elif key == "text":
                script.words = value.split()
            elif key == "status":
                script.status = int(value)
            elif key == "stall":
                script.stall = float(value)
            elif key == "drop":
                script.drop = int(value)
            elif key == "tool":
                script.tool = value
            elif key == "args":
                script.tool_args = value
            elif key == "nousage":
                script.usage = False
            elif key == "bad":
                script.bad = int(value)
            elif key == "loop":
                script.loop = True
            elif key == "drip":
                script.drip = float(value)
            elif key == "huge":
                script.huge = int(value)
            elif key == "fail":
                script.fail = int(value)
            elif key == "hang":
                script.hang = int(value)
            elif key == "late":
                script.late = True
        return script

    def for_request(self, body: dict[str, Any]) -> Script:
        """The script for this request: with `late`, its faults only after a tool result."""
        messages = body.get("messages") or [{}]
        answered = isinstance(messages[-1], dict) and messages[-1].get("role") == "tool"
        if not self.late or answered:
            return self
        return Script(**{**self.__dict__, "drop": None, "bad": None, "fail": None, "hang": None})

    async def fault(self, index: int) -> str | None:
        """The fault due before piece `index`: `drop` (raises), `hang` (waits), else the
        name of the event to send instead (`bad`, `fail`) or None."""
        if self.drop is not None and index == self.drop:
            raise DropConnection
        if self.hang is not None and index == self.hang:
            await asyncio.sleep(60)
            raise DropConnection
        if self.bad is not None and index == self.bad:
            return "bad"
        if self.fail is not None and index == self.fail:
            return "fail"
        return None

    def pieces(self) -> list[str]:
        return [(" " if i else "") + self.words[i % len(self.words)] for i in range(self.chunks)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ScriptedUpstream:
    """One upstream server: start() in a thread, stop() when done."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.disconnects = 0
        self.completed = 0
        self.forced_status: int | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/messages", self.messages, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
            ]
        )
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                lifespan="off",
                timeout_graceful_shutdown=1,
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> ScriptedUpstream:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("scripted upstream did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def reset(self) -> None:
        self.requests.clear()
        self.headers.clear()
        self.disconnects = 0
        self.completed = 0
        self.forced_status = None

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "scripted", "object": "model"}]})

    async def _begin(
        self, request: Request, model: str | None = None
    ) -> tuple[dict[str, Any], Script]:
        """Record the request; its script is `model`, else the body's `model`."""
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        script = Script.parse(model if model is not None else str(body.get("model", "")))
        script = script.for_request(body)
        if self.forced_status is not None:
            script.status = self.forced_status
        if script.stall:
            await asyncio.sleep(script.stall)
        return body, script

    async def chat(self, request: Request, model: str | None = None) -> Response:
        """Chat completions; `model` scripts a request whose body names none (Azure's)."""
        body, script = await self._begin(request, model)
        body = {"model": model, **body}  # a copy: the recorded body stays as sent
        if script.status:
            return JSONResponse(
                {"error": {"message": "scripted failure"}}, status_code=script.status
            )
        pieces = script.pieces()
        usage = {
            "prompt_tokens": 11,
            "completion_tokens": len(pieces),
            "total_tokens": 11 + len(pieces),
        }
        if not body.get("stream"):
            self.completed += 1
            message: dict[str, Any] = {"role": "assistant", "content": "".join(pieces)}
            return JSONResponse(
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "model": body["model"],
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": usage,
                }
            )
        return StreamingResponse(
            self._chat_events(body, script, pieces, usage), media_type="text/event-stream"
        )

    async def _chat_events(
        self, body: dict[str, Any], script: Script, pieces: list[str], usage: dict[str, int]
    ) -> AsyncIterator[str]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            data = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "model": body["model"],
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(data)}\n\n"

        try:
            yield chunk({"role": "assistant", "content": ""})
            if script.drip or script.huge:
                yield chunk({"content": pieces[0]})
                if script.huge:
                    yield 'data: {"choices": [{"index": 0, "delta": {"content": "'
                    for _ in range(script.huge // 65536):
                        yield "x" * 65536
                    yield '"}}]}\n\n'
                    return
                for byte in chunk({"content": pieces[-1]}):
                    await asyncio.sleep(script.drip)
                    yield byte
                return
            for index, piece in enumerate(pieces):
                fault = await script.fault(index)
                if fault == "bad":
                    yield 'data: {"choices": [{"delta": "not an object"}]}\n\n'
                    continue
                if fault == "fail":
                    error = {"message": "scripted overload", "type": "server_error", "code": 500}
                    yield f"data: {json.dumps({'error': error})}\n\n"
                    return
                if script.delay:
                    await asyncio.sleep(script.delay)
                yield chunk({"content": piece})
            answered = (body.get("messages") or [{}])[-1].get("role") == "tool"
            if script.tool and (script.loop or not answered):
                call = {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": script.tool, "arguments": script.tool_args},
                }
                yield chunk({"tool_calls": [call]})
            called = script.tool and (script.loop or not answered)
            yield chunk({}, "tool_calls" if called else "stop")
            if script.usage and (body.get("stream_options") or {}).get("include_usage"):
                data = {
                    "id": "chatcmpl-1",
                    "object": "chat.completion.chunk",
                    "choices": [],
                    "usage": usage,
                }
                yield f"data: {json.dumps(data)}\n\n"
            self.completed += 1  # counted first: the client may act on [DONE] at once
            yield "data: [DONE]\n\n"
        except asyncio.CancelledError:
            self.disconnects += 1
            raise

    async def messages(self, request: Request) -> Response:
        """Anthropic's Messages API, streaming."""
        _body, script = await self._begin(request)
        if script.status:
            return JSONResponse(
                {"type": "error", "error": {"type": "api_error", "message": "scripted"}},
                status_code=script.status,
            )
        pieces = script.pieces()

        async def events() -> AsyncIterator[str]:
            def event(kind: str, data: dict[str, Any]) -> str:
                return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"

            yield event("message_start", {"message": {"usage": {"input_tokens": 7}}})
            yield event("content_block_start", {"index": 0, "content_block": {"type": "text"}})
            for index, piece in enumerate(pieces):
                fault = await script.fault(index)
                if fault == "bad":
                    yield "event: content_block_delta\ndata: [1, 2]\n\n"
                    continue
                if fault == "fail":
                    error = {"type": "overloaded_error", "message": "scripted overload"}
                    yield event("error", {"error": error})
                    return
                if script.delay:
                    await asyncio.sleep(script.delay)
                yield event(
                    "content_block_delta",
                    {"index": 0, "delta": {"type": "text_delta", "text": piece}},
                )
            yield event("content_block_stop", {"index": 0})
            yield event(
                "message_delta",
                {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": len(pieces)}},
            )
            yield event("message_stop", {})
            self.completed += 1

        return StreamingResponse(events(), media_type="text/event-stream")


def main() -> None:
    """Serve a scripted upstream in the foreground: `python -m tests.support.upstream PORT
    [--quiet]`; `--quiet` leaves out the traceback uvicorn logs for each scripted drop."""
    import logging
    import sys

    server = ScriptedUpstream()
    server.server.config.port = int(sys.argv[1]) if len(sys.argv) > 1 else server.port
    if "--quiet" in sys.argv[2:]:
        logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
    server.server.run()


if __name__ == "__main__":
    main()
