"""What a transport asks for (`AnswerRequest`) and an answer in progress (`Answer`)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from vektor.answers.admission import Slot
from vektor.llm.base import ChatMessage, GenerationRequest, ToolCall, Usage
from vektor.llm.config import DeploymentConfig
from vektor.usage.pricing import cost_of

Source = Literal["chat", "ws", "v1"]


@dataclass(frozen=True, slots=True)
class AnswerRequest:
    """One answer to produce, whatever the transport."""

    user_id: uuid.UUID
    model: str
    messages: Sequence[ChatMessage]
    source: Source
    temperature: float | None = None
    max_tokens: int | None = None
    conversation_id: uuid.UUID | None = None  # continue this stored conversation
    store: bool = True  # keep the question and the answer as a conversation
    trim_context: bool = True  # fit the context to the model's window (stored history)
    mcp_tools: bool = True  # offer Vektor's MCP tools (and run the model's calls to them)
    client_tools: Sequence[dict[str, Any]] = ()  # the client's own tools
    hands_back_tools: bool = False  # calls Vektor does not run go back to the client
    tool_choice: str | dict[str, Any] | None = None
    api_key_id: uuid.UUID | None = None
    cache: bool | None = None  # `"cache"` of the request (False also from Cache-Control)


@dataclass(slots=True)
class Answer:
    """An answer in progress: what the client is sent, and what is stored."""

    id: uuid.UUID  # the stored answer's message id
    user_id: uuid.UUID
    model: str
    source: Source
    request: GenerationRequest  # the model's context, grown by tool rounds
    conversation_id: uuid.UUID | None
    mcp_tools: frozenset[str]
    hands_back_tools: bool  # calls to tools that are not Vektor's go back to the client
    prompt_chars: int
    slot: Slot  # the user's slot, given back when the answer finishes
    api_key_id: uuid.UUID | None = None  # the API key the request came with
    deployment: str = ""  # `<name>#<index>` of the deployment of the latest round
    input_cost_per_mtok: Decimal = Decimal(0)  # that deployment's prices
    output_cost_per_mtok: Decimal = Decimal(0)
    created: int = field(default_factory=lambda: int(time.time()))
    parts: list[str] = field(default_factory=list)
    tool_log: list[dict[str, Any]] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)  # handed back to the client
    reported: Usage | None = None
    guessed: bool = False  # some of `reported` is an estimate (an attempt that died)
    priced: Usage | None = None  # the counts priced at earlier deployments' rates
    priced_cost: Decimal = Decimal(0)  # what they cost
    finish_reason: str = "stop"
    error: str | None = None
    finished: bool = False
    cached: bool = False  # served from the response cache: no upstream call of its own

    @property
    def text(self) -> str:
        """The answer's text so far."""
        return "".join(self.parts)

    def add_usage(self, usage: Usage) -> None:
        """Add an upstream's token counts (one per tool round)."""
        if self.reported is None:
            self.reported = usage
            return
        self.reported = Usage(
            prompt_tokens=self.reported.prompt_tokens + usage.prompt_tokens,
            completion_tokens=self.reported.completion_tokens + usage.completion_tokens,
        )

    def add_estimate(self, prompt_chars: int, completion_chars: int) -> None:
        """Add the estimated counts of an attempt that reported none (a deployment that
        died mid-answer): one token per four characters."""
        self.add_usage(
            Usage(
                prompt_tokens=max(1, (prompt_chars + 3) // 4),
                completion_tokens=(completion_chars + 3) // 4,
            )
        )
        self.guessed = True

    def use(self, key: str, config: DeploymentConfig) -> None:
        """Note the deployment answering (each tool round or failover may be another): the
        counts reported so far are priced at the rates of the deployment that produced
        them; its name goes on the usage row."""
        if self.deployment and key != self.deployment and self.reported is not None:
            done = self.priced or Usage(0, 0)
            self.priced_cost += cost_of(
                self.reported.prompt_tokens - done.prompt_tokens,
                self.reported.completion_tokens - done.completion_tokens,
                self.input_cost_per_mtok,
                self.output_cost_per_mtok,
            )
            self.priced = self.reported
        self.deployment = key
        self.input_cost_per_mtok = config.input_cost_per_mtok
        self.output_cost_per_mtok = config.output_cost_per_mtok

    def cost(self, usage: Usage) -> Decimal:
        """What `usage` (the answer's whole counts) costs: the part priced at earlier
        deployments' rates, the rest at the latest one's."""
        done = self.priced or Usage(0, 0)
        return self.priced_cost + cost_of(
            usage.prompt_tokens - done.prompt_tokens,
            usage.completion_tokens - done.completion_tokens,
            self.input_cost_per_mtok,
            self.output_cost_per_mtok,
        )

    @property
    def estimated(self) -> bool:
        """Some upstream reported no token counts: `usage()` is (partly) an estimate."""
        return self.reported is None or self.guessed

    def usage(self) -> Usage:
        """The upstream's counts (the local model's come from its tokenizer), or an
        estimate of one token per four characters when it reported none."""
        return self.reported or Usage(
            prompt_tokens=max(1, (self.prompt_chars + 3) // 4),
            completion_tokens=(sum(len(p) for p in self.parts) + 3) // 4,
        )

    def fail(self, message: str) -> None:
        """End the answer with an error."""
        self.finish_reason, self.error = "error", message
