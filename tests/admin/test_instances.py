"""Two real `vektor serve` processes on one PostgreSQL database and one Redis: an account
disabled through A is refused on B at once (access token and API key); a quota admits the
same total across both as on one; parallel answers near the limit overshoot it by no more
than the answers already admitted when it was reached."""

from __future__ import annotations

import asyncio
import json
import shutil
import time

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import scripted
from tests.support.databases import temporary_database
from tests.support.instances import serve_instances

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
PASSWORD = "long enough password"
QUESTION = {"model": "q", "messages": [{"role": "user", "content": "hola"}]}


@pytest.fixture
async def instances(tmp_path, redis_server, upstream):
    """Two instances sharing the database and Redis: their base URLs and the database URL."""
    (tmp_path / "config").mkdir()
    models = [scripted(upstream, "chunks=3;delay=0.1", name="q")]
    (tmp_path / "config" / "model_configs.json").write_text(json.dumps(models))
    limits = {
        "RATE_LIMIT_AUTH": "1000/minute",
        "RATE_LIMIT_CHAT": "1000/minute",
        "MAX_CONCURRENT_STREAMS": "50",
    }
    async with (
        temporary_database("postgresql", tmp_path) as url,
        serve_instances(tmp_path, url, redis_server.port, limits, deadline_s=90) as bases,
    ):
        yield bases, url


async def account(client: httpx.AsyncClient, name: str) -> tuple[str, dict[str, str], dict]:
    """Register and log in: the user's id, auth header and tokens."""
    registered = await client.post(
        "/auth/register",
        json={"email": f"{name}@example.com", "username": name, "password": PASSWORD},
    )
    assert registered.status_code == 201, registered.text
    login = await client.post("/auth/login", data={"username": name, "password": PASSWORD})
    assert login.status_code == 200, login.text
    tokens = login.json()
    return registered.json()["id"], {"Authorization": f"Bearer {tokens['access_token']}"}, tokens


async def promote(database_url: str, name: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text('UPDATE "user" SET is_admin = true WHERE username = :name'), {"name": name}
            )
    finally:
        await engine.dispose()


async def admin_of(client: httpx.AsyncClient, database_url: str) -> dict[str, str]:
    """An admin's auth header (logged in after being promoted)."""
    await account(client, "root")
    await promote(database_url, "root")
    login = await client.post("/auth/login", data={"username": "root", "password": PASSWORD})
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def tokens_used(database_url: str, user_id: str) -> list[int]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT prompt_tokens + completion_tokens FROM usage WHERE user_id = :u"),
                {"u": user_id},
            )
            return [int(r[0]) for r in rows.all()]
    finally:
        await engine.dispose()


async def test_disabled_through_a_is_refused_on_b_at_once(instances):
    (a_base, b_base), url = instances
    async with (
        httpx.AsyncClient(base_url=a_base, timeout=30) as a,
        httpx.AsyncClient(base_url=b_base, timeout=30) as b,
    ):
        admin = await admin_of(a, url)
        bob_id, bob, tokens = await account(a, "bob")
        created = await a.post("/users/me/api-keys", json={"name": "k"}, headers=bob)
        key = {"Authorization": f"Bearer {created.json()['key']}"}
        assert (await b.get("/users/me", headers=bob)).status_code == 200
        assert (await b.get("/v1/models", headers=key)).status_code == 200

        disabled = await a.patch(f"/admin/users/{bob_id}", json={"disabled": True}, headers=admin)
        assert disabled.status_code == 200
        assert (await b.get("/users/me", headers=bob)).status_code == 401
        assert (await b.get("/v1/models", headers=key)).status_code == 401
        assert (await b.post("/v1/chat/completions", json=QUESTION, headers=key)).status_code == 401
        refresh = await b.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refresh.status_code == 401
        login = await b.post("/auth/login", data={"username": "bob", "password": PASSWORD})
        assert (login.status_code, login.json()) == (403, {"detail": "Account disabled"})

        await b.patch(f"/admin/users/{bob_id}", json={"disabled": False}, headers=admin)
        assert (await a.get("/v1/models", headers=key)).status_code == 200
        assert (await a.get("/users/me", headers=bob)).status_code == 401  # stays signed out


async def _until_refused(clients: list[httpx.AsyncClient], headers: dict[str, str]) -> int:
    """Ask in turn through each client until one is refused: the answers admitted."""
    for admitted in range(50):
        client = clients[admitted % len(clients)]
        answer = await client.post("/v1/chat/completions", json=QUESTION, headers=headers)
        if answer.status_code == 429:
            assert answer.json()["error"]["param"] == "tokens_per_day"
            return admitted
        assert answer.status_code == 200, answer.text
    raise AssertionError("never refused")


async def test_a_quota_admits_the_same_total_across_two_instances_as_on_one(instances):
    (a_base, b_base), url = instances
    async with (
        httpx.AsyncClient(base_url=a_base, timeout=30) as a,
        httpx.AsyncClient(base_url=b_base, timeout=30) as b,
    ):
        admin = await admin_of(a, url)
        one_id, one, _ = await account(a, "one")
        two_id, two, _ = await account(a, "two")
        for user_id in (one_id, two_id):  # 14 tokens an answer: the 5th reaches 70
            quota = {"quota": {"tokens_per_day": 70}}
            assert (
                await a.patch(f"/admin/users/{user_id}", json=quota, headers=admin)
            ).status_code == 200
        on_one = await _until_refused([a], one)
        on_two = await _until_refused([a, b], two)
    assert on_one == on_two == 5
    assert sum(await tokens_used(url, one_id)) == sum(await tokens_used(url, two_id)) == 70


async def test_parallel_answers_near_the_limit_overshoot_only_by_those_in_progress(instances):
    (a_base, b_base), url = instances
    limit = 70
    async with (
        httpx.AsyncClient(base_url=a_base, timeout=60) as a,
        httpx.AsyncClient(base_url=b_base, timeout=60) as b,
    ):
        admin = await admin_of(a, url)
        user_id, headers, _ = await account(a, "burst")
        quota = {"quota": {"tokens_per_day": limit}}
        assert (
            await a.patch(f"/admin/users/{user_id}", json=quota, headers=admin)
        ).status_code == 200

        async def ask(n: int) -> tuple[int, float, float]:
            await asyncio.sleep(n * 0.06)  # 20 requests over about 1.2 s, A and B in turn
            sent = time.monotonic()
            client = (a, b)[n % 2]
            answer = await client.post("/v1/chat/completions", json=QUESTION, headers=headers)
            assert answer.status_code in (200, 429), answer.text
            return answer.status_code, sent, time.monotonic()

        results = await asyncio.gather(*(ask(n) for n in range(20)))
        after = await b.post("/v1/chat/completions", json=QUESTION, headers=headers)
        assert after.status_code == 429
    rows = await tokens_used(url, user_id)
    per_answer = rows[0]
    assert set(rows) == {per_answer}  # every answer the same size: the bound is in answers
    admitted = sorted((r for r in results if r[0] == 200), key=lambda r: r[2])
    assert len(rows) == len(admitted)
    # The moment the limit was reached, as the client saw it: the end of the answer that
    # took the sum of finished answers to the limit.
    needed = -(-limit // per_answer)
    assert len(admitted) >= needed
    reached = admitted[needed - 1][2]
    in_progress = [r for r in admitted if r[2] >= reached]  # the crossing answer included
    overshoot = sum(rows) - limit
    assert overshoot < per_answer * len(in_progress)
    # Nothing asked after the limit was reached got in, through either instance.
    assert all(sent < reached for _, sent, _ in admitted)
