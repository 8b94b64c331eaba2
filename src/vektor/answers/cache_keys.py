"""Which requests the response cache serves (SPEC §3.11), and the key of each: a hash of
the canonical request the model is sent."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from vektor.llm.base import ChatMessage, GenerationRequest
from vektor.llm.config import DeploymentConfig

KEY_VERSION = "v1"  # bumped when the canonical form changes, so old entries are never read


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """A model's caching, from its deployments' entries: the shortest `cache_ttl_s` of
    them, and `global` only when every entry says so (the cautious reading when the
    deployments of one model disagree)."""

    ttl_s: int
    scope: Literal["user", "global"]

    @classmethod
    def of(cls, configs: Sequence[DeploymentConfig]) -> CachePolicy:
        """The policy of the model these entries deploy."""
        if not configs:
            return cls(0, "user")
        ttl = min(c.cache_ttl_s for c in configs)
        scope: Literal["user", "global"] = (
            "global" if all(c.cache_scope == "global" for c in configs) else "user"
        )
        return cls(ttl, scope)


def wants_cache(temperature: float | None, asked: bool | None) -> bool:
    """Whether a request may be served from the cache: `"cache": true`, or temperature 0
    unless it said `"cache": false` (the Cache-Control header arrives as that)."""
    if asked is not None:
        return asked
    return temperature == 0


def no_cache_header(value: str | None) -> bool:
    """Whether a Cache-Control header asks to bypass caches (`no-cache` or `no-store`)."""
    if not value:
        return False
    directives = {part.strip().lower().split("=", 1)[0] for part in value.split(",")}
    return bool(directives & {"no-cache", "no-store"})


def _message(message: ChatMessage) -> list[Any]:
    calls = [[c.id, c.name, c.arguments] for c in message.tool_calls]
    return [message.role, message.content, calls, message.tool_call_id]


def cache_key(
    model: str, generation: GenerationRequest, scope: Literal["user", "global"], user_id: uuid.UUID
) -> str:
    """The hash of what the model is sent (the full context, stored history included, the
    temperature, the answer cap, the tools and tool choice) and of who may read it."""
    canonical = [
        KEY_VERSION,
        model,
        [_message(m) for m in generation.messages],
        generation.temperature,
        generation.max_tokens,
        generation.tools,
        generation.tool_choice,
        user_id.hex if scope == "user" else "global",
    ]
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()
