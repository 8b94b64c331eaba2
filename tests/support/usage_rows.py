"""Usage rows to write directly in tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from vektor.core.database import new_id
from vektor.usage.hot_repository import UsageRow


def usage_row(user_id: uuid.UUID, **overrides: Any) -> UsageRow:
    """A usage row of the user's; any field can be given."""
    values: dict[str, Any] = {
        "id": new_id(),
        "user_id": user_id,
        "api_key_id": None,
        "model": "m",
        "deployment": "m#0",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cost": Decimal("0.000012345"),
        "cached": False,
        "estimated": False,
        "source": "chat",
        "finish_reason": "stop",
        "created_at": datetime.now(UTC),
    }
    values.update(overrides)
    return UsageRow(**values)
