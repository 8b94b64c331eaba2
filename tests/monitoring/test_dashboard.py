"""The dashboard in a real browser: headless Chromium (Debian's), driven by Playwright."""

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import collect_stream, scripted
from tests.monitoring.test_system import make_admin

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("VEKTOR_ARTIFACTS", Path(__file__).parents[2] / "artifacts"))

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)"
)


async def until(page, expression, timeout=10_000):
    """Poll a JavaScript expression from outside the page: the page's security policy
    forbids the string evaluation that Playwright's wait_for_function does inside it."""
    for _ in range(timeout // 50):
        if await page.evaluate(expression):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never true: {expression}")


async def test_dashboard_signs_in_and_shows_live_state(chat_harness, upstream, mcp_servers, url):
    from playwright.async_api import async_playwright

    port = mcp_servers.start("replica-a")
    chat = await chat_harness(
        [scripted(upstream, "chunks=3;delay=0.01", name="gpt-demo")],
        mcp=[{"name": "tools", "url": url(port)}],
        live=True,
    )
    admin = await make_admin(chat.app, chat.client, "admin")
    for _ in range(3):  # some traffic to chart
        await collect_stream(
            chat.client,
            "POST",
            "/chat/stream",
            json={"model": "gpt-demo", "messages": [{"role": "user", "content": "hola"}]},
            headers=chat.headers,
        )
    await chat.app.state.vektor.mcp.refresh()
    await chat.app.state.vektor.mcp.call("tools__whoami", "{}", 10)
    base = str(chat.client.base_url)

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 1000})
            await page.goto(base + "/")
            assert await page.title() == "Vektor — dashboard"
            # A wrong password stays on the form with a message.
            await page.fill("#username", "admin")
            await page.fill("#password", "not the password")
            await page.click("button[type=submit]")
            await until(page, "document.getElementById('error').textContent !== ''")
            assert await page.is_visible("#login")
            # A non-admin is told the dashboard is for administrators.
            await page.fill("#username", "user1")
            await page.fill("#password", "correct horse battery")
            await page.click("button[type=submit]")
            await until(
                page, "document.getElementById('error').textContent.includes('administrators')"
            )
            # The admin signs in and sees the live state.
            await page.fill("#username", "admin")
            await page.fill("#password", "correct horse battery")
            await page.click("button[type=submit]")
            await page.wait_for_selector("#models tr", timeout=10_000)
            models = await page.inner_text("#models")
            assert "gpt-demo" in models
            assert "healthy" in models
            mcp = await page.inner_text("#mcp")
            assert "tools" in mcp
            assert "healthy" in mcp
            assert "POST /chat/stream" in await page.inner_text("#routes")
            # It refreshes by itself: a second sample draws the charts' first line.
            before = await page.inner_text("#updated")
            await until(
                page,
                f"document.getElementById('updated').textContent !== {before!r}",
                timeout=10_000,
            )
            drawn = await page.evaluate(
                """() => {
                    const c = document.getElementById('c-rps');
                    const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                    let lit = 0;
                    for (let i = 3; i < data.length; i += 4) if (data[i] > 0) lit++;
                    return lit;
                }"""
            )
            assert drawn > 0
            assert await page.get_attribute("a[href='/docs']", "href") == "/docs"
            await asyncio.to_thread(ARTIFACTS.mkdir, parents=True, exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        finally:
            await browser.close()
    assert admin  # the admin's own session is untouched by the browser's


async def test_signing_out_ends_the_session_and_one_browser_is_one_device(chat_harness, upstream):
    """Sign out revokes the dashboard's session on the server; signing in again from the
    same browser reuses its device; the pages break none of their own security policy."""
    from playwright.async_api import async_playwright

    chat = await chat_harness([scripted(upstream, "chunks=1", name="m")], live=True)
    admin = await make_admin(chat.app, chat.client, "admin")
    base = str(chat.client.base_url)

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = await browser.new_page()
            violations: list[str] = []
            page.on(
                "console",
                lambda m: (
                    violations.append(m.text) if "Content Security Policy" in m.text else None
                ),
            )
            tokens = []
            for _ in range(2):
                await page.goto(base + "/")
                await page.fill("#username", "admin")
                await page.fill("#password", "correct horse battery")
                await page.click("button[type=submit]")
                await page.wait_for_selector("#models tr", timeout=10_000)
                tokens.append(await page.evaluate("sessionStorage.getItem('vektor-token')"))
                headers = {"Authorization": f"Bearer {tokens[-1]}"}
                assert (await chat.client.get("/users/me", headers=headers)).status_code == 200
                await page.click("#logout")
                await until(
                    page, "document.getElementById('error').textContent.includes('Signed out')"
                )
                for _ in range(50):  # the logout request is on its way
                    if (await chat.client.get("/users/me", headers=headers)).status_code == 401:
                        break
                    await asyncio.sleep(0.05)
                assert (await chat.client.get("/users/me", headers=headers)).status_code == 401
            for path in ("/docs", "/redoc"):
                await page.goto(base + path)
                await page.wait_for_load_state("domcontentloaded")
            assert violations == []
        finally:
            await browser.close()
    devices = (await chat.client.get("/sync/devices", headers=admin)).json()
    assert [d["name"] for d in devices].count("Dashboard") == 1
