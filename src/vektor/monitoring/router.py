"""/health."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from vektor import __version__
from vektor.monitoring.service import check_database

router = APIRouter(tags=["system"])


@router.get(
    "/health",
    operation_id="health",
    responses={503: {"description": "The database is unreachable"}},
)
async def health(request: Request) -> JSONResponse:
    """Service health: 200 `ok`, or 503 `degraded` when the database is unreachable."""
    database = await check_database(request.app.state.engine)
    healthy = database["status"] == "ok"
    body = {
        "status": "ok" if healthy else "degraded",
        "version": __version__,
        "checks": {"database": database},
    }
    return JSONResponse(body, status_code=200 if healthy else 503)
