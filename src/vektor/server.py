"""Gunicorn with Uvicorn workers, configured from code (`vektor serve --prod`)."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, ClassVar

from gunicorn.app.base import BaseApplication
from uvicorn_worker import UvicornWorker  # type: ignore[import-untyped]

from vektor.core.config import WS_MAX_FRAME_BYTES

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


# /chat/ws: a message over the limit closes the socket with 1009 in the server itself; no
# permessage-deflate, whose zlib state per socket costs memory and whose compression of
# small JSON frames costs CPU for next to no bytes saved.
WS_OPTIONS: dict[str, Any] = {"ws_max_size": WS_MAX_FRAME_BYTES, "ws_per_message_deflate": False}


def _worker_exited(server: Any, worker: Any) -> None:
    """A dead worker's live gauges (streams in progress) stop counting."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


class VektorWorker(UvicornWorker):  # type: ignore[misc]
    """Uvicorn's Gunicorn worker without its proxy-headers middleware: the app itself decides
    whom to believe about X-Forwarded-For (TRUSTED_PROXIES). WebSocket messages are capped
    at /chat/ws's limit, and not compressed (see `WS_OPTIONS`)."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        **UvicornWorker.CONFIG_KWARGS,
        "proxy_headers": False,
        **WS_OPTIONS,
    }


class VektorGunicorn(BaseApplication):  # type: ignore[misc]
    """A Gunicorn application whose workers each build the app with `create_app()`."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        """Apply the options to Gunicorn's config."""
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        """Build the ASGI app inside the worker."""
        from vektor.app import create_app

        return create_app()


def run_gunicorn(*, host: str, port: int, workers: int, graceful_timeout: int = 30) -> None:
    """Serve with `workers` Uvicorn worker processes until stopped. Prometheus metrics are
    shared through files in PROMETHEUS_MULTIPROC_DIR (a fresh temporary folder unless set),
    so /metrics on any worker shows the whole server."""
    owned = None
    if not os.environ.get(MULTIPROC_ENV):
        owned = tempfile.mkdtemp(prefix="vektor-metrics-")
        os.environ[MULTIPROC_ENV] = owned
    try:
        _run(host=host, port=port, workers=workers, graceful_timeout=graceful_timeout)
    finally:
        if owned is not None:
            shutil.rmtree(owned, ignore_errors=True)


def _run(*, host: str, port: int, workers: int, graceful_timeout: int) -> None:
    VektorGunicorn(
        {
            "bind": f"{host}:{port}",
            "workers": max(1, workers),
            "worker_class": "vektor.server.VektorWorker",
            "graceful_timeout": graceful_timeout,
            "timeout": 60,
            "keepalive": 5,
            "accesslog": None,
            "errorlog": "-",
            "child_exit": _worker_exited,
        }
    ).run()
