"""Upstream requests honour HTTP_PROXY and NO_PROXY, read once per upstream host."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from vektor.llm.base import ChatMessage, GenerationRequest, TextDelta
from vektor.llm.config import DeploymentConfig
from vektor.llm.http import env_proxy, new_session
from vektor.llm.providers.openai import OpenAIProvider


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


class ForwardProxy:
    """A plain-HTTP forward proxy on loopback that records each request's first lines."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        target = head.split(b" ", 2)[1]  # http://host:port/path
        host, _, port = target.split(b"/")[2].partition(b":")
        up_reader, up_writer = await asyncio.open_connection(host.decode(), int(port))
        method, _, rest = head.partition(b" ")
        path = b"/" + target.split(b"/", 3)[3]
        up_writer.write(method + b" " + path + b" " + rest.split(b" ", 1)[1])
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://user:secret@127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@pytest.fixture
def fresh_proxies() -> Iterator[None]:
    env_proxy.cache_clear()
    yield
    env_proxy.cache_clear()


async def _answer(base_url: str) -> str:
    config = DeploymentConfig(name="m", provider="openai", model="chunks=3", base_url=base_url)
    async with new_session() as session:
        provider = OpenAIProvider(config, session)
        request = GenerationRequest(messages=[ChatMessage(role="user", content="hola")])
        pieces = [e.content async for e in provider.stream(request) if isinstance(e, TextDelta)]
    return "".join(pieces)


async def test_upstream_through_the_environment_proxy(upstream, monkeypatch, fresh_proxies):
    proxy = ForwardProxy()
    async with proxy as proxy_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        assert await _answer(upstream.base_url) == "Hola desde el"
        assert len(proxy.heads) == 1
        assert proxy.heads[0].startswith(b"POST " + upstream.base_url.encode())
        assert b"Proxy-Authorization: Basic dXNlcjpzZWNyZXQ=" in proxy.heads[0]

        # read once per host: a later change of the environment needs a restart
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        await _answer(upstream.base_url)
        assert len(proxy.heads) == 2


async def test_no_proxy_goes_direct(upstream, monkeypatch, fresh_proxies):
    proxy = ForwardProxy()
    async with proxy as proxy_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        assert await _answer(upstream.base_url) == "Hola desde el"
        assert proxy.heads == []
