"""Every way a session or an API key is revoked, as scenarios two clients can play: the
victim's credentials are used (and so cached) through one client, revoked through the
other, and must be refused through the first at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

PASSWORD = "long enough password"
NEW_PASSWORD = "another long password"
PATHS = [
    "logout",
    "refresh_reuse",
    "password_change",
    "device_removal",
    "key_deletion",
    "account_deletion",
]


@dataclass
class Victim:
    """A signed-in user: the session under test, another session of the same user (the
    one that acts), and an API key."""

    name: str
    tokens: dict[str, Any]
    other: dict[str, Any]
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['access_token']}"}

    @property
    def other_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.other['access_token']}"}

    @property
    def key_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


async def _login(client: httpx.AsyncClient, name: str, device: str) -> dict[str, Any]:
    response = await client.post(
        "/auth/login", data={"username": name, "password": PASSWORD, "device_id": device}
    )
    assert response.status_code == 200, response.text
    return response.json()


async def victim(client: httpx.AsyncClient, name: str) -> Victim:
    """Register `name`, sign in on two devices, create an API key."""
    registered = await client.post(
        "/auth/register",
        json={"email": f"{name}@example.com", "username": name, "password": PASSWORD},
    )
    assert registered.status_code == 201, registered.text
    tokens = await _login(client, name, "dev-victim")
    other = await _login(client, name, "dev-other")
    created = await client.post(
        "/users/me/api-keys",
        json={"name": "k"},
        headers={"Authorization": f"Bearer {other['access_token']}"},
    )
    assert created.status_code == 201, created.text
    return Victim(name, tokens, other, created.json()["key"])


async def accepted(client: httpx.AsyncClient, who: Victim, path: str) -> bool:
    """Whether the credential the path revokes still works through `client` (a 200 or a
    401, nothing else)."""
    if path == "key_deletion":
        response = await client.get("/v1/models", headers=who.key_headers)
    else:
        response = await client.get("/chat/models", headers=who.headers)
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


async def revoke(client: httpx.AsyncClient, who: Victim, path: str) -> None:
    """Revoke through `client` what `path` names."""
    if path == "logout":
        response = await client.post(
            "/auth/logout", json={"refresh_token": who.tokens["refresh_token"]}
        )
        assert response.status_code == 200, response.text
    elif path == "refresh_reuse":
        body = {"refresh_token": who.tokens["refresh_token"]}
        assert (await client.post("/auth/refresh", json=body)).status_code == 200
        assert (await client.post("/auth/refresh", json=body)).status_code == 401
    elif path == "password_change":
        response = await client.post(
            "/users/change-password",
            json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
            headers=who.other_headers,
        )
        assert response.status_code == 200, response.text
    elif path == "device_removal":
        device = who.tokens["device_id"]
        response = await client.delete(f"/sync/devices/{device}", headers=who.other_headers)
        assert response.status_code == 204, response.text
    elif path == "key_deletion":
        listed = await client.get("/users/me/api-keys", headers=who.other_headers)
        key_id = listed.json()[0]["id"]
        response = await client.delete(f"/users/me/api-keys/{key_id}", headers=who.other_headers)
        assert response.status_code == 204, response.text
    elif path == "account_deletion":
        response = await client.delete("/users/me", headers=who.other_headers)
        assert response.status_code == 204, response.text
    else:
        raise ValueError(path)


async def play(
    user_side: httpx.AsyncClient, revoking_side: httpx.AsyncClient, name: str, path: str
) -> None:
    """Use the credential through `user_side` (twice: cached), revoke it through
    `revoking_side`, and check it is refused through `user_side` on the very next request,
    and through `revoking_side` too; the acting session survives a password change."""
    who = await victim(user_side, name)
    for _ in range(2):
        assert await accepted(user_side, who, path)
    await revoke(revoking_side, who, path)
    assert not await accepted(user_side, who, path)
    assert not await accepted(revoking_side, who, path)
    if path == "account_deletion":  # the key went with the account
        assert (await user_side.get("/v1/models", headers=who.key_headers)).status_code == 401
    if path == "password_change":  # the session that changed it stays
        kept = await user_side.get("/chat/models", headers=who.other_headers)
        assert kept.status_code == 200
