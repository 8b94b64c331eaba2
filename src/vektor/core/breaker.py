"""A circuit breaker for one upstream (an LLM deployment, an MCP replica).

Consecutive failures open it for a cooldown that doubles with each one, up to a cap. When
the cooldown is over it is half-open: one call at a time may test the upstream, and the
others go elsewhere, until a call succeeds and closes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

State = Literal["closed", "open", "half-open"]

COOLDOWN_MAX_S = 60.0


@dataclass
class CircuitBreaker:
    """The health of one upstream: closed, open (cooling down) or half-open (probing)."""

    base_s: float
    max_s: float = COOLDOWN_MAX_S
    consecutive_failures: int = 0
    cooldown_until: float = 0.0
    probing: bool = False

    def state(self, now: float) -> State:
        """Closed after a success, open while cooling down, half-open after the cooldown."""
        if not self.consecutive_failures:
            return "closed"
        return "open" if self.cooldown_until > now else "half-open"

    def available(self, now: float) -> bool:
        """Whether a call may start now: closed, or half-open with no probe under way."""
        if self.cooldown_until > now:
            return False
        return not (self.consecutive_failures and self.probing)

    def acquire(self, now: float) -> bool:
        """Take the right to call; when half-open, the call becomes the one probe. Whoever
        acquires must end with record_success, record_failure or release."""
        if not self.available(now):
            return False
        self.probing = self.consecutive_failures > 0
        return True

    def release(self) -> None:
        """End a call that says nothing about the upstream's health (it was cancelled, or
        refused for the request's own sake): another call may probe."""
        self.probing = False

    def record_success(self) -> None:
        """Close the breaker."""
        self.probing = False
        self.consecutive_failures = 0
        self.cooldown_until = 0.0

    def record_failure(self, now: float) -> None:
        """Open the breaker for a cooldown growing with each consecutive failure."""
        self.probing = False
        self.consecutive_failures += 1
        cooldown = min(self.max_s, self.base_s * 2 ** (self.consecutive_failures - 1))
        self.cooldown_until = now + cooldown
