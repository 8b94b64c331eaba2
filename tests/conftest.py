"""Fixtures: every test runs on SQLite and on PostgreSQL, against the real app and lifespan."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import delete

from tests.support.databases import backends, temporary_database
from tests.support.instances import RedisServer
from tests.support.redis_keys import drop_namespace
from tests.support.upstream import ScriptedUpstream, free_port
from vektor.app import create_app
from vektor.core.config import Settings, get_settings
from vektor.core.migrations import upgrade
from vektor.models import Base

TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789abcdef"
PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test reads the developer's .env or writes into the working tree."""
    for key in list(os.environ):
        if key.startswith(("VEKTOR_ENV", "SECRET_KEY", "DATABASE_URL", "REDIS_URL")):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session", params=backends())
async def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A migrated database of the backend under test, shared by the session's tests."""
    async with temporary_database(request.param, tmp_path_factory.mktemp("db")) as url:
        await asyncio.to_thread(upgrade, url)
        yield url


def make_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for a test app: fast bcrypt, generous limits, logs in the test's folder."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "secret_key": TEST_SECRET,
        "log_dir": tmp_path / "logs",
        "bcrypt_rounds": 4,
        "rate_limit_auth": "1000/minute",
        "vektor_config_dir": tmp_path / "config",
        "backup_dir": tmp_path / "backups",
        "gc_freeze": False,  # many apps share one test process
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Default settings of the app under test."""
    return make_settings(database_url, tmp_path)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with its lifespan running; every table emptied afterwards."""
    application = create_app(settings)
    async with LifespanManager(application):
        yield application
        await empty_tables(application)


async def empty_tables(application: FastAPI) -> None:
    """Delete every row, children first, so the next test starts from nothing."""
    async with application.state.vektor.engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            await connection.execute(delete(table))


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client speaking to the app in process."""
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def register(
    client: httpx.AsyncClient, name: str = "alice", password: str = PASSWORD, **extra: str
) -> dict[str, Any]:
    """Register a user and return the response body."""
    response = await client.post(
        "/auth/register",
        json={"email": f"{name}@example.com", "username": name, "password": password, **extra},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def login(
    client: httpx.AsyncClient,
    name: str = "alice",
    password: str = PASSWORD,
    **form: str,
) -> dict[str, Any]:
    """Log in and return the token response."""
    response = await client.post(
        "/auth/login", data={"username": name, "password": password, **form}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    """Authorization header for a token response."""
    return {"Authorization": f"Bearer {tokens['access_token']}"}


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> dict[str, Any]:
    """A registered, logged-in user: her profile, tokens and auth header."""
    user = await register(client, "alice")
    tokens = await login(client, "alice")
    return {"user": user, "tokens": tokens, "headers": bearer(tokens)}


@pytest.fixture(scope="session")
def upstreams() -> Iterator[list[ScriptedUpstream]]:
    """Three scripted OpenAI-compatible servers on loopback, for the whole run."""
    servers = [ScriptedUpstream().start() for _ in range(3)]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def upstream(upstreams: list[ScriptedUpstream]) -> ScriptedUpstream:
    """The first scripted server, with its counters reset."""
    for server in upstreams:
        server.reset()
    return upstreams[0]


class ChatHarness:
    """An app built from a model_configs.json, and a logged-in user's client."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str]):
        self.app = app
        self.client = client
        self.headers = headers

    async def stream(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        """POST /chat/stream and collect (status, events, raw text)."""
        return await collect_stream(
            self.client, "POST", "/chat/stream", json=body, headers=headers or self.headers
        )


async def collect_stream(
    client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
) -> tuple[int, list[dict[str, Any]], str]:
    """Read a whole SSE response: status, events (with their ids) and the raw body."""
    async with client.stream(method, url, **kwargs) as response:
        raw = (await response.aread()).decode()
    return response.status_code, parse_sse(raw), raw


def parse_sse(raw: str) -> list[dict[str, Any]]:
    """Events of an SSE body, each its JSON data plus `_id`."""
    events = []
    for block in raw.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key] = value.removeprefix(" ")
        if "data" in fields:
            event = json.loads(fields["data"])
            raw_id = fields.get("id")
            event["_id"] = int(raw_id) if raw_id and raw_id.isdigit() else raw_id
            events.append(event)
    return events


@pytest.fixture
async def chat_harness(database_url: str, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Factory: build an app on the given deployments and log a user in."""
    opened: list[tuple[LifespanManager, httpx.AsyncClient, FastAPI]] = []
    servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []

    async def build(
        deployments: list[dict[str, Any]],
        *,
        live: bool = False,
        mcp: list[dict[str, Any]] | None = None,
        **overrides: Any,
    ) -> ChatHarness:
        """`live=True` serves the app with uvicorn on loopback; `mcp` writes mcp_servers.json."""
        config_dir = tmp_path / f"config{len(opened)}"
        config_dir.mkdir()
        (config_dir / "model_configs.json").write_text(json.dumps(deployments))
        if mcp is not None:
            (config_dir / "mcp_servers.json").write_text(json.dumps(mcp))
        values = {"vektor_config_dir": config_dir, "rate_limit_chat": "1000/minute", **overrides}
        settings = make_settings(database_url, tmp_path, **values)
        application = create_app(settings)
        manager = LifespanManager(application)
        await manager.__aenter__()
        if live:
            port = free_port()
            server = uvicorn.Server(
                uvicorn.Config(
                    application,
                    host="127.0.0.1",
                    port=port,
                    lifespan="off",
                    log_config=None,
                    access_log=False,
                )
            )
            servers.append((server, asyncio.create_task(server.serve())))
            while not server.started:
                await asyncio.sleep(0.01)
            client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30)
        else:
            transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 50001))
            client = httpx.AsyncClient(
                transport=transport, base_url="http://testserver", timeout=30
            )
        opened.append((manager, client, application))
        name = f"user{len(opened)}"
        await register(client, name)
        tokens = await login(client, name)
        return ChatHarness(application, client, bearer(tokens))

    yield build
    for server, task in servers:
        server.should_exit = True
        await task
    for manager, client, application in reversed(opened):
        await client.aclose()
        await manager.__aexit__(None, None, None)
        await empty_tables(application)


def scripted(
    upstream: ScriptedUpstream, model: str = "", name: str = "scripted", **extra: Any
) -> dict[str, Any]:
    """A model_configs.json entry pointing at a scripted upstream."""
    return {
        "name": name,
        "provider": "openai",
        "model": model or "chunks=5",
        "base_url": upstream.base_url,
        "api_key": "sk-test-secret",
        "timeout_s": 5,
        **extra,
    }


REDIS_URL = "redis://127.0.0.1:6379/0"  # the machine's Redis


@pytest.fixture
async def namespace() -> AsyncIterator[str]:
    """A Redis key namespace of the test's own on the machine's Redis, deleted afterwards."""
    name = f"vektor-test-{uuid.uuid4().hex[:8]}"
    yield name
    await drop_namespace(REDIS_URL, name)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A `redis-server` of the test's own on a spare port, stopped by its pid afterwards."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()
