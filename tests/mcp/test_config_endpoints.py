"""GET /config/models and GET /config/mcp-servers: secrets masked, live health."""

from tests.conftest import scripted
from tests.mcp.test_chat_tools import tools_ready


async def test_models_config_masks_secrets(chat_harness, upstream, monkeypatch):
    monkeypatch.setenv("SOME_KEY_VAR", "sk-from-the-environment")  # a named variable must be set
    chat = await chat_harness(
        [scripted(upstream), scripted(upstream, name="other", api_key_env="SOME_KEY_VAR")]
    )
    response = await chat.client.get("/config/models", headers=chat.headers)
    assert response.status_code == 200
    rows = response.json()
    assert rows[0]["api_key"] == "***"
    assert "sk-test-secret" not in response.text
    assert "sk-from-the-environment" not in response.text
    assert rows[1]["api_key_env"] == "SOME_KEY_VAR"
    assert {row["state"] for row in rows} == {"healthy"}
    assert (await chat.client.get("/config/models")).status_code == 401


async def test_mcp_servers_with_live_health(chat_harness, upstream, mcp_servers, url):
    up, down = mcp_servers.start("up"), mcp_servers.start("down")
    chat = await chat_harness(
        [scripted(upstream)],
        mcp=[
            {"name": "tools", "url": url(up), "headers": {"Authorization": "Bearer hidden"}},
            {"name": "tools", "url": url(down), "weight": 0},
        ],
    )
    await tools_ready(chat)
    mcp_servers.kill(down)
    await chat.app.state.vektor.mcp.refresh()  # what the periodic probe does
    response = await chat.client.get("/config/mcp-servers", headers=chat.headers)
    assert response.status_code == 200
    rows = {row["url"]: row for row in response.json()}
    assert rows[url(up)]["healthy"] is True
    assert rows[url(up)]["headers"] == {"Authorization": "***"}
    assert "hidden" not in response.text
    assert rows[url(down)]["healthy"] is False
    assert rows[url(down)]["last_error"]
