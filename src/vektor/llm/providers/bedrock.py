"""AWS Bedrock's Converse API: `POST /model/{modelId}/converse-stream`, answered as an AWS
event stream (binary frames, decoded by botocore's parser), or `/converse` for deployments
without streaming. Every request is signed with SigV4 (botocore's signer, service
`bedrock`); the credentials come from the variables the entry names, else the standard
AWS ones, read at each request."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp
import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import (
    EventStreamBuffer,
    EventStreamHeaderParser,
    EventStreamMessage,
    ParserError,
)
from yarl import URL

from vektor.llm.base import (
    ChatMessage,
    Finish,
    GenerationRequest,
    ProviderError,
    ProviderEvent,
    TextDelta,
    ToolCall,
    Usage,
    arguments_object,
    parse_upstream,
)
from vektor.llm.config import DeploymentConfig
from vektor.llm.http import HttpProvider, content_type, post_json
from vektor.llm.providers import register
from vektor.llm.sse_reader import MAX_EVENT_BYTES, read_body

SIGNING_NAME = "bedrock"
EVENT_STREAM = "application/vnd.amazon.eventstream"
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
}  # the rest (guardrail_intervened, content_filtered): a filter stopped it
# Exceptions inside a stream after which another deployment would fail the same way.
FINAL_EXCEPTIONS = frozenset(
    {"validationException", "accessDeniedException", "resourceNotFoundException"}
)
TOOL_CHOICES: dict[str, dict[str, Any]] = {"auto": {"auto": {}}, "required": {"any": {}}}
# The entry's credential fields and the standard variable each falls back to.
DEFAULT_ENV = {
    "aws_access_key_id_env": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key_env": "AWS_SECRET_ACCESS_KEY",
}


def _blocks(message: ChatMessage) -> list[dict[str, Any]]:
    """A context message's content blocks: text, toolUse or toolResult."""
    if message.role == "tool":
        result = {"toolUseId": message.tool_call_id or "", "content": [{"text": message.content}]}
        return [{"toolResult": result}]
    blocks: list[dict[str, Any]] = [{"text": message.content}] if message.content else []
    for call in message.tool_calls:
        use = {"toolUseId": call.id, "name": call.name, "input": arguments_object(call.arguments)}
        blocks.append({"toolUse": use})
    return blocks


def _messages(messages: list[ChatMessage]) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """`messages` (tool results as user turns, consecutive turns of one role merged, as
    Converse wants them alternating) and the `system` blocks."""
    system: list[dict[str, str]] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            system.append({"text": message.content})
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message) or [{"text": " "}]  # Converse refuses an empty content
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns, system


def _tool_config(tools: list[dict[str, Any]], choice: str | dict[str, Any] | None) -> Any:
    """Chat-completions tools as Converse `toolSpec`s; `tool_choice` as `toolChoice`
    (Converse has no "none": the choice is then left to the model)."""
    specs = []
    for tool in tools:
        function = tool.get("function") or tool
        spec = {
            "name": function["name"],
            "inputSchema": {"json": function.get("parameters") or {"type": "object"}},
        }
        if function.get("description"):
            spec["description"] = function["description"]
        specs.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": specs}
    if isinstance(choice, dict) and (choice.get("function") or {}).get("name"):
        config["toolChoice"] = {"tool": {"name": choice["function"]["name"]}}
    elif isinstance(choice, str) and choice in TOOL_CHOICES:
        config["toolChoice"] = TOOL_CHOICES[choice]
    return config


def credentials_of(config: DeploymentConfig) -> Credentials | None:
    """The entry's AWS credentials from the environment, or None when a part is missing."""
    key_id = os.environ.get(config.aws_access_key_id_env or DEFAULT_ENV["aws_access_key_id_env"])
    secret_env = config.aws_secret_access_key_env or DEFAULT_ENV["aws_secret_access_key_env"]
    secret = os.environ.get(secret_env)
    if not key_id or not secret:
        return None
    token = os.environ.get(config.aws_session_token_env or "AWS_SESSION_TOKEN") or None
    return Credentials(key_id, secret, token)


@register("bedrock")
class BedrockProvider(HttpProvider):
    """POST /model/{modelId}/converse-stream (or /converse), SigV4-signed."""

    required_fields: ClassVar[tuple[str, ...]] = ("region",)
    default_env: ClassVar[dict[str, str]] = DEFAULT_ENV

    def __init__(self, config: DeploymentConfig, session: aiohttp.ClientSession) -> None:
        super().__init__(config, session)
        self.region = config.region or ""
        if not config.base_url:
            self.base_url = f"https://bedrock-runtime.{self.region}.amazonaws.com"
        # The model id is one path segment (ids hold ':', ARNs '/'): encoded, signed and
        # sent as it is, as AWS's SDKs do.
        self.url = f"{self.base_url}/model/{quote(config.model, safe='')}"

    def _signed_headers(self, url: str, body: bytes) -> dict[str, str]:
        """Content-Type, X-Amz-Date, Authorization (and the session token) for the body."""
        credentials = credentials_of(self.config)
        if credentials is None:
            raise ProviderError("no AWS credentials in the environment", retryable=False)
        request = AWSRequest(
            method="POST", url=url, data=body, headers={"Content-Type": "application/json"}
        )
        SigV4Auth(credentials, SIGNING_NAME, self.region).add_auth(request)
        return dict(request.headers.items())

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        messages, system = _messages(request.messages)
        body: dict[str, Any] = {"messages": messages}
        if system:
            body["system"] = system
        inference: dict[str, Any] = {}
        if request.temperature is not None:
            inference["temperature"] = request.temperature
        if request.max_tokens is not None:
            inference["maxTokens"] = request.max_tokens
        if inference:
            body["inferenceConfig"] = inference
        if request.tools and self.config.tools:
            body["toolConfig"] = _tool_config(request.tools, request.tool_choice)
        return body

    async def stream(self, request: GenerationRequest) -> AsyncIterator[ProviderEvent]:
        """Yield the answer as it arrives."""
        state = _ConverseState()
        streaming = self.config.streaming
        url = self.url + ("/converse-stream" if streaming else "/converse")
        body = orjson.dumps(self._body(request))
        headers = self._signed_headers(url, body)
        target = URL(url, encoded=True)
        async with post_json(self.session, target, body, headers, self.timeout) as response:
            if not streaming:
                for event in state.whole(await read_body(response.content.iter_any())):
                    yield event
            else:
                if content_type(response) != EVENT_STREAM:
                    kind = content_type(response) or "missing"
                    raise ProviderError(f"upstream sent no event stream ({kind})", retryable=True)
                frames = FrameDecoder()
                async for chunk in response.content.iter_any():
                    for message in frames.feed(chunk):
                        for event in state.feed(message):
                            yield event
        for event in state.finish():
            yield event

    async def aclose(self) -> None:
        """The HTTP client is shared and closed by its owner."""


class _RepeatedHeaders(EventStreamHeaderParser):  # type: ignore[misc]
    """botocore's header parser, remembering the header blocks it parsed: every stream
    repeats the same handful (`contentBlockDelta` twenty times an answer, and the same
    few in every answer), and parsing them was over half of the decoding's CPU. At most
    `KEEP` blocks of at most `LARGEST` bytes are kept, shared by every stream (an upstream
    sending others costs only their parsing); the dicts are only read."""

    KEEP = 64
    LARGEST = 256
    seen: ClassVar[dict[bytes, dict[str, Any]]] = {}

    def parse(self, data: bytes) -> dict[str, Any]:
        """The headers of one message."""
        headers = self.seen.get(data)
        if headers is None:
            headers = super().parse(data)
            if len(self.seen) < self.KEEP and len(data) <= self.LARGEST:
                self.seen[data] = headers
        return headers


class FrameDecoder:
    """The messages of an event stream fed as it arrives (botocore checks the prelude and
    message CRC32s); a frame may not grow past `limit` bytes."""

    def __init__(self, limit: int = MAX_EVENT_BYTES) -> None:
        self.limit = limit
        self.buffer = EventStreamBuffer()
        self.buffer._header_parser = _RepeatedHeaders()  # botocore 1.x: its one parser
        self.pending = 0  # bytes fed and not yet part of a whole message

    def feed(self, chunk: bytes) -> list[EventStreamMessage]:
        """The messages `chunk` completed."""
        self.buffer.add_data(chunk)
        self.pending += len(chunk)
        try:
            messages = list(self.buffer)
        except ParserError as exc:
            raise ProviderError(f"upstream sent a broken frame: {exc}", retryable=True) from exc
        self.pending -= sum(m.prelude.total_length for m in messages)
        if self.pending > self.limit:
            raise ProviderError(f"upstream sent a frame over {self.limit} bytes", retryable=False)
        return messages


class _ConverseState:
    """Assembles ConverseStream events (or a whole Converse answer) into provider events."""

    def __init__(self) -> None:
        self.calls: dict[int, ToolCall] = {}
        self.inputs: dict[int, list[str]] = {}
        self.reason: str | None = None  # messageStop's
        self.usage: Usage | None = None

    def feed(self, message: EventStreamMessage) -> list[ProviderEvent]:
        """Events of one stream message; anything off-protocol is a ProviderError."""
        headers = message.headers
        if headers.get(":message-type") in ("exception", "error"):
            raise _exception(headers, message.payload)
        return parse_upstream(
            "event", self._event, str(headers.get(":event-type")), message.payload
        )

    def _event(self, kind: str, payload: bytes) -> list[ProviderEvent]:
        data = orjson.loads(payload)
        if kind == "contentBlockDelta":
            return self._delta(int(data.get("contentBlockIndex") or 0), data["delta"])
        if kind == "contentBlockStart":
            use = (data.get("start") or {}).get("toolUse")
            if use is not None:
                index = int(data.get("contentBlockIndex") or 0)
                self.calls[index] = ToolCall(str(use["toolUseId"]), str(use["name"]), "")
                self.inputs[index] = []
        elif kind == "messageStop":
            self.reason = str(data["stopReason"])
        elif kind == "metadata":
            self._usage(data.get("usage"))
        return []

    def _delta(self, index: int, delta: dict[str, Any]) -> list[ProviderEvent]:
        if "text" in delta:
            text = delta["text"]
            if not isinstance(text, str):
                raise ProviderError("upstream sent non-text content", retryable=True)
            return [TextDelta(text)] if text else []
        if "toolUse" in delta:
            self.inputs[index].append(str(delta["toolUse"]["input"]))
        return []  # reasoningContent and the like: not answer text

    def _usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self.usage = Usage(int(usage.get("inputTokens") or 0), int(usage["outputTokens"]))

    def whole(self, body: str) -> list[ProviderEvent]:
        """Events of a whole Converse answer."""
        return parse_upstream("answer", self._whole, body)

    def _whole(self, body: str) -> list[ProviderEvent]:
        data = orjson.loads(body)
        events: list[ProviderEvent] = []
        for index, block in enumerate(data["output"]["message"]["content"]):
            if "text" in block:
                events.extend(self._delta(index, {"text": block["text"]}))
            elif "toolUse" in block:
                use = block["toolUse"]
                arguments = orjson.dumps(use.get("input") or {}).decode()
                self.calls[index] = ToolCall(str(use["toolUseId"]), str(use["name"]), arguments)
        self.reason = str(data["stopReason"])
        self._usage(data.get("usage"))
        return events

    def finish(self) -> list[ProviderEvent]:
        """Tool calls, usage and finish; an answer without a stop reason was cut."""
        if self.reason is None:
            raise ProviderError("upstream ended the answer without messageStop", retryable=True)
        calls = [
            ToolCall(call.id, call.name, "".join(self.inputs[i]) or "{}")
            if i in self.inputs
            else call
            for i, call in sorted(self.calls.items())
        ]
        events: list[ProviderEvent] = list(calls)
        if self.usage is not None:
            events.append(self.usage)
        reason = STOP_REASONS.get(self.reason, "content_filter")
        events.append(Finish("tool_calls" if calls else reason))
        return events


def _exception(headers: dict[str, Any], payload: bytes) -> ProviderError:
    """An exception message inside the stream (`:exception-type`, a JSON `message`)."""
    name = str(headers.get(":exception-type") or headers.get(":error-code") or "exception")
    try:
        text = str(orjson.loads(payload).get("message", ""))
    except (orjson.JSONDecodeError, AttributeError):
        text = payload[:200].decode("utf-8", "replace")
    return ProviderError(
        f"upstream error: {name}: {text[:200]}", retryable=name not in FINAL_EXCEPTIONS
    )
