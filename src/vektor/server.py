"""Gunicorn with Uvicorn workers, configured from code (`vektor serve --prod`)."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication


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
    """Serve with `workers` Uvicorn worker processes until stopped."""
    VektorGunicorn(
        {
            "bind": f"{host}:{port}",
            "workers": max(1, workers),
            "worker_class": "uvicorn_worker.UvicornWorker",
            "graceful_timeout": graceful_timeout,
            "timeout": 60,
            "keepalive": 5,
            "accesslog": None,
            "errorlog": "-",
        }
    ).run()
