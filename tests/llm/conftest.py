"""Fixtures of the provider tests: scripted native upstreams, real MCP servers, and the
three ways an answer leaves Vektor (/chat/stream, /v1 streamed and not)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ChatHarness
from tests.mcp.conftest import mcp_servers, url
from tests.support.bedrock_upstream import ACCESS_KEY_ID, SECRET_ACCESS_KEY
from tests.support.native_upstream import NativeUpstream

__all__ = ["mcp_servers", "url"]

QUESTION = [{"role": "user", "content": "Hola"}]


@pytest.fixture(scope="session")
def native_upstreams() -> Iterator[list[NativeUpstream]]:
    """Two scripted native-protocol servers on loopback, for the whole run."""
    servers = [NativeUpstream().start() for _ in range(2)]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def native(native_upstreams: list[NativeUpstream]) -> list[NativeUpstream]:
    """Both servers, their counters reset."""
    for server in native_upstreams:
        server.reset()
    return native_upstreams


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scripted Bedrock's credentials, in the variables the Bedrock entries name."""
    monkeypatch.setenv("TEST_AWS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("TEST_AWS_SECRET", SECRET_ACCESS_KEY)


def text_of(events: list[dict[str, Any]]) -> str:
    """The answer text of /chat/stream events."""
    return "".join(e["content"] for e in events if e["type"] == "delta")


def only(events: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The one event of that type."""
    [found] = [e for e in events if e["type"] == kind]
    return found


async def complete(chat: ChatHarness, model: str, **extra: Any) -> dict[str, Any]:
    """POST /v1/chat/completions, not streamed: the completion object."""
    body = {"model": model, "messages": QUESTION, **extra}
    response = await chat.client.post("/v1/chat/completions", json=body, headers=chat.headers)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def complete_streamed(chat: ChatHarness, model: str, **extra: Any) -> list[dict[str, Any]]:
    """POST /v1/chat/completions streamed with usage: its chunks."""
    body = {
        "model": model,
        "messages": QUESTION,
        "stream": True,
        "stream_options": {"include_usage": True},
        **extra,
    }
    chunks = []
    async with chat.client.stream(
        "POST", "/v1/chat/completions", json=body, headers=chat.headers
    ) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line.removeprefix("data: ")))
    return chunks


def streamed_text(chunks: list[dict[str, Any]]) -> str:
    """The text of /v1 chunks."""
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
