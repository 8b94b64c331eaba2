"""AWS Bedrock's Converse API for the scripted upstreams, from AWS's public references:

- `POST /model/{modelId}/converse` (one JSON answer: `output.message.content` blocks,
  `stopReason`, `usage.inputTokens` 19 here) and `/converse-stream`, answered as
  `application/vnd.amazon.eventstream`: binary messages (prelude of total and header
  lengths and its CRC32, headers `:message-type`, `:event-type`, `:content-type`, the JSON
  payload, the message's CRC32) — messageStart, contentBlockStart/Delta/Stop, messageStop,
  metadata; errors as HTTP statuses with `x-amzn-ErrorType`, or an `exception` message;
- every request must carry a SigV4 signature (service `bedrock`) that botocore, given the
  same secret, computes again from what arrived; else 403 InvalidSignatureException.

The model id is the script. The frames are written here by hand (botocore only decodes
them), so the provider's decoder is checked against an independent writer.
"""

from __future__ import annotations

import asyncio
import json
import struct
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from tests.support.upstream import Script

if TYPE_CHECKING:
    from tests.support.native_upstream import NativeUpstream

ACCESS_KEY_ID = "AKIDSCRIPTED0001"
SECRET_ACCESS_KEY = "scripted/secret+key"
REGION = "eu-west-3"
INPUT_TOKENS = 19


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message, every header a string (type 7)."""
    encoded = b"".join(
        struct.pack("!B", len(name))
        + name.encode()
        + struct.pack("!BH", 7, len(value.encode()))
        + value.encode()
        for name, value in headers.items()
    )
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack("!II", total, len(encoded))
    prelude += struct.pack("!I", zlib.crc32(prelude))
    body = prelude + encoded + payload
    return body + struct.pack("!I", zlib.crc32(body))


def event(kind: str, data: dict[str, Any]) -> bytes:
    """An `event` message of that type with a JSON payload (padded, as AWS pads them)."""
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return frame(headers, json.dumps({**data, "p": "abcdefgh"}).encode())


def exception(kind: str, message: str) -> bytes:
    """An `exception` message, as a stream that fails after it began carries it."""
    headers = {":exception-type": kind, ":content-type": "application/json"}
    return frame(
        {**headers, ":message-type": "exception"}, json.dumps({"message": message}).encode()
    )


def signature_problem(request: Request, body: bytes) -> str | None:
    """Why the request's SigV4 signature is wrong, or None when botocore computes the same
    signature from the method, the path as sent, the signed headers and the body."""
    authorization = request.headers.get("authorization", "")
    fields = dict(
        part.strip().split("=", 1)
        for part in authorization.removeprefix("AWS4-HMAC-SHA256 ").split(",")
        if "=" in part
    )
    try:
        key_id, day, region, service, _ = fields["Credential"].split("/")
        signed = fields["SignedHeaders"].split(";")
        stamp = request.headers["x-amz-date"]
    except (KeyError, ValueError):
        return "missing or malformed Authorization or X-Amz-Date"
    if (key_id, region, service) != (ACCESS_KEY_ID, REGION, "bedrock") or stamp[:8] != day:
        return f"wrong credential scope {fields['Credential']}"
    skew = datetime.now(UTC) - datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    if abs(skew.total_seconds()) > 300 or not {"host", "x-amz-date"} <= set(signed):
        return "stale date or host/date not signed"
    raw_path = request.scope["raw_path"].decode()
    again = AWSRequest(
        method=request.method,
        url=f"http://{request.headers['host']}{raw_path}",
        data=body,
        headers={name: request.headers[name] for name in signed},
    )
    again.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY), "bedrock", REGION)
    expected = signer.signature(
        signer.string_to_sign(again, signer.canonical_request(again)), again
    )
    return None if expected == fields.get("Signature") else "signature mismatch"


def _error(status: int, kind: str, message: str) -> Response:
    return JSONResponse(
        {"message": message}, status_code=status, headers={"x-amzn-ErrorType": kind}
    )


STATUS_ERRORS = {
    400: "ValidationException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}


async def converse(server: NativeUpstream, request: Request) -> Response:
    """Converse and ConverseStream, after checking the signature."""
    server.paths.append(request.scope["raw_path"].decode())
    body_bytes = await request.body()
    problem = signature_problem(request, body_bytes)
    if problem:
        server.signature_failures.append(problem)
        return _error(403, "InvalidSignatureException", problem)
    body, script = await server._begin(request, request.path_params["model"])
    if script.status:
        return _error(script.status, STATUS_ERRORS.get(script.status, "Exception"), "scripted")
    pieces = script.pieces()
    last = (body.get("messages") or [{}])[-1].get("content") or []
    answered = any("toolResult" in block for block in last)
    calls = []
    if script.tool and (script.loop or not answered):
        calls = [
            {"toolUseId": "tooluse_1", "name": script.tool, "input": json.loads(script.tool_args)}
        ]
    usage = {"inputTokens": INPUT_TOKENS, "outputTokens": len(pieces)}
    usage["totalTokens"] = sum(usage.values())
    stop = "tool_use" if calls else "end_turn"
    if not request.url.path.endswith("/converse-stream"):
        server.completed += 1
        content = [{"text": "".join(pieces)}, *({"toolUse": call} for call in calls)]
        message = {"role": "assistant", "content": content}
        answer = {"output": {"message": message}, "stopReason": stop, "usage": usage}
        return JSONResponse({**answer, "metrics": {"latencyMs": 1}})
    frames = _frames(server, script, pieces, calls, stop, usage)
    return StreamingResponse(frames, media_type="application/vnd.amazon.eventstream")


async def _frames(
    server: NativeUpstream,
    script: Script,
    pieces: list[str],
    calls: list[dict[str, Any]],
    stop: str,
    usage: dict[str, int],
) -> AsyncIterator[bytes]:
    yield event("messageStart", {"role": "assistant"})
    for index, piece in enumerate(pieces):
        fault = await script.fault(index)
        if fault == "bad":
            yield event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": 7}})
            continue
        if fault == "fail":
            yield exception("serviceUnavailableException", "scripted overload")
            return
        if script.delay:
            await asyncio.sleep(script.delay)
        yield event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}})
    yield event("contentBlockStop", {"contentBlockIndex": 0})
    for index, call in enumerate(calls, start=1):
        start = {"toolUse": {"toolUseId": call["toolUseId"], "name": call["name"]}}
        yield event("contentBlockStart", {"contentBlockIndex": index, "start": start})
        arguments = json.dumps(call["input"])
        for half in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :]):
            delta = {"toolUse": {"input": half}}
            yield event("contentBlockDelta", {"contentBlockIndex": index, "delta": delta})
        yield event("contentBlockStop", {"contentBlockIndex": index})
    server.completed += 1
    yield event("messageStop", {"stopReason": stop})
    yield event("metadata", {"usage": usage, "metrics": {"latencyMs": 1}})
