"""/users/me/api-keys: create (shown once), list, revoke."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response, status

from vektor.apikeys import service
from vektor.apikeys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyRead
from vektor.auth.dependencies import CurrentUser, credentials_revoked
from vektor.core.dependencies import SessionDep

router = APIRouter(prefix="/users/me/api-keys", tags=["openai"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    operation_id="create_api_key",
    responses={409: {"description": "Too many keys"}},
)
async def create_api_key(
    body: ApiKeyCreate, user: CurrentUser, session: SessionDep
) -> ApiKeyCreated:
    """A new API key. The key is in this answer only: it is stored as a hash. With
    `tokens_per_day` or `budget_per_month` the key has quotas of its own, checked as well
    as yours."""
    created, key = await service.create_key(
        session,
        user.id,
        body.name,
        body.expires_at,
        tokens_per_day=body.tokens_per_day,
        budget_per_month=body.budget_per_month,
    )
    return ApiKeyCreated(key=key, **_read(created).model_dump(exclude={"last_used_at"}))


@router.get("", response_model=list[ApiKeyRead], operation_id="list_api_keys")
async def list_api_keys(user: CurrentUser, session: SessionDep) -> list[ApiKeyRead]:
    """Your keys (never the keys themselves) and their own quotas, newest first."""
    return [_read(k) for k in await service.list_keys(session, user.id)]


@router.delete(
    "/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="delete_api_key",
    responses={404: {"description": "No such key of yours"}},
)
async def delete_api_key(
    request: Request, key_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> Response:
    """Revoke a key: it stops working at once."""
    await service.revoke_key(session, user.id, key_id)
    await session.commit()  # before the caches forget it: none may learn it again
    await credentials_revoked(request, user.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _read(listed: service.KeyWithLimits) -> ApiKeyRead:
    return ApiKeyRead.model_validate(listed.key).model_copy(
        update={
            "tokens_per_day": listed.tokens_per_day,
            "budget_per_month": listed.budget_per_month,
        }
    )
