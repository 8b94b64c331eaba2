"""Logging with loguru: app.log, api.log and error.log under LOG_DIR, rotated and compressed.

Records are written from a background thread (`enqueue=True`) so a request never waits on
the disk. `diagnose` stays off everywhere: it would print local variables, which can hold
passwords or tokens.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

if TYPE_CHECKING:
    from loguru import Record

    from vektor.core.config import Settings

API_CHANNEL = "api"
_configured: tuple[Any, ...] | None = None


def _json_line(record: Record) -> str:
    """One JSON object per line: time, level, logger, message and bound fields."""
    entry: dict[str, Any] = {
        "time": record["time"].isoformat(),
        "level": record["level"].name,
        "logger": record["name"],
        "message": record["message"],
    }
    extra = {k: v for k, v in record["extra"].items() if not k.startswith("_")}
    entry.update(extra)
    exc = record["exception"]
    if exc is not None and exc.type is not None:
        entry["exception"] = "".join(traceback.format_exception(exc.type, exc.value, exc.traceback))
    record["extra"]["_json"] = json.dumps(entry, default=str, ensure_ascii=False)
    return "{extra[_json]}\n"


def _simple_line(record: Record) -> str:
    """Human-readable line with the bound fields appended."""
    extra = " ".join(f"{k}={v}" for k, v in record["extra"].items() if not k.startswith("_"))
    record["extra"]["_kv"] = extra
    return (
        "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {name} | {message} {extra[_kv]}\n"
        "{exception}"
    )


def _is_api(record: Record) -> bool:
    return record["extra"].get("channel") == API_CHANNEL


def _is_app(record: Record) -> bool:
    return record["extra"].get("channel") != API_CHANNEL


class InterceptHandler(logging.Handler):
    """Send the standard library's records (uvicorn, gunicorn, alembic) to loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        """Forward one record with its level and origin."""
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(depth=6, exception=record.exc_info).log(level, record.getMessage())


def configure_logging(settings: Settings) -> None:
    """Install the sinks; calling again with the same settings changes nothing."""
    global _configured
    key = (str(settings.log_dir), settings.log_format, settings.log_level, settings.log_rotation)
    if _configured == key:
        return
    log_dir = Path(settings.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    fmt = _json_line if settings.log_format == "structured" else _simple_line
    common: dict[str, Any] = {
        "format": fmt,
        "enqueue": True,
        "backtrace": False,
        "diagnose": False,
        "rotation": settings.log_rotation,
        "retention": settings.log_retention,
        "compression": "gz",
        "encoding": "utf-8",
    }
    logger.remove()
    logger.add(sys.stderr, level=settings.log_level, format=fmt, diagnose=False, filter=_is_app)
    logger.add(log_dir / "app.log", level=settings.log_level, filter=_is_app, **common)
    logger.add(log_dir / "api.log", level="INFO", filter=_is_api, **common)
    logger.add(log_dir / "error.log", level="ERROR", **common)
    logging.basicConfig(handlers=[InterceptHandler()], level=logging.INFO, force=True)
    for name in ("uvicorn", "uvicorn.error", "gunicorn.error", "alembic"):
        std = logging.getLogger(name)
        std.handlers = [InterceptHandler()]
        std.propagate = False
    # Upstream requests are logged by the generation that makes them, not once more by httpx.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Requests are logged once, by the access middleware, without query strings.
    logging.getLogger("uvicorn.access").handlers = []
    logging.getLogger("uvicorn.access").propagate = False
    logging.getLogger("uvicorn.access").disabled = True
    _configured = key


async def flush_logs() -> None:
    """Wait until queued records are written."""
    await logger.complete()
