"""Tables of the sync domain."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from vektor.core.database import Base, UTCDateTime, new_id, utcnow


class Backup(Base):
    """A backup job of one user and, once completed, its file."""

    __tablename__ = "backup"
    __table_args__ = (
        Index("ix_backup_user_created", "user_id", "created_at"),
        # The sweep of interrupted jobs, run on every status poll, reads only stale running
        # ones: without it every poll read the whole table (41 ms at 500,000 rows).
        Index("ix_backup_status_heartbeat", "status", "heartbeat_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("user.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="in_progress")
    format_version: Mapped[int] = mapped_column(Integer, default=1)
    file_name: Mapped[str | None] = mapped_column(String(128), default=None)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    conversations: Mapped[int | None] = mapped_column(Integer, default=None)
    messages: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str | None] = mapped_column(String(500), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # Moved by the running job; a job whose heartbeat stops was interrupted.
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SyncLock(Base):
    """The one backup or restore a user has running, seen by every instance."""

    __tablename__ = "sync_lock"

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("user.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    job_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    # Moved while the job runs; a lock whose heartbeat stopped belongs to a dead process.
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
