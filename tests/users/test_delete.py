"""DELETE /users/me removes the account and every row it owns."""

from sqlalchemy import func, select

from tests.conftest import bearer, login, register
from vektor.auth.models import Device, RefreshToken, User, UserSession
from vektor.users.models import Preference


async def _count(app, model, **where):
    async with app.state.vektor.sessionmaker() as session:
        query = select(func.count()).select_from(model)
        for key, value in where.items():
            query = query.where(getattr(model, key) == value)
        return (await session.execute(query)).scalar_one()


async def test_delete_account_removes_everything(client, app, alice):
    await register(client, "bob")
    bob = bearer(await login(client, "bob"))
    headers = alice["headers"]
    await login(client, "alice", device_id="second-device")
    await client.put("/users/preferences", headers=headers, json={"theme": "light"})
    await client.put("/users/preferences", headers=bob, json={"theme": "system"})

    response = await client.delete("/users/me", headers=headers)
    assert response.status_code == 204
    assert response.content == b""

    assert (await client.get("/users/me", headers=headers)).status_code == 401
    refreshed = await client.post(
        "/auth/refresh", json={"refresh_token": alice["tokens"]["refresh_token"]}
    )
    assert refreshed.status_code == 401
    failed = await client.post("/auth/login", data={"username": "alice", "password": "x" * 10})
    assert failed.status_code == 401

    assert await _count(app, User) == 1
    assert await _count(app, Preference) == 1
    # Only bob's rows are left.
    async with app.state.vektor.sessionmaker() as session:
        bob_id = (await session.execute(select(User.id))).scalar_one()
    assert await _count(app, Device) == await _count(app, Device, user_id=bob_id) == 1
    assert await _count(app, UserSession) == await _count(app, UserSession, user_id=bob_id) == 1
    assert await _count(app, RefreshToken) == 1
    assert (await client.get("/users/preferences", headers=bob)).json()["theme"] == "system"


async def test_email_can_be_registered_again_after_delete(client, alice):
    await client.delete("/users/me", headers=alice["headers"])
    assert await register(client, "alice")
