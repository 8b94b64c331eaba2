"""One entry of model_configs.json (read by `vektor.llm.deployments`)."""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from vektor.core.secrets import SECRET_MASK, mask_url

# An environment variable's name, as an entry's `*_env` fields give it.
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]


class DeploymentConfig(BaseModel):
    """One entry of model_configs.json."""

    model_config = ConfigDict(extra="allow")

    name: Annotated[str, Field(min_length=1, max_length=128)]
    provider: str  # a name in the provider registry, checked when the file is read
    model: Annotated[str, Field(min_length=1, max_length=256)]
    description: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    api_key_env: EnvName | None = None
    deployment: Annotated[str, Field(min_length=1, max_length=256)] | None = None  # azure
    api_version: Annotated[str, Field(min_length=1, max_length=64)] | None = None  # azure
    region: Annotated[str, Field(pattern=r"^[a-z0-9-]{1,32}$")] | None = None  # bedrock
    # bedrock: the variables holding its credentials (else the standard AWS_* ones)
    aws_access_key_id_env: EnvName | None = None
    aws_secret_access_key_env: EnvName | None = None
    aws_session_token_env: EnvName | None = None
    weight: Annotated[float, Field(ge=0)] = 1
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    context_window: Annotated[int, Field(ge=1)] | None = None
    streaming: bool = True
    tools: bool = True
    # Failover in the middle of an answer: whether this deployment hands a half-written
    # answer over (and takes one over), and how it is asked to continue one (None: its
    # provider's way, see vektor.llm.continuation).
    mid_stream_failover: bool = True
    continuation: Literal["prefill", "instruct"] | None = None
    # USD per million tokens; decimals (a JSON number is read through its text, no float).
    input_cost_per_mtok: Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=9)] = Decimal(
        0
    )
    output_cost_per_mtok: Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=9)] = (
        Decimal(0)
    )

    # The response cache (SPEC §3.11): how long an answer of this model is kept (0: never
    # cached), and whether it is served to its user only or to every user.
    cache_ttl_s: Annotated[int, Field(ge=0, le=30 * 24 * 3600)] = 0
    cache_scope: Literal["user", "global"] = "user"

    def resolve_api_key(self) -> str | None:
        """The key from the entry, else from the named environment variable."""
        if self.api_key:
            return self.api_key
        if self.api_key_env:
            return os.environ.get(self.api_key_env)
        return None

    def public(self) -> dict[str, object]:
        """The entry as an API may show it: secrets masked, in the key and in the URL."""
        data = self.model_dump(exclude_none=True)
        if data.get("api_key"):
            data["api_key"] = SECRET_MASK
        if self.base_url:
            data["base_url"] = mask_url(self.base_url)
        return data
