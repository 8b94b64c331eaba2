"""One error hierarchy for every domain, rendered by one handler as `{"detail": …}`."""

from __future__ import annotations

from typing import Any, ClassVar


class AppError(Exception):
    """Base of every error the service answers on purpose."""

    status_code: ClassVar[int] = 400
    default_detail: ClassVar[str] = "Bad request"

    def __init__(self, detail: Any = None, *, headers: dict[str, str] | None = None) -> None:
        self.detail = detail if detail is not None else self.default_detail
        self.headers = headers or {}
        self.extra: dict[str, Any] = {}  # more fields of the error body, e.g. `code`
        super().__init__(str(self.detail))


class BadRequest(AppError):
    """The request is understood but cannot be done as asked."""


class Unauthorized(AppError):
    """Missing or invalid credentials."""

    status_code = 401
    default_detail = "Not authenticated"

    def __init__(self, detail: Any = None, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer", **(headers or {})})


class Forbidden(AppError):
    """Authenticated, but not allowed."""

    status_code = 403
    default_detail = "Not allowed"


class NotFound(AppError):
    """No such object, or not the caller's."""

    status_code = 404
    default_detail = "Not found"


class Conflict(AppError):
    """The request clashes with the current state."""

    status_code = 409
    default_detail = "Conflict"


class PayloadTooLarge(AppError):
    """The request or one of its parts is too big."""

    status_code = 413
    default_detail = "Request body too large"


class Invalid(AppError):
    """Well-formed input that breaks a rule (rendered like a validation error)."""

    status_code = 422
    default_detail = "Invalid input"


class RateLimited(AppError):
    """Too many requests; `retry_after` seconds until the next one may pass."""

    status_code = 429
    default_detail = "Too many requests"

    def __init__(self, retry_after: int, detail: Any = None) -> None:
        self.retry_after = max(1, retry_after)
        super().__init__(detail, headers={"Retry-After": str(self.retry_after)})


class Unavailable(AppError):
    """A dependency the request needs is down."""

    status_code = 503
    default_detail = "Service unavailable"


class UpstreamError(AppError):
    """An upstream service answered badly."""

    status_code = 502
    default_detail = "Upstream error"
