"""Request and response bodies of the users domain."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, Field, StringConstraints, model_validator

from vektor.auth.schemas import AvatarUrl, Email, Password, Username
from vektor.core.schemas import StrictModel

LANGUAGE_PATTERN = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8}){0,3}$"


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


class UserUpdate(PartialUpdate):
    """Profile changes; only these fields can be changed by their owner."""

    nullable: ClassVar[frozenset[str]] = frozenset({"avatar_url"})

    email: Email | None = None
    username: Username | None = None
    avatar_url: AvatarUrl = None


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
