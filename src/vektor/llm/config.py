"""model_configs.json: the deployments of each public model."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from vektor.core.secrets import SECRET_MASK
from vektor.llm.providers import provider_class


class DeploymentConfig(BaseModel):
    """One entry of model_configs.json."""

    model_config = ConfigDict(extra="allow")

    name: Annotated[str, Field(min_length=1, max_length=128)]
    provider: str  # a name in the provider registry (vektor.llm.providers)
    model: Annotated[str, Field(min_length=1, max_length=256)]
    description: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    api_key_env: str | None = None
    weight: Annotated[float, Field(ge=0)] = 1
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    context_window: Annotated[int, Field(ge=1)] | None = None
    streaming: bool = True
    tools: bool = True

    @field_validator("provider")
    @classmethod
    def _registered(cls, value: str) -> str:
        """A provider some module registered; the error lists the registered names."""
        provider_class(value)
        return value

    def resolve_api_key(self) -> str | None:
        """The key from the entry, else from the named environment variable."""
        if self.api_key:
            return self.api_key
        if self.api_key_env:
            return os.environ.get(self.api_key_env)
        return None

    def public(self) -> dict[str, object]:
        """The entry as an API may show it: secrets masked."""
        data = self.model_dump(exclude_none=True)
        if data.get("api_key"):
            data["api_key"] = SECRET_MASK
        return data


# Validated when used, not at import: validating imports the provider modules, and they
# import this one.
DEFAULT_DEPLOYMENTS: list[dict[str, object]] = [
    {
        "name": "smollm2",
        "provider": "local",
        "model": "smollm2-135m-instruct",
        "description": "SmolLM2 135M Instruct, runs on this machine",
    }
]

_adapter = TypeAdapter(list[DeploymentConfig])


def load_deployments(config_dir: Path) -> list[DeploymentConfig]:
    """Read model_configs.json; without the file, the built-in local model alone."""
    path = Path(config_dir) / "model_configs.json"
    if not path.exists():
        return _adapter.validate_python(DEFAULT_DEPLOYMENTS)
    return _adapter.validate_python(json.loads(path.read_text(encoding="utf-8")))
