"""/sync endpoints."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from fastapi.sse import format_sse_event
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from vektor.auth.dependencies import CurrentPrincipal, CurrentUser, credentials_revoked
from vektor.auth.service import session_is_active
from vektor.core.dependencies import EventsDep, SessionDep, SettingsDep
from vektor.core.errors import BadRequest, Invalid
from vektor.core.openapi import sse_content
from vektor.core.streaming import PING, SSE_HEADERS, EventStreamResponse
from vektor.state import app_state
from vektor.sync import service
from vektor.sync.schemas import (
    BackupRead,
    ChangeRead,
    ChangesRead,
    DeviceRead,
    RestoreRequest,
    SessionRead,
)

router = APIRouter(prefix="/sync", tags=["sync"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not found"}}
BUSY: dict[int | str, dict[str, Any]] = {
    409: {"description": "A backup or restore of your account is already running"}
}


@router.get("/sessions", response_model=list[SessionRead], operation_id="sync_sessions")
async def sessions(principal: CurrentPrincipal, session: SessionDep) -> list[SessionRead]:
    """Your active sessions; `current` is the one making this request."""
    return await service.list_sessions(
        session, user_id=principal.user.id, current=principal.session_id
    )


@router.get("/devices", response_model=list[DeviceRead], operation_id="sync_devices")
async def devices(user: CurrentUser, session: SessionDep) -> list[DeviceRead]:
    """Your devices."""
    return await service.list_devices(session, user_id=user.id)


@router.delete(
    "/devices/{device_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="sync_remove_device",
    responses=NOT_FOUND,
)
async def remove_device(
    request: Request,
    device_id: Annotated[str, PathParam(max_length=128)],
    user: CurrentUser,
    session: SessionDep,
    events: EventsDep,
) -> Response:
    """Forget a device; its sessions and tokens stop working at once."""
    await service.remove_device(session, events=events, user_id=user.id, device_id=device_id)
    await session.commit()  # before the caches forget its sessions: none may learn them again
    await credentials_revoked(request, user.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/events",
    operation_id="sync_events",
    response_class=EventStreamResponse,
    responses={
        200: {
            "content": sse_content(),
            "description": "Changes as server-sent events",
        }
    },
)
async def change_feed(
    request: Request,
    principal: CurrentPrincipal,
    events: EventsDep,
    settings: SettingsDep,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
) -> EventStreamResponse:
    """Live changes to your data; reconnect with Last-Event-ID to get what you missed.

    The feed ends when its session is revoked (checked at every event and heartbeat).
    """
    cursor = last_event_id or None
    sessionmaker, session_id = app_state(request).sessionmaker, principal.session_id

    async def body() -> AsyncIterator[bytes]:
        async for event in events.follow(principal.user.id, cursor, settings.sse_ping_seconds):
            if not await session_is_active(sessionmaker, session_id):
                return
            if event is None:
                yield PING
            else:
                yield format_sse_event(data_str=json.dumps(event.payload()), id=event.cursor)

    return EventStreamResponse(body(), headers=SSE_HEADERS)


@router.get("/changes", response_model=ChangesRead, operation_id="sync_changes")
async def changes(
    user: CurrentUser,
    events: EventsDep,
    since: Annotated[str | None, Query(max_length=64)] = None,
) -> ChangesRead:
    """Changes after a cursor, for a device that was offline; `resync` if too far behind."""
    found, resync = await events.since(user.id, since)
    return ChangesRead(
        events=[ChangeRead(cursor=e.cursor, **e.payload()) for e in found],
        cursor=await events.current(user.id),
        resync=resync,
    )


@router.post(
    "/backup",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BackupRead,
    operation_id="sync_backup",
    responses=BUSY,
)
async def start_backup(request: Request, user: CurrentUser) -> BackupRead:
    """Start a backup of your profile, preferences and conversations."""
    backup = await app_state(request).backups.start(user.id)
    return service.backup_read(backup)


@router.get("/backups", response_model=list[BackupRead], operation_id="sync_backups")
async def backups(request: Request, user: CurrentUser, session: SessionDep) -> list[BackupRead]:
    """Your backups, newest first."""
    await app_state(request).backups.fail_interrupted()
    return [service.backup_read(b) for b in await service.list_backups(session, user_id=user.id)]


@router.get(
    "/backup/{task_id}",
    response_model=BackupRead,
    operation_id="sync_backup_status",
    responses=NOT_FOUND,
)
async def backup_status(
    task_id: uuid.UUID, request: Request, user: CurrentUser, session: SessionDep
) -> BackupRead:
    """A backup's status, size and checksum."""
    await app_state(request).backups.fail_interrupted()
    backup = await service.owned_backup(session, user_id=user.id, backup_id=task_id)
    return service.backup_read(backup)


@router.get(
    "/backup/{task_id}/download",
    operation_id="sync_backup_download",
    response_class=FileResponse,
    responses=NOT_FOUND,
)
async def download(
    task_id: uuid.UUID, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> FileResponse:
    """The backup file (gzip-compressed JSON lines)."""
    backup = await service.owned_backup(session, user_id=user.id, backup_id=task_id)
    path = service.completed_file(backup, settings.backup_dir)
    return FileResponse(
        path, media_type="application/gzip", filename=f"vektor-backup-{backup.id}.vkb.gz"
    )


@router.post(
    "/restore",
    operation_id="sync_restore",
    responses={
        404: {"description": "No such backup"},
        422: {"description": "The backup fails its checks"},
        **BUSY,
    },
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"schema": RestoreRequest.model_json_schema()},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "mode": {"type": "string", "enum": ["merge", "replace"]},
                        },
                    }
                },
            }
        }
    },
)
async def restore(
    request: Request, user: CurrentUser, settings: SettingsDep, events: EventsDep
) -> dict[str, str]:
    """Restore a stored backup (JSON `{backup_id?, mode?}`) or an uploaded file (multipart)."""
    common: dict[str, Any] = {
        "sessionmaker": app_state(request).sessionmaker,
        "budget": app_state(request).backups.restores,
        "events": events,
        "user_id": user.id,
    }
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        path, mode = await _receive_upload(request, settings.backup_dir)
        try:
            await service.restore_file(path=path, mode=mode, **common)
        finally:
            await asyncio.to_thread(path.unlink, True)
    else:
        body = await _restore_request(request)
        await service.restore(
            backup_dir=settings.backup_dir, backup_id=body.backup_id, mode=body.mode, **common
        )
    return {"detail": "Restauración completada"}


async def _restore_request(request: Request) -> RestoreRequest:
    raw = await request.body()
    try:
        return RestoreRequest.model_validate_json(raw) if raw.strip() else RestoreRequest()
    except ValidationError as exc:
        raise Invalid(
            [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        ) from exc


async def _receive_upload(request: Request, backup_dir: Path) -> tuple[Path, str]:
    form = await request.form(max_files=1, max_fields=2)
    upload, mode = form.get("file"), form.get("mode", "merge")
    if not isinstance(upload, UploadFile) or mode not in ("merge", "replace"):
        raise BadRequest("Send a `file` part, and `mode` merge or replace")
    try:
        # Not the user's folder: an account deleted meanwhile must not find it recreated.
        folder = Path(backup_dir) / ".uploads"
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        handle = await asyncio.to_thread(
            tempfile.NamedTemporaryFile, "wb", dir=folder, prefix=".upload-", delete=False
        )
        path = Path(handle.name)
        try:
            with handle:
                await asyncio.to_thread(shutil.copyfileobj, upload.file, handle, 1 << 20)
        except BaseException:
            await asyncio.to_thread(path.unlink, True)
            raise
    finally:
        await form.close()
    return path, str(mode)
