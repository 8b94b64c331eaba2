"""Secrets in replica URLs, stdio commands and model base URLs never leave the server: not
through /config/*, /api/status, /metrics, nor the logs."""

import sys

from tests.conftest import scripted
from tests.mcp.test_chat_tools import tools_ready
from tests.monitoring.test_system import make_admin
from vektor.core.logging import flush_logs

SECRETS = ("mcp-query-secret", "stdio-flag-secret", "stdio-eq-secret", "model-userinfo-secret")


async def test_secrets_in_urls_and_commands_are_masked_everywhere(
    chat_harness, upstream, mcp_servers, url, tmp_path
):
    port = mcp_servers.start("replica-1")
    model = scripted(upstream, "chunks=2;text=Listo;tool=tools__whoami")
    model["base_url"] = upstream.base_url.replace("://", "://user:model-userinfo-secret@")
    del model["api_key"]  # aiohttp refuses both basic credentials and a bearer key
    stdio = [sys.executable, "-c", "pass", "--token", "stdio-flag-secret"]
    chat = await chat_harness(
        [model],
        mcp=[
            {"name": "tools", "url": f"{url(port)}?api_key=mcp-query-secret&v=2"},
            {
                "name": "files",
                "transport": "stdio",
                "timeout_s": 2,
                "command": [*stdio, "--api-key=stdio-eq-secret"],
            },
        ],
    )
    await tools_ready(chat)
    body = {"model": "scripted", "messages": [{"role": "user", "content": "who?"}]}
    status, events, raw = await chat.stream(body)
    assert status == 200
    assert any(e["type"] == "tool_result" and e["content"] == "replica-1" for e in events)

    servers = await chat.client.get("/config/mcp-servers", headers=chat.headers)
    rows = {row["name"]: row for row in servers.json()}
    assert rows["tools"]["url"] == f"{url(port)}?api_key=***&v=2"
    assert rows["files"]["command"][-3:] == ["--token", "***", "--api-key=***"]
    models = await chat.client.get("/config/models", headers=chat.headers)
    assert models.json()[0]["base_url"].startswith("http://***@127.0.0.1:")
    admin = await make_admin(chat.app, chat.client)
    api_status = await chat.client.get("/api/status", headers=admin)
    assert api_status.status_code == 200
    metrics = (await chat.client.get("/metrics")).text
    assert 'replica="tools#0"' in metrics
    assert 'deployment="scripted#0"' in metrics

    await flush_logs()
    logs = "".join(p.read_text() for p in (tmp_path / "logs").iterdir() if p.is_file())
    for text in (raw, servers.text, models.text, api_status.text, metrics, logs):
        for secret in SECRETS:
            assert secret not in text
