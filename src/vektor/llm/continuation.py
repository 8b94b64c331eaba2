"""Asking another deployment to continue an answer a dead one left half-written.

Two ways, chosen per deployment (the entry's `continuation`, else its provider's default):

- `prefill`: the partial answer is the trailing assistant message and the model writes on
  from its last character (Anthropic's Messages API does this natively; so do Ollama,
  llama.cpp's server and vLLM with `continue_final_message` when an entry says so). The
  trailing whitespace is left out of the message (Anthropic refuses an assistant message
  that ends with it) and trimmed off the continuation if the model writes it again.
- `instruct` (every other provider): the partial answer as an assistant message, then a
  user message asking to continue exactly where it stopped. Such a model may repeat the
  end of the partial answer, or all of it: the continuation is held back while it could
  still be a repetition, and the longest suffix of the partial answer that the
  continuation starts with is dropped.
"""

from __future__ import annotations

from dataclasses import replace

from vektor.llm.base import ChatMessage, GenerationRequest

CONTINUE_INSTRUCTION = (
    "Your previous answer was cut off. Continue it exactly where it stopped, in the same "
    "language and style: start with the very next character and do not repeat anything "
    "you already wrote."
)


def continuation_request(
    request: GenerationRequest, partial: str, *, prefill: bool
) -> GenerationRequest:
    """The request that asks a deployment to go on from `partial` (the request itself when
    nothing was written yet)."""
    if not partial.strip():
        return request
    if prefill:
        messages = [*request.messages, ChatMessage(role="assistant", content=partial.rstrip())]
    else:
        messages = [
            *request.messages,
            ChatMessage(role="assistant", content=partial),
            ChatMessage(role="user", content=CONTINUE_INSTRUCTION),
        ]
    return replace(request, messages=messages)


def overlap_trimmer(partial: str, *, prefill: bool) -> OverlapTrimmer:
    """The trimmer for a continuation of `partial`: against what the deployment was not
    shown (prefill: the trailing whitespace), or against the whole partial answer."""
    if not partial.strip():
        return OverlapTrimmer("")
    if prefill:
        return OverlapTrimmer(partial[len(partial.rstrip()) :])
    return OverlapTrimmer(partial)


class OverlapTrimmer:
    """Drops the longest suffix of `partial` that the continuation begins with.

    While the continuation so far occurs somewhere in `partial`, a longer overlap is still
    possible and the text is held back; once it does not (or the continuation ends), the
    overlap is known, the rest is released, and every later piece passes straight through.
    """

    def __init__(self, partial: str) -> None:
        self.partial = partial
        self.held = ""
        self.decided = not partial

    def feed(self, text: str) -> str:
        """The part of this piece the client may be sent now ('' while held back)."""
        if self.decided:
            return text
        self.held += text
        if self.held in self.partial:
            return ""
        return self._release(len(self.held) - 1)

    def end(self) -> str:
        """What is still held back once the continuation has ended."""
        if self.decided:
            return ""
        return self._release(len(self.held))

    def _release(self, longest: int) -> str:
        """Decide the overlap (at most `longest` characters) and release the rest."""
        held, self.held, self.decided = self.held, "", True
        for size in range(min(longest, len(self.partial)), 0, -1):
            if self.partial.endswith(held[:size]):
                return held[size:]
        return held
