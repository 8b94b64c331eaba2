"""Admins for the admin tests: a registered account promoted in the database."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import update

from tests.conftest import bearer, login, register
from vektor.auth.models import User


async def make_admin(app: FastAPI, client: httpx.AsyncClient, name: str) -> dict[str, Any]:
    """Register `name`, make the account an admin, log in: profile, tokens, headers."""
    user = await register(client, name)
    async with app.state.vektor.sessionmaker.begin() as session:
        await session.execute(
            update(User).where(User.email == f"{name}@example.com").values(is_admin=True)
        )
    tokens = await login(client, name)
    return {"user": user, "tokens": tokens, "headers": bearer(tokens)}


async def new_key(client: httpx.AsyncClient, headers: dict[str, str], **limits: Any) -> str:
    """A new API key of the caller, with limits of its own if given."""
    response = await client.post(
        "/users/me/api-keys", json={"name": "k", **limits}, headers=headers
    )
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key
