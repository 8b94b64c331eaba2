"""model_configs.json: the deployments of each public model, each naming a registered
provider. Reading the file checks the names against the registry, which config.py (the
entry's schema, imported by every provider) cannot do without importing the providers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, TypeAdapter

from vektor.llm.config import DeploymentConfig
from vektor.llm.providers import provider_class


def _registered(config: DeploymentConfig) -> DeploymentConfig:
    """An entry whose provider some module registered (the error lists the registered ones)
    and which sets every field that provider needs (the error names the entry and field)."""
    kind = provider_class(config.provider)
    for name in kind.required_fields:
        if getattr(config, name, None) in (None, ""):
            raise ValueError(
                f"model entry '{config.name}' (provider '{config.provider}') "
                f"needs the field '{name}'"
            )
    return config


DEFAULT_DEPLOYMENTS: list[dict[str, object]] = [
    {
        "name": "smollm2",
        "provider": "local",
        "model": "smollm2-135m-instruct",
        "description": "SmolLM2 135M Instruct, runs on this machine",
    }
]

_adapter = TypeAdapter(list[Annotated[DeploymentConfig, AfterValidator(_registered)]])


def load_deployments(config_dir: Path) -> list[DeploymentConfig]:
    """Read model_configs.json (a pydantic ValidationError when an entry is invalid or names
    no registered provider); without the file, the built-in local model alone."""
    path = Path(config_dir) / "model_configs.json"
    data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else DEFAULT_DEPLOYMENTS
    return _adapter.validate_python(data)
