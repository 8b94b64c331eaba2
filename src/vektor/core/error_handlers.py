"""Errors as JSON: `{"detail": …}`, or OpenAI's error shape on the `/v1` API; a database
outage is a 503, never a 500."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from loguru import logger
from sqlalchemy import exc as sa_exc

from vektor.core.database import DATABASE_DOWN_ERRORS, is_database_down
from vektor.core.errors import AppError


def install_error_handlers(app: FastAPI) -> None:
    """Answer the app's errors, invalid requests and database outages as JSON."""
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for error in (*DATABASE_DOWN_ERRORS, sa_exc.DBAPIError):
        app.add_exception_handler(error, _database_down)


OPENAI_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("not_found_error", "model_not_found"),
    409: ("invalid_request_error", None),
    413: ("invalid_request_error", "request_too_large"),
    422: ("invalid_request_error", None),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    502: ("api_error", "upstream_error"),
    503: ("api_error", "service_unavailable"),
}


def error_response(
    request: Request,
    status_code: int,
    detail: Any,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """`{"detail": …}` (plus the error's `extra` fields), or OpenAI's error shape on the
    `/v1` API (an extra `code` and `limit` become its `code` and `param`)."""
    extra = extra or {}
    if not request.url.path.startswith("/v1/"):
        body_fields = {"detail": detail, **extra}
        return JSONResponse(body_fields, status_code=status_code, headers=headers)
    kind, code = OPENAI_ERROR_TYPES.get(status_code, ("api_error", None))
    if isinstance(detail, list):  # validation errors
        param = ".".join(str(p) for p in detail[0]["loc"][1:]) if detail else None
        message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in detail)
    else:
        param, message = extra.get("limit"), str(detail)
    code = extra.get("code", code)
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status_code, headers=headers)


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return error_response(request, exc.status_code, exc.detail, exc.headers, exc.extra)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 with location and message only: the input is not echoed (it may be a password)."""
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": err.get("type")}
        for err in exc.errors()
    ]
    return error_response(request, 422, errors)


async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    """A dependency outage is a 503 with a log line, never a 500."""
    if not is_database_down(exc):
        raise exc
    logger.opt(exception=exc).warning(
        "database unavailable on {}: {}", request.url.path, type(exc).__name__
    )
    return error_response(request, 503, "Database unavailable")
