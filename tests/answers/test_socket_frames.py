"""The frames of /chat/ws on their own: tags spliced into the event log's JSON, parsing,
and the statuses of the pipeline's errors."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy.exc import OperationalError

from vektor.answers.event_log import encode_event
from vektor.answers.socket_frames import (
    ChatFrame,
    EventTags,
    FrameError,
    ResumeFrame,
    parse_frame,
    refused,
)
from vektor.core.errors import Invalid, NotFound, RateLimited, Unavailable

MESSAGE = uuid.UUID("12345678-1234-4321-8765-123456789abc")


@pytest.mark.parametrize("request_id", ["r1", None, 'quote " and \\ and é'])
def test_tags_are_added_once_each(request_id):
    tags = EventTags(MESSAGE, request_id)
    start = encode_event(1, {"type": "start", "message_id": str(MESSAGE), "model": "m"})
    delta = encode_event(2, {"type": "delta", "content": "Hola \n }"})
    for event in (start, delta):
        raw = tags.frame(event)
        assert raw.count(b'"message_id"') == 1
        frame = json.loads(raw)
        assert frame == {
            **event.data,
            "message_id": str(MESSAGE),
            "request_id": request_id,
            "seq": event.id,
        }


def test_frames_parse_or_say_why_not():
    chat = parse_frame(
        json.dumps(
            {
                "type": "chat",
                "request_id": "a",
                "model": "m",
                "messages": [{"role": "user", "content": "hi"}],
            }
        )
    )
    assert isinstance(chat, ChatFrame)
    assert chat.request_id == "a"
    resume = parse_frame(json.dumps({"type": "resume", "message_id": str(MESSAGE), "after": 3}))
    assert isinstance(resume, ResumeFrame)
    assert resume.after == 3
    cases = [
        ("{", 400, None),
        ("[1]", 400, None),
        ('{"type": 5}', 422, None),
        ('{"type": "auth", "token": "t", "request_id": "z"}', 422, "z"),
        ('{"type": "resume", "message_id": "x", "after": -1}', 422, None),
        ('{"type": "ping", "extra": 1}', 422, None),
        ('{"type": "chat", "request_id": "", "model": "m", "messages": []}', 422, None),
    ]
    for text, status, request_id in cases:
        with pytest.raises(FrameError) as caught:
            parse_frame(text)
        assert (caught.value.status, caught.value.request_id) == (status, request_id), text


def test_pipeline_errors_keep_their_http_status():
    assert refused(NotFound("Unknown model"), "r").frame() == (
        b'{"type":"error","request_id":"r","status":404,"detail":"Unknown model"}'
    )
    limited = json.loads(refused(RateLimited(7, "Too many"), None).frame())
    assert (limited["status"], limited["retry_after"]) == (429, 7)
    assert refused(Invalid("bad"), "r").status == 422
    assert refused(Unavailable("down"), "r").status == 503
    database_down = OperationalError("SELECT 1", {}, ConnectionRefusedError())
    assert refused(database_down, "r").status == 503
    assert refused(ValueError("a bug"), "r") is None
