"""Imports every domain's tables so that `Base.metadata` is complete (Alembic, tests)."""

from vektor.apikeys.models import ApiKey
from vektor.auth.models import Device, RefreshToken, User, UserSession
from vektor.chat.models import Conversation, Message
from vektor.core.database import Base
from vektor.sync.models import Backup, SyncLock
from vektor.usage.models import ApiKeyQuota, Usage, UsageDayModel, UsageDayUser, UserQuota
from vektor.users.models import Preference

__all__ = [
    "ApiKey",
    "ApiKeyQuota",
    "Backup",
    "Base",
    "Conversation",
    "Device",
    "Message",
    "Preference",
    "RefreshToken",
    "SyncLock",
    "Usage",
    "UsageDayModel",
    "UsageDayUser",
    "User",
    "UserQuota",
    "UserSession",
]
