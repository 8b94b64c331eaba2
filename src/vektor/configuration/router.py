"""/config endpoints (reads); secrets are always shown as `***`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from vektor.auth.dependencies import CurrentUser

router = APIRouter(prefix="/config", tags=["config"])


@router.get("/models", operation_id="config_models")
async def models(request: Request, user: CurrentUser) -> list[dict[str, Any]]:
    """The model_configs.json entries, secrets masked, with each deployment's state."""
    return request.app.state.model_router.public_configs()  # type: ignore[no-any-return]


@router.get("/mcp-servers", operation_id="config_mcp_servers")
async def mcp_servers(request: Request, user: CurrentUser) -> list[dict[str, Any]]:
    """The mcp_servers.json entries with live health (`healthy`, `last_error`), secrets masked."""
    return request.app.state.mcp.status()  # type: ignore[no-any-return]
