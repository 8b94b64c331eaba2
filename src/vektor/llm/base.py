"""The provider interface: a cancellable async stream of text, tool calls, usage and finish."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

_T = TypeVar("_T")

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of the model's context; tool calls and results ride along when used."""

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What a provider is asked to generate."""

    messages: list[ChatMessage]
    temperature: float | None = None
    max_tokens: int | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: str | dict[str, Any] | None = None  # chat-completions `tool_choice`


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of answer text."""

    content: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    """The model asks for a tool (complete: arguments assembled)."""

    id: str
    name: str
    arguments: str
    # Opaque state some providers (Gemini's thoughtSignature) want back with the call when
    # it is replayed in the context; it rides along the tool rounds of one answer.
    signature: str | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of the whole generation."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Finish:
    """The upstream ended the generation."""

    reason: str  # stop, length, tool_calls, …


ProviderEvent = TextDelta | ToolCall | Usage | Finish


class ProviderError(Exception):
    """A provider failed. `retryable` errors before the first token allow failover."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


def parse_upstream(what: str, parse: Callable[..., _T], *args: Any) -> _T:
    """Run a parser; data that breaks the protocol (types, fields) is a retryable failure."""
    try:
        return parse(*args)
    except ProviderError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ProviderError(f"upstream sent a malformed {what}: {exc}", retryable=True) from exc


def arguments_object(text: str) -> dict[str, Any]:
    """A tool call's JSON arguments as an object, for providers that want one ({} when the
    text is not a JSON object)."""
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class Provider(Protocol):
    """One deployment's way of generating. Closing the iterator closes the upstream request."""

    def stream(self, request: GenerationRequest) -> AsyncIterator[ProviderEvent]:
        """Generate; raise ProviderError on failure."""
        ...

    async def aclose(self) -> None:
        """Release connections or models."""
        ...
