"""Request and response bodies of the auth domain: accounts, their fields, tokens."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    HttpUrl,
    StringConstraints,
)

from vektor.core.schemas import StrictModel
from vektor.core.security import BCRYPT_MAX_BYTES, password_fits

OpaqueToken = Annotated[str, Field(min_length=1, max_length=512)]
DEVICE_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"


USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,31}$"
MIN_PASSWORD_LENGTH = 8


def _check_password(value: str) -> str:
    if len(value) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    if not password_fits(value):
        raise ValueError(f"password must be at most {BCRYPT_MAX_BYTES} bytes in UTF-8")
    return value


MAX_AVATAR_URL = 2048


def _check_avatar(value: HttpUrl | None) -> str | None:
    if value is None:
        return None
    url = str(value)
    if len(url) > MAX_AVATAR_URL:
        raise ValueError(f"avatar_url may have at most {MAX_AVATAR_URL} characters")
    return url


Username = Annotated[str, StringConstraints(pattern=USERNAME_PATTERN)]
Password = Annotated[str, Field(max_length=1024), AfterValidator(_check_password)]
AvatarUrl = Annotated[HttpUrl | None, Field(default=None), AfterValidator(_check_avatar)]
Email = Annotated[EmailStr, StringConstraints(max_length=320)]


class UserCreate(StrictModel):
    """Registration."""

    email: Email
    username: Username
    password: Password


class UserRead(BaseModel):
    """A user's profile as shown to that user."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    username: str
    avatar_url: str | None
    created_at: datetime
    is_admin: bool


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
