"""Rate limits on login, register, refresh and the routes that check a password or tell
whether an email is taken: per client address (an IPv6 client's /64) and per account."""

import asyncio
import secrets
import time
import uuid

import httpx
import pytest
from asgi_lifespan import LifespanManager

from tests.conftest import PASSWORD, bearer, empty_tables, login, make_settings, register
from tests.support.processes import serve_vektor, stop, vektor_env, wait_healthy
from tests.support.upstream import free_port
from vektor.app import create_app
from vektor.core.errors import RateLimited
from vektor.core.ratelimit import RateLimiter, SweptMemoryStorage


@pytest.fixture
async def limited(database_url, tmp_path):
    """An app allowing 3 auth requests a minute, with a client factory per address."""
    app = create_app(make_settings(database_url, tmp_path, rate_limit_auth="3/day"))
    async with LifespanManager(app) as manager:

        def client_from(address, headers=None):
            transport = httpx.ASGITransport(app=manager.app, client=(address, 1234))
            return httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers)

        yield client_from
        await empty_tables(app)


async def _login(client, username):
    return await client.post("/auth/login", data={"username": username, "password": "wrong-pass"})


async def test_per_address_limit_with_retry_after(limited):
    async with limited("10.0.0.1") as client:
        codes = [(await _login(client, f"user{i}")).status_code for i in range(4)]
        assert codes == [401, 401, 401, 429]
        blocked = await _login(client, "someone")
        assert blocked.status_code == 429
        assert int(blocked.headers["retry-after"]) >= 1
        assert blocked.json()["detail"]
    async with limited("10.0.0.2") as other:
        assert (await _login(other, "fresh")).status_code == 401


async def test_per_account_limit_across_addresses(limited):
    for i in range(3):
        async with limited(f"10.1.0.{i}") as client:
            assert (await _login(client, "victim")).status_code == 401
    async with limited("10.1.0.99") as client:
        response = await _login(client, "VICTIM")  # same account, other case
        assert response.status_code == 429
        assert "retry-after" in response.headers


async def test_register_is_limited(limited):
    async with limited("10.2.0.1") as client:
        codes = []
        for i in range(4):
            response = await client.post(
                "/auth/register",
                json={"email": f"u{i}@example.com", "username": f"user{i}", "password": PASSWORD},
            )
            codes.append(response.status_code)
        assert codes == [201, 201, 201, 429]


async def test_forwarded_for_ignored_without_trusted_proxy(limited):
    async with limited("10.3.0.1") as client:
        for i in range(3):
            await client.post(
                "/auth/login",
                data={"username": f"a{i}", "password": "x"},
                headers={"X-Forwarded-For": f"192.0.2.{i}"},
            )
        response = await client.post(
            "/auth/login",
            data={"username": "b", "password": "x"},
            headers={"X-Forwarded-For": "192.0.2.200"},
        )
        assert response.status_code == 429


@pytest.fixture
async def behind_proxy(database_url, tmp_path):
    """A client calling through a trusted proxy (10.9.0.5), with an auth budget of 2."""
    settings = make_settings(
        database_url, tmp_path, rate_limit_auth="2/day", trusted_proxies=["10.9.0.0/16"]
    )
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=("10.9.0.5", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client
        await empty_tables(app)


async def test_forwarded_for_believed_from_trusted_proxy(behind_proxy):
    for i in range(4):
        response = await behind_proxy.post(
            "/auth/login",
            data={"username": f"n{i}", "password": "x"},
            headers={"X-Forwarded-For": f"198.51.100.{i}"},
        )
        assert response.status_code == 401  # a different client each time


async def test_redis_storage_shares_one_budget_between_instances():
    """Two limiters on the same Redis (two processes in production) share the budget."""
    namespace = f"vektor-test-{uuid.uuid4().hex}"
    first = RateLimiter("redis://127.0.0.1:6379/0", namespace=namespace)
    second = RateLimiter("redis://127.0.0.1:6379/0", namespace=namespace)
    try:
        await first.hit("3/day", [("auth:ip", "1.2.3.4")])
        await second.hit("3/day", [("auth:ip", "1.2.3.4")])
        await first.hit("3/day", [("auth:ip", "1.2.3.4")])
        with pytest.raises(RateLimited) as caught:
            await second.hit("3/day", [("auth:ip", "1.2.3.4")])
        assert caught.value.retry_after >= 1
    finally:
        await first.reset()
        await first.close()
        await second.close()


async def test_in_process_counters_are_swept_at_most_once_per_interval():
    """Without Redis, a hit does not start a sweep over every counter when one ran less
    than `sweep_interval_s` ago (the library's own storage did, so a hit cost as much as
    the counters alive); an expired counter is swept out by the next sweep, and one still
    counts its budget."""
    limiter = RateLimiter()
    storage = limiter.storage
    assert isinstance(storage, SweptMemoryStorage)
    storage.sweep_interval_s = 0.3
    await limiter.hit("2/day", [("user", "ana")])
    await asyncio.sleep(0)  # the first hit's sweep runs
    first_sweep = storage.timer
    assert first_sweep is not None
    assert first_sweep.done()
    storage.expirations["gone"] = time.time() - 1  # an idle counter, already expired
    storage.storage["gone"] = 1
    await limiter.hit("2/day", [("user", "ana")])
    await asyncio.sleep(0)
    assert storage.timer is first_sweep
    assert "gone" in storage.expirations
    with pytest.raises(RateLimited):
        await limiter.hit("2/day", [("user", "ana")])
    await asyncio.sleep(0.35)
    await limiter.hit("2/day", [("user", "bea")])
    await asyncio.sleep(0)
    assert storage.timer is not first_sweep
    assert "gone" not in storage.expirations
    assert "gone" not in storage.storage


async def test_redis_down_fails_open():
    limiter = RateLimiter("redis://127.0.0.1:1/0", namespace="unreachable")
    try:
        for _ in range(5):
            await limiter.hit("1/day", [("auth:ip", "1.2.3.4")])
    finally:
        await limiter.close()


async def test_apps_sharing_redis_share_the_auth_budget(database_url, tmp_path):
    """Two app instances with REDIS_URL count one budget, like two processes in production."""
    from vektor.core.config import Settings

    async def client_for(app):
        transport = httpx.ASGITransport(app=app, client=("10.7.0.1", 1))
        return httpx.AsyncClient(transport=transport, base_url="http://t")

    # A fresh namespace so that earlier runs' counters do not matter.
    namespace = f"vektor-test-{uuid.uuid4().hex}"

    def settings_for(index: int) -> Settings:
        return make_settings(
            database_url,
            tmp_path / str(index),
            rate_limit_auth="3/day",
            redis_url="redis://127.0.0.1:6379/0",
            redis_namespace=namespace,
        )

    first, second = create_app(settings_for(1)), create_app(settings_for(2))
    async with LifespanManager(first), LifespanManager(second):
        one, two = await client_for(first), await client_for(second)
        async with one, two:
            codes = [
                (await _login(client, f"shared{i}")).status_code
                for i, client in enumerate([one, two, one, two])
            ]
        await first.state.vektor.rate_limiter.reset()
    assert codes == [401, 401, 401, 429]


@pytest.mark.parametrize("extra", [[], ["--prod", "--workers", "1"]], ids=["uvicorn", "gunicorn"])
def test_served_app_ignores_forwarded_for_from_loopback(tmp_path, extra):
    """Uvicorn's own proxy-headers middleware believes X-Forwarded-For from 127.0.0.1; the
    served app must leave that to TRUSTED_PROXIES."""
    port = free_port()
    env = vektor_env(tmp_path, RATE_LIMIT_AUTH="2/day", SECRET_KEY=secrets.token_hex(32))
    process = serve_vektor(port, env, tmp_path, *extra)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health", process)
        codes = [
            httpx.post(
                f"http://127.0.0.1:{port}/auth/login",
                data={"username": f"a{i}", "password": "x"},
                headers={"X-Forwarded-For": f"192.0.2.{i}"},
            ).status_code
            for i in range(3)
        ]
    finally:
        stop(process)
    assert codes[:2] == [401, 401]
    assert codes[2] == 429


async def _signed_in(limited, name, address):
    """A new account's auth header; registering and logging in cost `address` two hits."""
    async with limited(address) as client:
        await register(client, name)
        return bearer(await login(client, name))


async def _change_password(limited, address, headers):
    async with limited(address, headers) as client:
        body = {"current_password": "wrong-pass-1", "new_password": "another-pass-1"}
        return await client.post("/users/change-password", json=body)


async def test_change_password_limited_per_account(limited):
    """A stolen token earns no unlimited password guesses (nor bcrypt rounds), whatever the
    address it is used from."""
    headers = await _signed_in(limited, "carol", "10.4.0.1")
    codes = [
        (await _change_password(limited, f"10.4.1.{i}", headers)).status_code for i in range(4)
    ]
    assert codes == [400, 400, 400, 429]
    blocked = await _change_password(limited, "10.4.1.99", headers)
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) >= 1


async def test_change_password_limited_per_address(limited):
    first = await _signed_in(limited, "dave", "10.5.0.1")
    second = await _signed_in(limited, "erin", "10.5.0.2")
    for headers in (first, first, second):
        assert (await _change_password(limited, "10.5.0.9", headers)).status_code == 400
    assert (await _change_password(limited, "10.5.0.9", second)).status_code == 429


async def test_profile_email_probe_is_limited(limited):
    """PUT /users/me's 409 tells which emails exist: probing is counted like registering."""
    headers = await _signed_in(limited, "frank", "10.6.0.1")
    await _signed_in(limited, "grace", "10.6.0.2")
    async with limited("10.6.0.3", headers) as client:
        codes = [
            (await client.put("/users/me", json={"email": email})).status_code
            for email in ("grace@example.com", "nobody@example.com", "grace@example.com")
        ]
        assert codes == [409, 200, 409]
        probe = await client.put("/users/me", json={"email": "grace@example.com"})
        assert probe.status_code == 429
        assert "retry-after" in probe.headers
    async with limited("10.6.0.4", headers) as client:  # another address, same account
        assert (await client.put("/users/me", json={"username": "grace"})).status_code == 429


async def _login_from(limited, address, username, headers=None):
    async with limited(address, headers) as client:
        return (await _login(client, username)).status_code


async def test_ipv6_clients_share_their_64(limited):
    """One subscriber holds a whole /64: rotating inside it earns no new budget."""
    inside = ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:abcd::7", "2001:db8:1:2:ffff::9"]
    codes = [await _login_from(limited, address, f"v6n{i}") for i, address in enumerate(inside)]
    assert codes == [401, 401, 401, 429]
    assert await _login_from(limited, "2001:db8:1:3::1", "v6other") == 401  # the next /64


async def test_ipv4_mapped_ipv6_counts_by_full_address(limited):
    codes = [await _login_from(limited, "::ffff:10.8.0.1", f"m{i}") for i in range(3)]
    assert codes == [401, 401, 401]
    assert await _login_from(limited, "10.8.0.1", "m3") == 429  # the same IPv4 client
    assert await _login_from(limited, "::ffff:10.8.0.2", "m4") == 401  # not grouped by /64


async def test_forwarded_ipv6_clients_share_their_64(behind_proxy):
    codes = [
        (
            await behind_proxy.post(
                "/auth/login",
                data={"username": f"x{i}", "password": "x"},
                headers={"X-Forwarded-For": f"2001:db8:7:7::{i + 1}"},
            )
        ).status_code
        for i in range(3)
    ]
    assert codes == [401, 401, 429]
