"""mcp_servers.json: MCP server endpoints; entries sharing `name` are replicas of one pool."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from vektor.core.secrets import SECRET_MASK, mask_command, mask_url

DEFAULT_POOL = "default"


class McpServerConfig(BaseModel):
    """One replica of an MCP server."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")] = DEFAULT_POOL
    url: str | None = None
    transport: Literal["streamable-http", "sse", "stdio"] = "streamable-http"
    command: list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    weight: Annotated[float, Field(ge=0)] = 1
    timeout_s: Annotated[float, Field(gt=0, le=600)] = 30

    @model_validator(mode="after")
    def _endpoint(self) -> McpServerConfig:
        """A URL for the HTTP transports, a command for stdio."""
        if self.transport == "stdio" and not self.command:
            raise ValueError("a stdio server needs `command`")
        if self.transport != "stdio" and not self.url:
            raise ValueError("an HTTP server needs `url`")
        return self

    def public(self) -> dict[str, object]:
        """The entry as an API may show it: header and env values, the URL's secrets and
        the command's secret arguments masked."""
        data = self.model_dump(exclude_none=True)
        if self.url:
            data["url"] = mask_url(self.url)
        if self.command:
            data["command"] = mask_command(self.command)
        data["headers"] = dict.fromkeys(self.headers, SECRET_MASK)
        data["env"] = dict.fromkeys(self.env, SECRET_MASK)
        return data


_adapter = TypeAdapter(list[McpServerConfig])


def load_mcp_servers(config_dir: Path) -> list[McpServerConfig]:
    """Read mcp_servers.json; no file means no MCP servers."""
    path = Path(config_dir) / "mcp_servers.json"
    if not path.exists():
        return []
    return _adapter.validate_python(json.loads(path.read_text(encoding="utf-8")))
