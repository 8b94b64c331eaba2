"""/mcp on the wire: each protocol revision, and bad input answered by the protocol's own
errors (never an HTTP 500)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from tests.conftest import bearer, login, register
from tests.support.gateway import mcp_client, start_gateway

pytestmark = pytest.mark.timeout(120)

ACCEPT = "application/json, text/event-stream"
MODERN = "2026-07-28"


def message(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC answer of a response, a JSON body or the first SSE `data:` event."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data:") and line[5:].strip():
                found: dict[str, Any] = json.loads(line[5:])
                return found
        raise AssertionError(f"no event in {response.text!r}")
    body: dict[str, Any] = response.json()
    return body


def modern(method: str, params: dict[str, Any], *, name: str | None = None) -> dict[str, Any]:
    """A 2026-07-28 request: the envelope in `_meta`, echoed by the routing headers."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": method}
    if name is not None:
        headers["Mcp-Name"] = name
    body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": {**params, "_meta": meta}}
    return {"json": body, "headers": headers}


@pytest.fixture
async def gateway(chat_harness, upstream, mcp_servers, url):
    port = mcp_servers.start("one")
    return await start_gateway(
        chat_harness,
        upstream,
        [{"name": "tools", "url": url(port)}],
        rate_limit_mcp="1000/minute",
        max_body_bytes=64 * 1024,
    )


async def _post(gateway, http, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {gateway.key}", "Accept": ACCEPT}
    headers.update(kwargs.pop("headers", {}))
    return await http.post(gateway.url, headers=headers, **kwargs)


async def test_2025_06_18_session(gateway):
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"},
        },
    }
    async with httpx.AsyncClient(timeout=30) as http:
        opened = await _post(gateway, http, json=init)
        assert opened.status_code == 200
        result = message(opened)["result"]
        assert result["protocolVersion"] == "2025-06-18"
        assert result["capabilities"]["tools"]["listChanged"] is True
        assert "resources" not in result["capabilities"]
        session = {"Mcp-Session-Id": opened.headers["mcp-session-id"]}
        session["MCP-Protocol-Version"] = "2025-06-18"
        done = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await _post(gateway, http, json=done, headers=session)).status_code == 202
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
        listed = await _post(gateway, http, json=listing, headers=session)
        names = {tool["name"] for tool in message(listed)["result"]["tools"]}
        assert "tools__add" in names
        # Another user presenting the session's id is told it does not exist.
        await register(gateway.chat.client, "mallory")
        other = bearer(await login(gateway.chat.client, "mallory"))
        stolen = await http.post(
            gateway.url, json=listing, headers={**session, "Accept": ACCEPT, **other}
        )
        assert stolen.status_code == 404


async def test_2026_07_28_is_stateless(gateway):
    async with httpx.AsyncClient(timeout=30) as http:
        discovered = await _post(gateway, http, **modern("server/discover", {}))
        assert discovered.status_code == 200
        assert "mcp-session-id" not in discovered.headers
        result = message(discovered)["result"]
        assert MODERN in result["supportedVersions"]
        assert "tools" in result["capabilities"]
        call = modern("tools/call", {"name": "tools__add", "arguments": {"a": 4, "b": 5}})
        call["headers"]["Mcp-Name"] = "tools__add"
        answered = await _post(gateway, http, **call)
        assert answered.status_code == 200
        assert "mcp-session-id" not in answered.headers
        assert message(answered)["result"]["content"][0]["text"] == "9"


@pytest.mark.parametrize(
    ("body", "codes"),
    [
        ("{not json", {-32700}),
        ('{"jsonrpc": "2.0", "id": 1}', {-32600, -32602}),
        ("[1, 2, 3]", {-32600, -32602}),
    ],
)
async def test_malformed_json_rpc(gateway, body, codes):
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await _post(
            gateway, http, content=body, headers={"Content-Type": "application/json"}
        )
    assert 400 <= answer.status_code < 500, answer.text
    assert message(answer)["error"]["code"] in codes


async def test_unknown_method(gateway):
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await _post(gateway, http, **modern("sampling/frobnicate", {}))
    assert answer.status_code < 500
    assert message(answer)["error"]["code"] == -32601


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_unknown_tool_and_bad_arguments(gateway, mode):
    async with mcp_client(gateway.url, gateway.key, mode) as client:
        with pytest.raises(MCPError) as unknown:
            await client.call_tool("tools__nope", {})
        assert unknown.value.error.code == -32602
        with pytest.raises(MCPError):
            await client.call_tool("no-separator", {})
        bad = await client.call_tool("tools__add", {"a": "two", "b": 3})
        assert bad.is_error is True
        assert "Invalid arguments for tools__add: a:" in bad.content[0].text
        missing = await client.call_tool("tools__add", {"a": 1})
        assert missing.is_error is True
        assert "'b' is a required property" in missing.content[0].text
        assert (await client.call_tool("tools__add", {"a": 1, "b": 1})).content[0].text == "2"


async def test_oversize_body_is_413(gateway):
    call = modern("tools/call", {"name": "tools__add", "arguments": {"a": 1, "b": "x" * 100_000}})
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await _post(gateway, http, **call)
    assert answer.status_code == 413


async def test_rate_limit_per_user(chat_harness, upstream, mcp_servers, url):
    port = mcp_servers.start("one")
    gateway = await start_gateway(
        chat_harness, upstream, [{"name": "tools", "url": url(port)}], rate_limit_mcp="3/day"
    )
    async with mcp_client(gateway.url, gateway.key) as client:
        for _ in range(3):
            assert (await client.call_tool("tools__add", {"a": 1, "b": 1})).is_error is False
        with pytest.raises(MCPError) as limited:
            await client.call_tool("tools__add", {"a": 1, "b": 1})
        assert limited.value.error.code == -32029
        assert limited.value.error.data["retry_after"] >= 1
        assert len((await client.list_tools()).tools) > 0  # listing is not limited
