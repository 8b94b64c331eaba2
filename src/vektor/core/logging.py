"""Logging with loguru: app.log, api.log and error.log under LOG_DIR, rotated and compressed,
and the app's records on stderr.

Records are formatted where they are logged and written by a thread of their own
(`LineWriter`), so a request never waits on the disk or on a full pipe. loguru's
`enqueue=True` does the same across processes, by pickling every record through a
multiprocessing pipe: that cost a chat request more CPU than its database writes. The files
are loguru's own file sinks (rotation, retention, compression), fed by that thread.
`diagnose` stays off everywhere: it would print local variables, which can hold passwords or
tokens.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import queue
import sys
import threading
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from vektor.core.secrets import mask_text

if TYPE_CHECKING:
    from loguru import Record

    from vektor.core.config import Settings

API_CHANNEL = "api"
ACCESS_LOGGER = "vektor.core.middleware"  # the logger named in access lines
_configured: tuple[Any, ...] | None = None


def _entry(time: datetime, level: str, name: str | None, message: str) -> dict[str, Any]:
    return {"time": time.isoformat(), "level": level, "logger": name, "message": message}


def _json_line(record: Record) -> str:
    """One JSON object per line: time, level, logger, message and bound fields."""
    entry = _entry(record["time"], record["level"].name, record["name"], record["message"])
    extra = {k: v for k, v in record["extra"].items() if not k.startswith("_")}
    entry.update(extra)
    exc = record["exception"]
    if exc is not None and exc.type is not None:
        lines = traceback.format_exception(exc.type, exc.value, exc.traceback)
        entry["exception"] = mask_text("".join(lines))  # errors quote the URLs they failed on
    record["extra"]["_json"] = json.dumps(entry, default=str, ensure_ascii=False)
    return "{extra[_json]}\n"


def _pairs(fields: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in fields.items() if not k.startswith("_"))


def _simple_line(record: Record) -> str:
    """Human-readable line with the bound fields appended."""
    extra = _pairs(record["extra"])
    record["extra"]["_kv"] = extra
    return (
        "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {name} | {message} {extra[_kv]}\n"
        "{exception}"
    )


def log_access(message: str, fields: dict[str, Any]) -> None:
    """A request's line in api.log, as a record of the API channel logged by `ACCESS_LOGGER`
    would be written, but formatted here and queued at once: a loguru record cost a small
    request a tenth of its CPU. Through loguru until the logs are configured."""
    if _access is None:
        logger.bind(channel=API_CHANNEL, **fields).info(message)
        return
    sink, structured = _access
    now = datetime.now().astimezone()
    if structured:
        entry = _entry(now, "INFO", ACCESS_LOGGER, message)
        entry.update(channel=API_CHANNEL, **fields)
        sink.write(json.dumps(entry, default=str, ensure_ascii=False) + "\n")
    else:
        clock = now.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        pairs = _pairs({"channel": API_CHANNEL, **fields})
        sink.write(f"{clock} | INFO     | {ACCESS_LOGGER} | {message} {pairs}\n")


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
        # Libraries quote URLs (an HTTP client's request lines, a driver's errors), and a
        # URL may carry a key in its query or user-info.
        message = mask_text(record.getMessage())
        logger.opt(depth=6, exception=record.exc_info).log(level, message)


_Item = tuple[Callable[[str], object], str] | threading.Event | None

# How long closing or flushing the logs waits for the writer.
DRAIN_TIMEOUT_S = 10.0
MAX_BATCH = 512  # lines taken from the queue at once


class LineWriter:
    """Writes formatted lines, each with its own write function, in one thread, in order.

    The thread starts with the first line of each process (a worker forked after
    configuration gets its own)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def put(self, write: Callable[[str], object], line: str) -> None:
        """Queue one line."""
        if self._pid != os.getpid():
            self._start()
        self._queue.put((write, line))

    def drain(self) -> None:
        """Wait until what was queued so far is written."""
        if self._pid != os.getpid():
            return
        done = threading.Event()
        self._queue.put(done)
        done.wait(DRAIN_TIMEOUT_S)

    async def complete(self) -> None:
        """`drain` without blocking the event loop."""
        await asyncio.to_thread(self.drain)

    def stop(self) -> None:
        """Write what is queued, then end the thread."""
        if self._pid != os.getpid() or self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(DRAIN_TIMEOUT_S)
        self._pid, self._thread = 0, None

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._queue = queue.SimpleQueue()
            self._thread = threading.Thread(
                target=self._run, args=(self._queue,), name="vektor-log-writer", daemon=True
            )
            self._thread.start()
            self._pid = os.getpid()

    @staticmethod
    def _run(lines: queue.SimpleQueue[_Item]) -> None:
        """Write what is queued; the lines waiting together for the same destination in
        one write (one pass through the file sink for many records)."""
        while (item := lines.get()) is not None:
            batch: list[_Item] = [item]
            while len(batch) < MAX_BATCH and batch[-1] is not None:
                try:
                    batch.append(lines.get_nowait())
                except queue.Empty:
                    break
            if not _write_batch(batch):
                return


def _write_batch(batch: list[_Item]) -> bool:
    """Write a batch in order, consecutive lines for one destination in one write; False
    at the end marker."""
    write: Callable[[str], object] | None = None
    pending: list[str] = []
    for item in batch:
        if isinstance(item, tuple) and item[0] is write:
            pending.append(item[1])
            continue
        if write is not None:
            _write(write, "".join(pending))
            write = None
        if item is None:
            return False
        if isinstance(item, threading.Event):
            item.set()
        else:
            write, pending = item[0], [item[1]]
    if write is not None:
        _write(write, "".join(pending))
    return True


def _write(write: Callable[[str], object], text: str) -> None:
    try:
        write(text)
    except Exception:  # a log line must never take the writer down
        traceback.print_exc(file=sys.__stderr__)


class QueuedSink:
    """A loguru sink that hands each formatted record to the `LineWriter`; `close` runs after
    the last of them is written, when loguru removes the sink."""

    def __init__(
        self,
        writer: LineWriter,
        write: Callable[[str], object],
        close: Callable[[], object] | None = None,
    ) -> None:
        self._writer = writer
        self._write = write
        self._close = close

    def write(self, message: str) -> None:
        """Queue the formatted record."""
        self._writer.put(self._write, str(message))

    async def complete(self) -> None:
        """Wait for the queued records (`await logger.complete()`)."""
        await self._writer.complete()

    def stop(self) -> None:
        """Write what is queued, then release the destination."""
        self._writer.drain()
        if self._close is not None:
            self._close()


def _file_sinks(files: Any, log_dir: Path, options: dict[str, Any]) -> Callable[[str], QueuedSink]:
    """`QueuedSink`s for files of `files`, a logger of their own that only the writer uses."""

    def queued(name: str) -> QueuedSink:
        handler_id = files.add(
            log_dir / name,
            format="{message}",
            filter=lambda record: record["extra"].get("file") == name,
            **options,
        )
        write = files.bind(file=name).opt(raw=True).info
        return QueuedSink(WRITER, write, lambda: files.remove(handler_id))

    return queued


WRITER = LineWriter()
_access: tuple[QueuedSink, bool] | None = None  # api.log's sink; whether lines are JSON


def configure_logging(settings: Settings) -> None:
    """Install the sinks; calling again with the same settings changes nothing."""
    global _configured, _access
    key = (str(settings.log_dir), settings.log_format, settings.log_level, settings.log_rotation)
    if _configured == key:
        return
    log_dir = Path(settings.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    fmt = _json_line if settings.log_format == "structured" else _simple_line
    _access = None
    logger.remove()
    WRITER.stop()
    files = _file_sinks(
        copy.deepcopy(logger),  # no sinks yet: a logger only the writer thread uses
        log_dir,
        {
            "rotation": settings.log_rotation,
            "retention": settings.log_retention,
            "compression": "gz",
            "encoding": "utf-8",
            "backtrace": False,
            "diagnose": False,
        },
    )
    common: dict[str, Any] = {"format": fmt, "backtrace": False, "diagnose": False}
    stderr = sys.stderr

    def to_stderr(line: str) -> None:
        stderr.write(line)
        stderr.flush()

    logger.add(QueuedSink(WRITER, to_stderr), level=settings.log_level, filter=_is_app, **common)
    logger.add(files("app.log"), level=settings.log_level, filter=_is_app, **common)
    api = files("api.log")
    logger.add(api, level="INFO", filter=_is_api, **common)
    _access = (api, fmt is _json_line)
    logger.add(files("error.log"), level="ERROR", **common)
    _route_std_logging()
    _configured = key


def _route_std_logging() -> None:
    """The standard library's loggers (the servers', alembic's) into loguru."""
    logging.basicConfig(handlers=[InterceptHandler()], level=logging.INFO, force=True)
    for name in ("uvicorn", "uvicorn.error", "gunicorn.error", "alembic"):
        std = logging.getLogger(name)
        std.handlers = [InterceptHandler()]
        std.propagate = False
    # Upstream requests are logged by the generation that makes them, not once more by httpx.
    for name in ("httpx", "httpcore", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Requests are logged once, by the access middleware, without query strings.
    logging.getLogger("uvicorn.access").handlers = []
    logging.getLogger("uvicorn.access").propagate = False
    logging.getLogger("uvicorn.access").disabled = True


async def flush_logs() -> None:
    """Wait until queued records are written."""
    await WRITER.complete()
