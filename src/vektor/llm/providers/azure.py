"""Azure OpenAI: the chat-completions wire format of `openai.py`, at a deployment's URL of
the resource endpoint, with the key in the `api-key` header (never in the URL)."""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp

from vektor.llm.base import GenerationRequest
from vektor.llm.config import DeploymentConfig
from vektor.llm.providers import register
from vektor.llm.providers.openai import OpenAIProvider

# The generally available API version used when an entry sets no `api_version`.
DEFAULT_API_VERSION = "2024-10-21"


@register("azure")
class AzureOpenAIProvider(OpenAIProvider):
    """POST {base_url}/openai/deployments/{deployment}/chat/completions?api-version=…"""

    required_fields: ClassVar[tuple[str, ...]] = ("base_url", "deployment")

    def __init__(self, config: DeploymentConfig, session: aiohttp.ClientSession) -> None:
        super().__init__(config, session)
        endpoint = (config.base_url or "").rstrip("/")
        deployment = quote(config.deployment or "", safe="")
        version = quote(config.api_version or DEFAULT_API_VERSION, safe="")
        self.url = (
            f"{endpoint}/openai/deployments/{deployment}/chat/completions?api-version={version}"
        )

    def _headers(self) -> dict[str, str]:
        key = self.config.resolve_api_key()
        return {"api-key": key} if key else {}

    def _body(self, request: GenerationRequest, stream: bool) -> dict[str, Any]:
        body = super()._body(request, stream)
        del body["model"]  # the deployment in the URL names the model
        return body
