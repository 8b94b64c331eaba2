"""Imports every domain's tables so that `Base.metadata` is complete (Alembic, tests)."""

from vektor.auth.models import Device, RefreshToken, UserSession
from vektor.core.database import Base
from vektor.users.models import Preference, User

__all__ = ["Base", "Device", "Preference", "RefreshToken", "User", "UserSession"]
