"""Who is calling the OpenAI-compatible API: an API key, or a login's access token."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from vektor.apikeys.service import looks_like_api_key, user_for_key
from vektor.auth.dependencies import get_principal
from vektor.core.dependencies import SessionDep, SettingsDep
from vektor.core.errors import Unauthorized
from vektor.core.middleware import request_context
from vektor.users.models import User

_bearer = HTTPBearer(auto_error=False, description="An API key (vk-…) or an access token")


async def get_api_user(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    """The user behind the bearer API key or access token."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("Not authenticated")
    if not looks_like_api_key(credentials.credentials):
        principal = await get_principal(request, session, settings, credentials)
        return principal.user
    user = await user_for_key(session, credentials.credentials)
    await session.commit()  # hand the connection back before the route waits on anything
    if user is None:
        raise Unauthorized("Invalid, expired or revoked API key")
    request_context(request.scope)["user_id"] = str(user.id)
    return user


ApiUser = Annotated[User, Depends(get_api_user)]
