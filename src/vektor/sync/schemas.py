"""Request and response bodies of the sync domain."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict


class SessionRead(BaseModel):
    """An active login session."""

    id: uuid.UUID
    device_id: str
    device_name: str | None
    last_sync: datetime
    created_at: datetime
    current: bool


class DeviceRead(BaseModel):
    """A device of the user."""

    id: str
    name: str | None
    last_seen: datetime


class BackupRead(BaseModel):
    """A backup job and its file."""

    task_id: uuid.UUID
    status: Literal["in_progress", "completed", "failed"]
    created_at: datetime
    completed_at: datetime | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    conversations: int | None = None
    messages: int | None = None
    error: str | None = None


class RestoreRequest(BaseModel):
    """Which backup to restore, and how."""

    model_config = ConfigDict(extra="forbid")

    backup_id: uuid.UUID | None = None
    mode: Literal["merge", "replace"] = "merge"


class ChangeRead(BaseModel):
    """One change of the feed."""

    type: str
    id: str | None
    at: str
    cursor: str


class ChangesRead(BaseModel):
    """Changes since a cursor, or a request to resync."""

    events: list[ChangeRead]
    cursor: str
    resync: bool
