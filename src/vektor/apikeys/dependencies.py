"""Who is calling the OpenAI-compatible API: an API key, or a login's access token."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from vektor.apikeys.service import looks_like_api_key
from vektor.auth.dependencies import get_caller_id
from vektor.core.access import who_may_call
from vektor.core.errors import Unauthorized
from vektor.core.middleware import request_context
from vektor.state import app_state

API_BEARER = HTTPBearer(auto_error=False, description="An API key (vk-…) or an access token")


@who_may_call("user or API key")
async def get_api_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(API_BEARER)],
) -> uuid.UUID:
    """The id of the user behind the bearer API key or access token; the key's id, when a
    key was used, is left in `request.state.api_key_id` for usage accounting."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("Not authenticated")
    if not looks_like_api_key(credentials.credentials):
        return await get_caller_id(request, credentials)
    check = app_state(request).live_keys
    found = await check.owner(credentials.credentials, datetime.now(UTC))
    if found is None:
        raise Unauthorized("Invalid, expired or revoked API key")
    user_id, request.state.api_key_id = found
    request_context(request.scope)["user_id"] = str(user_id)
    return user_id


def used_api_key(request: Request) -> uuid.UUID | None:
    """The id of the API key this request authenticated with, if any."""
    key_id: uuid.UUID | None = getattr(request.state, "api_key_id", None)
    return key_id


ApiUserId = Annotated[uuid.UUID, Depends(get_api_user)]
