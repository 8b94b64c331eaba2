"""URLs and names an administrator can save through the API (adapters): internal
addresses in every spelling, non-http schemes, credentials, path tricks, size and depth."""

import pytest

from tests.monitoring.test_system import make_admin

HOOK = {"kind": "webhook", "url": "http://93.184.216.34/hook"}


@pytest.mark.parametrize(
    "name",
    ["../evil", "a.b", "A", "a/b", "ａｄｍｉｎ", "a\n", "", "x" * 65, "-a", "_a", "a b", "a\\b"],
)
async def test_bad_names_are_refused_and_nothing_is_written(app, client, settings, name):
    admin = await make_admin(app, client)
    response = await client.post(
        "/config/adapters", json={"name": name, "settings": HOOK}, headers=admin
    )
    assert response.status_code == 422
    written = list(settings.vektor_config_dir.parent.rglob("*.json"))
    assert not [p for p in written if "adapters" in str(p) or "evil" in p.name]


async def test_size_and_depth_caps(app, client):
    admin = await make_admin(app, client)
    big = {"name": "big", "settings": {"blob": "x" * (64 * 1024)}}
    assert (await client.post("/config/adapters", json=big, headers=admin)).status_code == 413
    deep: dict = {}
    node = deep
    for _ in range(12):
        node["n"] = {}
        node = node["n"]
    nested = {"name": "deep", "settings": deep}
    assert (await client.post("/config/adapters", json=nested, headers=admin)).status_code == 422


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://127.1/x",
        "http://0x7f000001/x",
        "http://2130706433/x",
        "http://localhost:8000/x",
        "http://169.254.169.254/latest/meta-data",
        "http://100.64.0.1/x",  # shared address space: neither private nor global
        "http://100.100.100.200/latest/meta-data",  # a cloud metadata address within it
        "http://[fd00::1]/x",
        "http://198.18.0.1/x",
        "http://10.0.0.1/x",
        "http://192.168.1.1/x",
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://0.0.0.0/x",
        "file:///etc/passwd",
        "gopher://example.com/x",
        "http://user:secret@93.184.216.34/x",
    ],
)
async def test_internal_urls_are_refused(app, client, url):
    admin = await make_admin(app, client)
    settings = {"kind": "webhook", "url": "http://93.184.216.34/ok", "nested": [{"u": url}]}
    response = await client.post(
        "/config/adapters", json={"name": "ssrf", "settings": settings}, headers=admin
    )
    assert response.status_code == 422, url
    assert (await client.get("/config/adapters", headers=admin)).json() == []


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "ftp://example.com/a.png",
        "//evil.example/a.png",
        "http://",
    ],
)
async def test_avatar_url_is_http_only(client, alice, url):
    """The server never fetches an avatar, but clients render it: only http(s) is stored."""
    response = await client.put("/users/me", json={"avatar_url": url}, headers=alice["headers"])
    assert response.status_code == 422, url
    profile = (await client.get("/users/me", headers=alice["headers"])).json()
    assert profile["avatar_url"] is None


async def test_a_name_that_does_not_resolve_now_is_accepted(app, client):
    """DNS may be down while saving: the address is checked at each delivery instead."""
    admin = await make_admin(app, client)
    hook = {"kind": "webhook", "url": "http://hooks.vektor-test.invalid/x?token=hidden"}
    saved = await client.post(
        "/config/adapters", json={"name": "later", "settings": hook}, headers=admin
    )
    assert saved.status_code == 201


async def test_refusals_do_not_quote_the_url(app, client):
    admin = await make_admin(app, client)
    for url in ("http://127.0.0.1/x?token=hidden-1", "ftp://h/x?token=hidden-1"):
        hook = {"kind": "webhook", "url": url}
        refused = await client.post(
            "/config/adapters", json={"name": "quiet", "settings": hook}, headers=admin
        )
        assert refused.status_code == 422
        assert "hidden-1" not in refused.text
