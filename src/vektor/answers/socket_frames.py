"""The frames of /chat/ws (SPEC §3.8): what a client may send, and the server's frames
built from the answers' event log, the change feed and the pipeline's errors."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vektor.answers.event_log import LoggedEvent
from vektor.chat.schemas import ChatRequest
from vektor.core.database import is_database_down
from vektor.core.errors import AppError, RateLimited
from vektor.core.events import ChangeEvent

CLOSE_AUTH = 4401  # bad, missing or late token; the session revoked
CLOSE_POLICY = 1008  # a client that reads too slowly
CLOSE_TOO_BIG = 1009  # a frame over WS_MAX_FRAME_BYTES
CLOSE_UNAVAILABLE = 1013  # the database is down: try again later

RequestId = Annotated[str, Field(min_length=1, max_length=128)]
PONG = b'{"type":"pong"}'


class ChatFrame(ChatRequest):
    """Start an answer: the fields of POST /chat/stream, and the client's id for it."""

    type: Literal["chat"]
    request_id: RequestId


class CancelFrame(BaseModel):
    """Stop an answer, as POST /chat/stream/{id}/cancel."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["cancel"]
    message_id: uuid.UUID
    request_id: RequestId | None = None


class ResumeFrame(BaseModel):
    """Replay an answer's events after `after`, then follow it, as GET /chat/stream/{id}."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["resume"]
    message_id: uuid.UUID
    after: Annotated[int, Field(ge=0)] = 0
    request_id: RequestId | None = None


class SubscribeFrame(BaseModel):
    """Follow the change feed of /sync/events from a cursor (None: from now)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["subscribe"]
    after: Annotated[str, Field(max_length=64)] | None = None


class PingFrame(BaseModel):
    """Answered with a pong."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["ping"]


Frame = ChatFrame | CancelFrame | ResumeFrame | SubscribeFrame | PingFrame
FRAMES: dict[str, type[Frame]] = {
    "chat": ChatFrame,
    "cancel": CancelFrame,
    "resume": ResumeFrame,
    "subscribe": SubscribeFrame,
    "ping": PingFrame,
}


class FrameError(Exception):
    """A frame the server refuses: its error frame's status and detail."""

    def __init__(
        self,
        status: int,
        detail: Any,
        request_id: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(str(detail))
        self.status, self.detail = status, detail
        self.request_id, self.retry_after = request_id, retry_after

    def frame(self) -> bytes:
        """`{"type": "error", "request_id", "status", "detail"}` (and `retry_after` on 429)."""
        body: dict[str, Any] = {
            "type": "error",
            "request_id": self.request_id,
            "status": self.status,
            "detail": self.detail,
        }
        if self.retry_after is not None:
            body["retry_after"] = self.retry_after
        return orjson.dumps(body)


def parse_frame(text: str) -> Frame:
    """A client frame, validated; FrameError (400 not JSON, 422 unknown or invalid)."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise FrameError(400, "A frame must be a JSON object") from None
    if not isinstance(data, dict):
        raise FrameError(400, "A frame must be a JSON object")
    raw_id = data.get("request_id")
    request_id = raw_id if isinstance(raw_id, str) and 0 < len(raw_id) <= 128 else None
    kind = data.get("type")
    model = FRAMES.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise FrameError(422, f"Unknown frame type: {str(kind)[:64]!r}", request_id)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise FrameError(422, validation_detail(exc), request_id) from None


def validation_detail(exc: ValidationError) -> list[dict[str, Any]]:
    """Location, message and type of each error, as the HTTP 422 (the input not echoed)."""
    return [
        {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": err.get("type")}
        for err in exc.errors()
    ]


def refused(exc: BaseException, request_id: str | None) -> FrameError | None:
    """The error frame for what the pipeline raised, with the status the SSE route gives
    (its exception handlers); None for an error that no handler answers."""
    if isinstance(exc, RateLimited):
        return FrameError(429, exc.detail, request_id, retry_after=exc.retry_after)
    if isinstance(exc, AppError):
        return FrameError(exc.status_code, exc.detail, request_id)
    if is_database_down(exc):
        return FrameError(503, "Database unavailable", request_id)
    return None


class EventTags:
    """Adds `message_id`, `request_id` and `seq` to an answer's events, splicing bytes into
    the JSON the event log encoded once: no event is decoded and encoded again."""

    def __init__(self, message_id: uuid.UUID, request_id: str | None) -> None:
        known = b',"request_id":' + orjson.dumps(request_id)
        self.without_id = known  # `start` carries the message_id already
        self.with_id = b',"message_id":"' + str(message_id).encode() + b'"' + known

    def frame(self, event: LoggedEvent) -> bytes:
        """The event's JSON object with the tags."""
        tags = self.without_id if "message_id" in event.data else self.with_id
        return b'%s%s,"seq":%d}' % (event.payload[:-1], tags, event.id)


def sync_frame(event: ChangeEvent) -> bytes:
    """A change-feed event as `{"type": "sync", "event": {type, id, at}, "cursor"}`."""
    return orjson.dumps({"type": "sync", "event": event.payload(), "cursor": event.cursor})
