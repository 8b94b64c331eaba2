"""model_configs.json: the deployments of each public model, each naming a registered
provider. Reading the file checks the names against the registry, which config.py (the
entry's schema, imported by every provider) cannot do without importing the providers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, TypeAdapter

from vektor.llm.config import DeploymentConfig
from vektor.llm.providers import provider_class


def _registered(config: DeploymentConfig) -> DeploymentConfig:
    """An entry whose provider some module registered (the error lists the registered ones),
    which sets every field that provider needs and whose credential variables are set (the
    error names the entry and the field)."""
    kind = provider_class(config.provider)
    entry = f"model entry '{config.name}' (provider '{config.provider}')"
    for name in kind.required_fields:
        if getattr(config, name, None) in (None, ""):
            raise ValueError(f"{entry} needs the field '{name}'")
    for field, variable in _credential_variables(config, kind):
        if not os.environ.get(variable):
            raise ValueError(
                f"{entry}: the variable '{variable}' named by '{field}' is not set"
                if getattr(config, field, None)
                else f"{entry} needs credentials: the variable '{variable}' is not set "
                f"(or name another in '{field}')"
            )
    return config


def _credential_variables(config: DeploymentConfig, kind: object) -> list[tuple[str, str]]:
    """(field, variable) for every `*_env` field of the entry (plug-ins' own included), and
    for each field with a standard variable (`default_env` of the provider) it leaves out."""
    values = {**config.model_dump(exclude_none=True), **(config.model_extra or {})}
    named = [(k, v) for k, v in values.items() if k.endswith("_env") and isinstance(v, str)]
    defaults: dict[str, str] = getattr(kind, "default_env", {})
    return named + [(k, v) for k, v in defaults.items() if k not in values]


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
