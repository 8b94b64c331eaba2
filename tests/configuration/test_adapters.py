"""/config/adapters and /config/reload: admin only, name and URL attacks, atomic writes,
webhook delivery with retries, reload without restart."""

import asyncio
import json

from tests.conftest import scripted
from tests.monitoring.test_system import make_admin
from vektor.core.logging import flush_logs

HOOK = {"kind": "webhook", "url": "http://93.184.216.34/hook"}


async def test_admin_saves_and_anyone_logged_in_lists(app, client, alice, settings):
    assert (await client.get("/config/adapters", headers=alice["headers"])).json() == []
    body = {"name": "alerts", "settings": HOOK}
    refused = await client.post("/config/adapters", json=body, headers=alice["headers"])
    assert refused.status_code == 403
    admin = await make_admin(app, client)
    saved = await client.post("/config/adapters", json=body, headers=admin)
    assert saved.status_code == 201
    assert saved.json() == {"detail": "Adaptador guardado"}
    listed = (await client.get("/config/adapters", headers=alice["headers"])).json()
    assert listed == [{"name": "alerts", "path": "adapters/alerts.json"}]
    path = settings.vektor_config_dir / "adapters" / "alerts.json"
    assert json.loads(path.read_text()) == HOOK
    replaced = {"name": "alerts", "settings": {**HOOK, "events": ["conversation.finished"]}}
    assert (await client.post("/config/adapters", json=replaced, headers=admin)).status_code == 201
    assert json.loads(path.read_text())["events"] == ["conversation.finished"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["alerts.json"]  # no temp files


class Receiver:
    """A tiny HTTP server on loopback that records JSON bodies; answers from a script."""

    def __init__(self, statuses):
        self.statuses = list(statuses)
        self.bodies = []
        self.server = None

    async def handle(self, reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        self.bodies.append(json.loads(await reader.readexactly(length)))
        status = self.statuses.pop(0) if self.statuses else 200
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        writer.close()

    async def __aenter__(self):
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()


async def test_webhook_gets_finished_conversations_with_retries(chat_harness, upstream):
    async with Receiver([503]) as receiver:
        chat = await chat_harness(
            [scripted(upstream, "chunks=2")], adapter_url_allowlist=["127.0.0.1"]
        )
        admin = await make_admin(chat.app, chat.client, "boss")
        hook = {"kind": "webhook", "url": f"http://127.0.0.1:{receiver.port}/hook"}
        saved = await chat.client.post(
            "/config/adapters", json={"name": "hook", "settings": hook}, headers=admin
        )
        assert saved.status_code == 201
        status, events, _ = await chat.stream(
            {"model": "scripted", "messages": [{"role": "user", "content": "hola"}]}
        )
        assert status == 200
        for _ in range(100):
            if len(receiver.bodies) >= 2:
                break
            await asyncio.sleep(0.05)
        # The first attempt got a 503; the retry delivered the same event.
        assert len(receiver.bodies) == 2
        assert receiver.bodies[0] == receiver.bodies[1]
        delivered = receiver.bodies[1]
        assert delivered["event"] == "conversation.finished"
        assert delivered["conversation_id"] == events[0]["conversation_id"]
        assert delivered["finish_reason"] == "stop"
        assert "content" not in delivered  # no conversation text leaves the server
        assert chat.app.state.vektor.adapters.delivered == 1


async def test_reload_without_restart(chat_harness, upstream, tmp_path):
    chat = await chat_harness([scripted(upstream, name="first")])
    admin = await make_admin(chat.app, chat.client, "boss")
    config_dir = chat.app.state.vektor.settings.vektor_config_dir
    models = config_dir / "model_configs.json"
    assert (await chat.client.post("/config/reload", headers=chat.headers)).status_code == 403
    models.write_text(
        json.dumps([scripted(upstream, name="first"), scripted(upstream, name="second")])
    )
    reloaded = await chat.client.post("/config/reload", headers=admin)
    assert reloaded.status_code == 200
    assert reloaded.json()["models"] == 2
    names = [m["name"] for m in (await chat.client.get("/chat/models", headers=admin)).json()]
    assert names == ["first", "second"]
    models.write_text('[{"name": "broken"')
    broken = await chat.client.post("/config/reload", headers=admin)
    assert broken.status_code == 422
    names = [m["name"] for m in (await chat.client.get("/chat/models", headers=admin)).json()]
    assert names == ["first", "second"]  # an invalid file changes nothing


async def test_delivery_connects_only_to_public_addresses(chat_harness, upstream, tmp_path):
    """A webhook whose host now resolves to an internal address (as after a DNS rebinding:
    the file on disk was checked when it was saved) is refused on the connection itself,
    and neither the log nor the counters quote its URL."""
    async with Receiver([]) as receiver:
        chat = await chat_harness([scripted(upstream, "chunks=2")])
        state = chat.app.state.vektor
        folder = state.settings.vektor_config_dir / "adapters"
        folder.mkdir()
        for name, host in (("literal", "127.0.0.1"), ("named", "localhost")):
            url = f"http://{host}:{receiver.port}/hook?token=webhook-secret"
            (folder / f"{name}.json").write_text(json.dumps({"kind": "webhook", "url": url}))
        await state.adapters.reload()
        body = {"model": "scripted", "messages": [{"role": "user", "content": "hola"}]}
        assert (await chat.stream(body))[0] == 200
        for _ in range(200):
            if state.adapters.failed >= 2:
                break
            await asyncio.sleep(0.05)
        assert state.adapters.failed == 2
        assert receiver.bodies == []
    await flush_logs()
    logs = "".join(p.read_text() for p in (tmp_path / "logs").iterdir() if p.is_file())
    assert "adapter literal did not take" in logs
    assert "webhook-secret" not in logs
