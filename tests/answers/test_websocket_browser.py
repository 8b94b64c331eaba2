"""/chat/ws in headless Chromium with the browser's own WebSocket, driven by the client class
of docs/websocket.md: an answer whose connection drops is resumed, every event once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.answers.test_websocket import served, token_of
from tests.monitoring.test_dashboard import CHROMIUM, until

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]
DOC = Path(__file__).parents[2] / "docs" / "websocket.md"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def documented_client() -> str:
    """The JavaScript block of docs/websocket.md."""
    blocks = re.findall(r"```js\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) == 1
    return str(blocks[0])


async def test_browser_socket_reconnects_and_resumes(chat_harness, upstream):
    from playwright.async_api import async_playwright

    harness, base = await served(chat_harness, upstream, "chunks=30;delay=0.05;text=a b c")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page()
            await page.goto(base + "/health")  # the app's origin
            await page.add_script_tag(
                content=documented_client() + "\nwindow.VektorChat = VektorChat;"
            )
            await page.evaluate(
                """([url, token]) => {
                  window.seen = [];
                  window.chat = new VektorChat(url, token, {
                    onEvent: (f) => window.seen.push(f),
                  });
                  window.chat.chat("b1", {
                    model: "scripted", messages: [{ role: "user", content: "hola" }],
                  });
                }""",
                [base.replace("http://", "ws://") + "/chat/ws", token_of(harness.headers)],
            )
            await until(page, "window.seen.filter((f) => f.type === 'delta').length >= 5")
            # The connection drops in the middle of the answer; the class reconnects.
            await page.evaluate("window.chat.ws.close()")
            await until(page, "window.seen.some((f) => f.type === 'done')", timeout=20_000)
            seen = await page.evaluate("window.seen")
            await page.evaluate("window.chat.close()")
        finally:
            await browser.close()
    answer = [f for f in seen if f.get("message_id") == seen[0]["message_id"]]
    assert [f["seq"] for f in answer] == list(range(1, len(answer) + 1))
    assert answer[-1]["finish_reason"] == "stop"
    # Events before the drop carry the chat's request_id; those resumed after it do not.
    assert answer[0]["request_id"] == "b1"
    assert answer[-1]["request_id"] is None
    text = "".join(f["content"] for f in answer if f["type"] == "delta")
    assert text.split() == ["a", "b", "c"] * 10
    conversation = answer[0]["conversation_id"]
    history = await harness.client.get(f"/chat/history/{conversation}", headers=harness.headers)
    assert history.json()["messages"][-1]["content"] == text
