"""/config endpoints: reads for users, writes and reloads for admins; secrets are always
shown as `***`."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, ConfigDict, Field

from vektor.auth.dependencies import AdminUser, CurrentUser
from vektor.configuration import adapters
from vektor.llm.deployments import load_deployments
from vektor.mcp.config import load_mcp_servers
from vektor.state import app_state

router = APIRouter(prefix="/config", tags=["config"])


class AdapterWrite(BaseModel):
    """An adapter to save: its name and its settings object."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(max_length=64)]
    settings: dict[str, Any]


class Detail(BaseModel):
    """A short confirmation."""

    detail: str


@router.get("/models", operation_id="config_models")
async def models(request: Request, user: CurrentUser) -> list[dict[str, Any]]:
    """The model_configs.json entries, secrets masked, with each deployment's state."""
    return app_state(request).balancer.public_configs()


@router.get("/mcp-servers", operation_id="config_mcp_servers")
async def mcp_servers(request: Request, user: CurrentUser) -> list[dict[str, Any]]:
    """The mcp_servers.json entries with live health (`healthy`, `last_error`), secrets masked."""
    return app_state(request).mcp.status()


@router.get("/adapters", operation_id="config_adapters")
async def list_adapters(request: Request, user: CurrentUser) -> list[dict[str, Any]]:
    """The adapters of the config folder: `{name, path}`."""
    config_dir = app_state(request).settings.vektor_config_dir
    return await asyncio.to_thread(adapters.list_adapters, config_dir)


@router.post(
    "/adapters",
    operation_id="config_adapters_write",
    status_code=status.HTTP_201_CREATED,
    response_model=Detail,
    responses={
        403: {"description": "Not an admin"},
        413: {"description": "Settings larger than 64 KiB"},
        422: {"description": "Bad name, too deep, or a URL pointing at an internal address"},
        503: {"description": "The adapters folder cannot be written (read-only); unchanged"},
    },
)
async def write_adapter(request: Request, body: AdapterWrite, admin: AdminUser) -> Detail:
    """Admin: save `adapters/<name>.json` (replacing one of the same name), atomically.
    URLs in the settings must not point at internal addresses unless allow-listed."""
    settings = app_state(request).settings
    data = await asyncio.to_thread(
        adapters.validate, body.name, body.settings, settings.adapter_url_allowlist
    )
    await asyncio.to_thread(adapters.write_atomically, settings.vektor_config_dir, body.name, data)
    await app_state(request).adapters.reload()
    return Detail(detail="Adaptador guardado")


@router.post(
    "/reload",
    operation_id="config_reload",
    responses={403: {"description": "Not an admin"}, 422: {"description": "A file is invalid"}},
)
async def reload(request: Request, admin: AdminUser) -> dict[str, Any]:
    """Admin: read model_configs.json, mcp_servers.json and the adapters again, without a
    restart. An invalid file changes nothing (422)."""
    state = app_state(request)
    config_dir = state.settings.vektor_config_dir
    try:
        deployments = await asyncio.to_thread(load_deployments, config_dir)
        servers = await asyncio.to_thread(load_mcp_servers, config_dir)
    except ValueError as exc:  # pydantic's ValidationError and JSON errors are ValueErrors
        from vektor.core.errors import Invalid

        raise Invalid(f"The configuration is invalid: {str(exc)[:500]}") from exc
    state.balancer.reload(deployments)
    await state.mcp.reload(servers)
    await state.adapters.reload()
    return {
        "models": len(state.balancer.models()),
        "deployments": len(deployments),
        "mcp_replicas": len(servers),
        "adapters": len(state.adapters.adapters),
    }
