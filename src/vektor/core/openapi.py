"""Shared pieces of the OpenAPI description."""

from __future__ import annotations

from typing import Any

# One server-sent event as clients parse it (the `data` field carries a JSON object).
SSE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "data": {"type": "string"},
        "id": {"type": "string"},
        "event": {"type": "string"},
        "retry": {"type": "integer"},
    },
}


def sse_content() -> dict[str, Any]:
    """The `content` of a text/event-stream response."""
    return {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}}
