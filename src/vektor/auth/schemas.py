"""Request and response bodies of the auth domain."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

OpaqueToken = Annotated[str, Field(min_length=1, max_length=512)]
DEVICE_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"


class TokenRead(BaseModel):
    """Tokens issued by login and refresh."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type
    expires_in: int
    refresh_token: str
    device_id: str


class RefreshRequest(BaseModel):
    """A refresh token to rotate."""

    model_config = ConfigDict(extra="forbid")

    refresh_token: OpaqueToken


class LogoutRequest(RefreshRequest):
    """The refresh token of the session to end."""
