"""Tables of the users domain: what an account keeps besides its sign-in (preferences)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from vektor.core.database import Base, JSONType, UTCDateTime, utcnow


class Preference(Base):
    """A user's preferences, one row per user, stored as a validated JSON object."""

    __tablename__ = "preference"

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("user.id", ondelete="CASCADE"), primary_key=True
    )
    values: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
