"""GET /sync/sessions, GET /sync/devices, DELETE /sync/devices/{id}."""

from tests.conftest import bearer, login, register


async def test_sessions_and_devices_from_logins(client, alice):
    laptop = await login(client, "alice", device_id="laptop", device_name="Laptop")
    phone = await login(client, "alice", device_id="phone", device_name="Phone")
    sessions = (await client.get("/sync/sessions", headers=bearer(laptop))).json()
    assert len(sessions) == 3
    assert {s["device_id"] for s in sessions} >= {"laptop", "phone"}
    current = [s for s in sessions if s["current"]]
    assert len(current) == 1
    assert current[0]["device_id"] == "laptop"
    assert set(sessions[0]) >= {
        "id",
        "device_id",
        "device_name",
        "last_sync",
        "created_at",
        "current",
    }
    devices = (await client.get("/sync/devices", headers=bearer(phone))).json()
    names = {d["id"]: d["name"] for d in devices}
    assert names["laptop"] == "Laptop"
    assert names["phone"] == "Phone"
    assert all(set(d) >= {"id", "name", "last_seen"} for d in devices)


async def test_removing_a_device_revokes_its_tokens(client, alice):
    phone = await login(client, "alice", device_id="phone")
    laptop = await login(client, "alice", device_id="laptop")
    response = await client.delete("/sync/devices/phone", headers=bearer(laptop))
    assert response.status_code == 204
    assert (await client.get("/users/me", headers=bearer(phone))).status_code == 401
    refresh = await client.post("/auth/refresh", json={"refresh_token": phone["refresh_token"]})
    assert refresh.status_code == 401
    assert (await client.get("/users/me", headers=bearer(laptop))).status_code == 200
    devices = (await client.get("/sync/devices", headers=bearer(laptop))).json()
    assert "phone" not in {d["id"] for d in devices}
    again = await client.delete("/sync/devices/phone", headers=bearer(laptop))
    assert again.status_code == 404


async def test_other_users_devices_are_404(client, alice):
    await login(client, "alice", device_id="alice-phone")
    await register(client, "bob")
    bob = bearer(await login(client, "bob", device_id="bob-phone"))
    assert (await client.delete("/sync/devices/alice-phone", headers=bob)).status_code == 404
    assert "alice-phone" not in {
        d["id"] for d in (await client.get("/sync/devices", headers=bob)).json()
    }
    mine = (await client.get("/sync/devices", headers=alice["headers"])).json()
    assert "alice-phone" in {d["id"] for d in mine}


async def test_logged_out_sessions_are_not_listed(client, alice):
    other = await login(client, "alice", device_id="tablet")
    await client.post("/auth/logout", json={"refresh_token": other["refresh_token"]})
    sessions = (await client.get("/sync/sessions", headers=alice["headers"])).json()
    assert "tablet" not in {s["device_id"] for s in sessions}


async def test_sync_requires_auth(client):
    for path in ("/sync/sessions", "/sync/devices", "/sync/backups", "/sync/changes"):
        assert (await client.get(path)).status_code == 401


async def test_last_sync_and_last_seen_move_with_use(client, alice, app):
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from vektor.auth.models import Device, UserSession

    long_ago = datetime.now(UTC) - timedelta(hours=1)
    async with app.state.vektor.sessionmaker() as session:
        await session.execute(update(UserSession).values(last_seen_at=long_ago))
        await session.execute(update(Device).values(last_seen_at=long_ago))
        await session.commit()
    await client.get("/users/me", headers=alice["headers"])
    sessions = (await client.get("/sync/sessions", headers=alice["headers"])).json()
    devices = (await client.get("/sync/devices", headers=alice["headers"])).json()
    recent = datetime.now(UTC) - timedelta(minutes=1)
    assert datetime.fromisoformat(sessions[0]["last_sync"]) > recent
    assert datetime.fromisoformat(devices[0]["last_seen"]) > recent
