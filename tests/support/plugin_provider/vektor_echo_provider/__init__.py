"""A provider plug-in: `"provider": "echo"` answers with the entry's `greeting` and the
last user message, word by word. It needs `greeting` (an entry field of its own)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

from vektor.llm.base import Finish, GenerationRequest, ProviderEvent, TextDelta, Usage


class EchoProvider:
    """The provider of one `echo` deployment."""

    default_context_window: ClassVar[int | None] = 4096
    required_fields: ClassVar[tuple[str, ...]] = ("greeting",)

    def __init__(self, greeting: str) -> None:
        self.greeting = greeting

    @classmethod
    def build(cls, config: Any, context: Any) -> EchoProvider:
        """Extra entry fields are kept by Vektor's schema: read ours from it."""
        return cls(str(config.greeting))

    async def stream(self, request: GenerationRequest) -> AsyncIterator[ProviderEvent]:
        """The greeting, then the question's words."""
        question = next(m.content for m in reversed(request.messages) if m.role == "user")
        words = [self.greeting, *question.split()]
        for index, word in enumerate(words):
            yield TextDelta((" " if index else "") + word)
        yield Usage(len(question.split()), len(words))
        yield Finish("stop")

    async def aclose(self) -> None:
        """Nothing to release."""
