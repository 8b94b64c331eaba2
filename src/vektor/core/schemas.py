"""Bodies every domain shares: strict input models and a plain confirmation."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Input models refuse unknown fields (no mass assignment)."""

    model_config = ConfigDict(extra="forbid")


class Detail(BaseModel):
    """A plain confirmation message."""

    detail: str
