"""GET /admin/users and PATCH /admin/users/{id}: who may call them, every bad input refused
with nothing changed, the last active admin kept, disabling that stops sessions and API keys
at once, and quotas set per user."""

from __future__ import annotations

import uuid

import pytest

from tests.admin.helpers import make_admin, new_key
from tests.conftest import PASSWORD, bearer, login, register

pytestmark = pytest.mark.usefixtures("app")


async def _listed(client, admin, **params):
    response = await client.get("/admin/users", params=params, headers=admin["headers"])
    assert response.status_code == 200, response.text
    return response.json()


async def test_only_admins_may_list_or_change(app, client, alice):
    response = await client.get("/admin/users", headers=alice["headers"])
    assert response.status_code == 403
    assert response.json() == {"detail": "Admin privileges required"}
    me = alice["user"]["id"]
    patch = await client.patch(
        f"/admin/users/{me}", json={"is_admin": True}, headers=alice["headers"]
    )
    assert patch.status_code == 403
    assert (await client.get("/admin/users")).status_code == 401
    assert (await client.get("/users/me", headers=alice["headers"])).json()["id"] == me


async def test_listing_shape_search_and_pages(app, client):
    admin = await make_admin(app, client, "root")
    for name in ("bob", "carol", "dave"):
        await register(client, name)
    users = await _listed(client, admin)
    assert [u["username"] for u in users] == ["root", "bob", "carol", "dave"]
    root = users[0]
    assert set(root) == {
        "id",
        "email",
        "username",
        "is_admin",
        "disabled",
        "created_at",
        "last_seen",
        "quota",
        "mcp_pools",
        "usage_month",
    }
    assert root["is_admin"] is True
    assert root["disabled"] is False
    assert root["last_seen"] is not None  # logged in
    assert users[1]["last_seen"] is None  # never logged in
    assert root["quota"] == {
        "tokens_per_day": None,
        "requests_per_day": None,
        "budget_per_month": None,
    }
    assert root["usage_month"] == {"requests": 0, "tokens": 0, "cost": "0.000000000"}
    assert root["mcp_pools"] is None
    assert [u["username"] for u in await _listed(client, admin, q="CAR")] == ["carol"]
    assert [
        u["username"] for u in await _listed(client, admin, q="example.com", limit=2, offset=1)
    ] == ["bob", "carol"]
    assert await _listed(client, admin, q="%") == []  # no wildcard: a literal character
    for bad in (
        {"limit": 0},
        {"limit": 501},
        {"offset": -1},
        {"q": ""},
        {"q": "a\x00"},
        {"limit": "x"},
    ):
        response = await client.get("/admin/users", params=bad, headers=admin["headers"])
        assert response.status_code == 422, bad
        assert response.json()["detail"][0]["loc"][-1] == next(iter(bad))


BAD_PATCHES = [
    ({"nickname": "x"}, ["body", "nickname"]),
    ({"quota": {"tokens_per_hour": 5}}, ["body", "quota", "tokens_per_hour"]),
    ({"quota": {"tokens_per_day": -1}}, ["body", "quota", "tokens_per_day"]),
    ({"quota": {"requests_per_day": -5}}, ["body", "quota", "requests_per_day"]),
    ({"quota": {"budget_per_month": "-0.01"}}, ["body", "quota", "budget_per_month"]),
    ({"quota": {"tokens_per_day": "many"}}, ["body", "quota", "tokens_per_day"]),
    ({"quota": {"tokens_per_day": 1.5}}, ["body", "quota", "tokens_per_day"]),
    ({"quota": {"tokens_per_day": True}}, ["body", "quota", "tokens_per_day"]),
    ({"quota": {"budget_per_month": "ten"}}, ["body", "quota", "budget_per_month"]),
    ({"quota": {"budget_per_month": "NaN"}}, ["body", "quota", "budget_per_month"]),
    ({"quota": {"budget_per_month": "0.0000000001"}}, ["body", "quota", "budget_per_month"]),
    ({"quota": {"tokens_per_day": 10**16}}, ["body", "quota", "tokens_per_day"]),
    ({"quota": 5}, ["body", "quota"]),
    ({"is_admin": "yes"}, ["body", "is_admin"]),
    ({"disabled": 1}, ["body", "disabled"]),
    ({"mcp_pools": "web"}, ["body", "mcp_pools"]),
    ({"mcp_pools": ["bad name!"]}, ["body", "mcp_pools", 0]),
]


async def test_bad_input_is_refused_naming_the_field_and_changes_nothing(app, client):
    admin = await make_admin(app, client, "root")
    bob = await register(client, "bob")
    before = await _listed(client, admin)
    for body, loc in BAD_PATCHES:
        response = await client.patch(
            f"/admin/users/{bob['id']}", json=body, headers=admin["headers"]
        )
        assert response.status_code == 422, (body, response.text)
        assert loc in [error["loc"] for error in response.json()["detail"]], (body, response.text)
    unknown = await client.patch(
        f"/admin/users/{uuid.uuid4()}", json={"disabled": True}, headers=admin["headers"]
    )
    assert unknown.status_code == 404
    bad_id = await client.patch("/admin/users/42", json={}, headers=admin["headers"])
    assert bad_id.status_code == 422
    assert await _listed(client, admin) == before


async def test_the_last_active_admin_cannot_be_disabled_or_demoted(app, client):
    root = await make_admin(app, client, "root")
    root_id = root["user"]["id"]
    for body in ({"disabled": True}, {"is_admin": False}, {"is_admin": None}):
        response = await client.patch(f"/admin/users/{root_id}", json=body, headers=root["headers"])
        assert response.status_code == 409, body
        assert response.json() == {"detail": "The last active admin cannot be disabled or demoted"}
    other = await make_admin(app, client, "other")
    other_id = other["user"]["id"]
    # A disabled admin does not count as active: with `other` disabled, root is the last.
    disabled = await client.patch(
        f"/admin/users/{other_id}", json={"disabled": True}, headers=root["headers"]
    )
    assert disabled.status_code == 200
    demote = await client.patch(
        f"/admin/users/{root_id}", json={"is_admin": False}, headers=root["headers"]
    )
    assert demote.status_code == 409
    await client.patch(
        f"/admin/users/{other_id}", json={"disabled": False}, headers=root["headers"]
    )
    demoted = await client.patch(
        f"/admin/users/{root_id}", json={"is_admin": False}, headers=root["headers"]
    )
    assert demoted.status_code == 200
    assert demoted.json()["is_admin"] is False
    # root is no admin any more: its own token is refused on /admin at once
    assert (await client.get("/admin/users", headers=root["headers"])).status_code == 403
    fresh = bearer(await login(client, "other"))
    last = await client.patch(f"/admin/users/{other_id}", json={"disabled": True}, headers=fresh)
    assert last.status_code == 409


async def test_disabling_stops_sessions_and_keys_at_once_and_enabling_lets_login_again(app, client):
    admin = await make_admin(app, client, "root")
    bob = await register(client, "bob")
    tokens = await login(client, "bob")
    second = await login(client, "bob", device_id="phone")
    key = await new_key(client, bearer(tokens))
    key_headers = {"Authorization": f"Bearer {key}"}
    assert (await client.get("/v1/models", headers=key_headers)).status_code == 200

    response = await client.patch(
        f"/admin/users/{bob['id']}", json={"disabled": True}, headers=admin["headers"]
    )
    assert response.status_code == 200
    assert response.json()["disabled"] is True
    for t in (tokens, second):
        assert (await client.get("/users/me", headers=bearer(t))).status_code == 401
        refresh = await client.post("/auth/refresh", json={"refresh_token": t["refresh_token"]})
        assert refresh.status_code == 401
    assert (await client.get("/v1/models", headers=key_headers)).status_code == 401
    wrong = await client.post("/auth/login", data={"username": "bob", "password": "not it at all"})
    assert wrong.status_code == 401  # a wrong password learns nothing about the account
    right = await client.post("/auth/login", data={"username": "bob", "password": PASSWORD})
    assert right.status_code == 403
    assert right.json() == {"detail": "Account disabled"}

    enabled = await client.patch(
        f"/admin/users/{bob['id']}", json={"disabled": None}, headers=admin["headers"]
    )
    assert enabled.json()["disabled"] is False
    again = await login(client, "bob")
    assert (await client.get("/users/me", headers=bearer(again))).status_code == 200
    assert (await client.get("/users/me", headers=bearer(tokens))).status_code == 401
    assert (await client.get("/v1/models", headers=key_headers)).status_code == 200


async def test_quota_and_pools_are_set_and_reset_with_null(app, client, alice):
    admin = await make_admin(app, client, "root")
    url = f"/admin/users/{alice['user']['id']}"
    body = {
        "quota": {"tokens_per_day": 1000, "budget_per_month": "2.5"},
        "mcp_pools": ["web", "web", "db"],
    }
    changed = (await client.patch(url, json=body, headers=admin["headers"])).json()
    assert changed["quota"] == {
        "tokens_per_day": 1000,
        "requests_per_day": None,
        "budget_per_month": "2.500000000",
    }
    assert changed["mcp_pools"] == ["web", "db"]
    mine = (await client.get("/users/me/quota", headers=alice["headers"])).json()
    assert mine["limits"] == changed["quota"]
    partly = await client.patch(
        url, json={"quota": {"requests_per_day": 7}}, headers=admin["headers"]
    )
    assert partly.json()["quota"] == {
        "tokens_per_day": 1000,
        "requests_per_day": 7,
        "budget_per_month": "2.500000000",
    }
    reset = await client.patch(
        url, json={"quota": None, "mcp_pools": None}, headers=admin["headers"]
    )
    assert reset.json()["quota"] == {
        "tokens_per_day": None,
        "requests_per_day": None,
        "budget_per_month": None,
    }
    assert reset.json()["mcp_pools"] is None
    mine = (await client.get("/users/me/quota", headers=alice["headers"])).json()
    assert mine["limits"]["tokens_per_day"] is None


async def test_a_change_of_pools_applies_to_the_next_request(app, client, alice):
    """The pools are remembered per process (`LivePools`); the admin's change makes the
    remembered answer stale at once."""
    admin = await make_admin(app, client, "root")
    user_id = uuid.UUID(alice["user"]["id"])
    pools = app.state.vektor.pipeline.pools
    assert await pools.allowed(user_id) is None  # read, and remembered
    url = f"/admin/users/{user_id}"
    await client.patch(url, json={"mcp_pools": ["web"]}, headers=admin["headers"])
    assert await pools.allowed(user_id) == frozenset({"web"})
    await client.patch(url, json={"mcp_pools": None}, headers=admin["headers"])
    assert await pools.allowed(user_id) is None
