"""`vektor admin users|set-quota|disable|enable`, run as an operator would, on the database
a running app serves: the same rules and effects as PATCH /admin/users/{id}."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import update

from tests.conftest import PASSWORD, bearer, login, make_settings, register
from tests.support.redis_keys import drop_namespace
from vektor.auth.models import User
from vektor.cli import main
from vektor.core.config import Settings

pytestmark = pytest.mark.usefixtures("app")
REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
async def settings(database_url: str, tmp_path: Path) -> AsyncIterator[Settings]:
    """The app shares Redis with the command, as the instances of a deployment do: that is
    how a disabling on the command line reaches the app's session cache at once."""
    namespace = f"vektor-test-{uuid.uuid4().hex[:8]}"
    yield make_settings(database_url, tmp_path, redis_url=REDIS_URL, redis_namespace=namespace)
    await drop_namespace(REDIS_URL, namespace)


@pytest.fixture
def vektor(monkeypatch, database_url, settings):
    """`vektor admin …` on the test's database, through the command's own `main` (a fresh
    event loop in a thread, as the command has; the process itself is tested once below)."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setenv("REDIS_NAMESPACE", settings.redis_namespace)

    def run(*args: str) -> Ran:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(["admin", *args])
            except SystemExit as exc:  # argparse refusing an argument
                code = int(exc.code or 0)
        return Ran(code, out.getvalue(), err.getvalue())

    async def ran(*args: str) -> Ran:
        return await asyncio.to_thread(run, *args)

    return ran


async def test_operators_list_limit_disable_and_enable_accounts(client, vektor):
    await register(client, "bob")
    await register(client, "carol")
    tokens = await login(client, "bob")

    listed = await vektor("users", "--json")
    assert listed.returncode == 0, listed.stderr
    users = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [u["username"] for u in users] == ["bob", "carol"]
    assert users[0]["usage_month"] == {"requests": 0, "tokens": 0, "cost": "0.000000000"}
    plain = await vektor("users", "--q", "car")
    assert plain.returncode == 0
    assert plain.stdout.startswith("carol@example.com\tcarol\t-\t")

    quota = await vektor(
        "set-quota",
        "bob@example.com",
        "--tokens-per-day",
        "500",
        "--budget-per-month",
        "1.25",
    )
    assert quota.returncode == 0, quota.stderr
    assert json.loads((await vektor("users", "--q", "bob", "--json")).stdout)["quota"] == {
        "tokens_per_day": 500,
        "requests_per_day": None,
        "budget_per_month": "1.250000000",
    }
    mine = (await client.get("/users/me/quota", headers=bearer(tokens))).json()
    assert mine["limits"]["tokens_per_day"] == 500
    back = await vektor("set-quota", "bob@example.com", "--tokens-per-day", "default", "--json")
    assert json.loads(back.stdout)["quota"]["tokens_per_day"] is None

    disabled = await vektor("disable", "bob@example.com")
    assert disabled.returncode == 0, disabled.stderr
    assert "disabled" in disabled.stdout
    assert (await client.get("/users/me", headers=bearer(tokens))).status_code == 401
    refused = await client.post("/auth/login", data={"username": "bob", "password": PASSWORD})
    assert (refused.status_code, refused.json()) == (403, {"detail": "Account disabled"})
    enabled = await vektor("enable", "bob@example.com")
    assert enabled.returncode == 0, enabled.stderr
    assert (
        await client.post("/auth/login", data={"username": "bob", "password": PASSWORD})
    ).status_code == 200


async def test_operators_get_the_same_refusals(app, client, vektor):
    admin = await register(client, "root")
    async with app.state.vektor.sessionmaker.begin() as session:
        await session.execute(update(User).values(is_admin=True))
    last = await vektor("disable", admin["email"])
    assert last.returncode == 1
    assert "last active admin" in last.stderr
    unknown = await vektor("disable", "nobody@example.com")
    assert unknown.returncode == 1
    assert "nobody@example.com" in unknown.stderr
    for bad in (["--tokens-per-day", "-5"], ["--budget-per-month", "lots"], []):
        result = await vektor("set-quota", admin["email"], *bad)
        assert result.returncode == 2, (bad, result.stderr)
    listed = json.loads((await vektor("users", "--json")).stdout)
    assert listed["disabled"] is False
    assert listed["quota"]["tokens_per_day"] is None


async def test_the_installed_command_sets_a_quota(client, database_url):
    await register(client, "dora")
    env = {**os.environ, "DATABASE_URL": database_url, "BCRYPT_ROUNDS": "4"}
    command = [sys.executable, "-m", "vektor", "admin", "set-quota", "dora@example.com"]
    result = await asyncio.to_thread(
        subprocess.run,
        [*command, "--requests-per-day", "9", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["quota"]["requests_per_day"] == 9
