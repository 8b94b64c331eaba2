"""Prepare: check an answer request against the limits and shape what the model is sent."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vektor.answers.request import AnswerRequest
from vektor.core.config import Settings
from vektor.core.errors import Invalid, NotFound
from vektor.llm.balancer import ModelBalancer
from vektor.llm.base import ChatMessage, GenerationRequest
from vektor.mcp.registry import McpRegistry

TITLE_LENGTH = 80
CHARS_PER_TOKEN = 3  # a cautious estimate, so trimmed context fits the model's window


def make_title(messages: Sequence[ChatMessage]) -> str:
    """A title from the first user message."""
    text = next((m.content for m in messages if m.role == "user"), "")
    text = re.sub(r"\s+", " ", text).strip()
    if not text:
        return "New conversation"
    return text if len(text) <= TITLE_LENGTH else text[: TITLE_LENGTH - 1].rstrip() + "…"


def fit_context(messages: list[ChatMessage], budget_chars: int) -> list[ChatMessage]:
    """Keep system messages and as many of the newest others as fit the budget."""
    system = [m for m in messages if m.role == "system"]
    used = sum(len(m.content) for m in system)
    kept: list[ChatMessage] = []
    for message in reversed([m for m in messages if m.role != "system"]):
        if kept and used + len(message.content) > budget_chars:
            break
        kept.append(message)
        used += len(message.content)
    return system + list(reversed(kept))


@dataclass(frozen=True, slots=True)
class Plan:
    """A checked request: the answer's token cap and the tools the model is offered."""

    max_tokens: int
    tools: list[dict[str, Any]]
    mcp_tools: frozenset[str]

    def generation_request(
        self, request: AnswerRequest, context: list[ChatMessage], window: int
    ) -> GenerationRequest:
        """What the deployment is sent, the context trimmed to the window if asked."""
        if request.trim_context:
            budget = max(1, window - self.max_tokens) * CHARS_PER_TOKEN
            context = fit_context(context, budget)
        return GenerationRequest(
            messages=context,
            temperature=request.temperature,
            max_tokens=self.max_tokens,
            tools=self.tools,
            tool_choice=request.tool_choice,
        )


def prepare(
    request: AnswerRequest,
    *,
    settings: Settings,
    balancer: ModelBalancer,
    registry: McpRegistry | None,
    pools: frozenset[str] | None = None,
) -> Plan:
    """Check sizes, the model and the tools (422/404 before anything is stored or sent).
    Only the MCP pools in `pools` (None: every pool) are offered."""
    if len(request.messages) > settings.max_messages_per_request:
        raise Invalid(f"At most {settings.max_messages_per_request} messages per request")
    if any(len(m.content) > settings.max_message_chars for m in request.messages):
        raise Invalid(f"A message may have at most {settings.max_message_chars} characters")
    if not balancer.has_model(request.model):
        raise NotFound(f"Unknown model '{request.model}'")
    mcp_specs = registry.tool_specs(pools) if registry is not None and request.mcp_tools else []
    tools = [*request.client_tools, *mcp_specs]
    names = [t["function"]["name"] for t in tools]
    if len(names) != len(set(names)):
        raise Invalid("Tool names must be unique (Vektor's MCP tools are named <server>__<tool>)")
    answer_cap = settings.max_answer_tokens
    max_tokens = min(
        request.max_tokens or answer_cap,
        answer_cap,
        balancer.max_tokens(request.model) or answer_cap,
    )
    return Plan(
        max_tokens=max_tokens,
        tools=tools,
        mcp_tools=frozenset(spec["function"]["name"] for spec in mcp_specs),
    )
