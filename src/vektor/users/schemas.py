"""Request and response bodies of the users domain."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    HttpUrl,
    StringConstraints,
    model_validator,
)

from vektor.core.security import BCRYPT_MAX_BYTES, password_fits

USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,31}$"
MIN_PASSWORD_LENGTH = 8
LANGUAGE_PATTERN = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8}){0,3}$"


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


class StrictModel(BaseModel):
    """Input models refuse unknown fields (no mass assignment)."""

    model_config = ConfigDict(extra="forbid")


class PartialUpdate(StrictModel):
    """A partial update: omitted fields stay; `null` only clears the fields listed here."""

    nullable: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _no_null_for_required(self) -> Self:
        for name in self.model_fields_set:
            if getattr(self, name) is None and name not in self.nullable:
                raise ValueError(f"{name} cannot be null")
        return self

    def changes(self) -> dict[str, Any]:
        """The fields the client sent, with their values."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class UserCreate(StrictModel):
    """Registration."""

    email: Email
    username: Username
    password: Password


class UserUpdate(PartialUpdate):
    """Profile changes; only these fields can be changed by their owner."""

    nullable: ClassVar[frozenset[str]] = frozenset({"avatar_url"})

    email: Email | None = None
    username: Username | None = None
    avatar_url: AvatarUrl = None


class UserRead(BaseModel):
    """A user's profile as shown to that user."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    username: str
    avatar_url: str | None
    created_at: datetime
    is_admin: bool


class PasswordChange(StrictModel):
    """Change of password, proving the current one."""

    current_password: Annotated[str, Field(min_length=1, max_length=1024)]
    new_password: Password


class PreferencesUpdate(PartialUpdate):
    """Preference changes; unknown keys are refused; `null` resets language or model."""

    nullable: ClassVar[frozenset[str]] = frozenset({"language", "default_model"})

    theme: Literal["light", "dark", "system"] | None = None
    notifications: bool | None = None
    language: Annotated[str, StringConstraints(pattern=LANGUAGE_PATTERN)] | None = None
    default_model: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None


class PreferencesRead(BaseModel):
    """A user's preferences, with defaults for what was never set."""

    theme: Literal["light", "dark", "system"] = "dark"
    notifications: bool = True
    language: str | None = None
    default_model: str | None = None


class Detail(BaseModel):
    """A plain confirmation message."""

    detail: str
