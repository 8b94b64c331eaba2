"""Scripted upstreams for the providers' native protocols, on the plumbing of
`upstream.py` (same scripts in the model name, same counters), written from the public API
references:

- Azure OpenAI: `POST /openai/deployments/{deployment}/chat/completions?api-version=…`,
  key in `api-key`; the deployment name is the script (the body names no model).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.upstream import ScriptedUpstream


class NativeUpstream(ScriptedUpstream):
    """One server speaking every protocol above besides OpenAI's and Anthropic's."""

    def __init__(self) -> None:
        super().__init__()
        self.queries: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.app.router.routes.extend(
            [
                Route(
                    "/openai/deployments/{deployment}/chat/completions",
                    self.azure,
                    methods=["POST"],
                ),
            ]
        )

    @property
    def origin(self) -> str:
        """The server's root URL (Azure's resource endpoint, Ollama's and Gemini's base)."""
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        super().reset()
        self.queries.clear()
        self.paths.clear()

    def _seen(self, request: Request) -> None:
        self.queries.append(dict(request.query_params))
        self.paths.append(request.url.path)

    async def azure(self, request: Request) -> Response:
        """Azure OpenAI: 401 without `api-key`, 404 without `api-version` (as Azure does)."""
        self._seen(request)
        if "api-key" not in request.headers:
            return _error(401, "Access denied due to invalid subscription key.")
        if "api-version" not in request.query_params:
            return _error(404, "Resource not found")
        return await self.chat(request, request.path_params["deployment"])


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": {"code": str(status), "message": message}}, status_code=status)
