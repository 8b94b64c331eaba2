"""Who may call a route, declared by the auth dependency that decides it.

`/api/endpoints` lists what every route asks of its caller. Each auth dependency carries
that answer itself, so the route list reads it from a route's dependency tree without
importing the domains that define the dependencies (which would point monitoring at every
other package).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

Who = Literal["user", "user or API key", "admin"]
F = TypeVar("F", bound=Callable[..., Any])

ATTRIBUTE = "who"


def who_may_call(who: Who) -> Callable[[F], F]:
    """Mark an auth dependency with who it lets through."""

    def mark(dependency: F) -> F:
        setattr(dependency, ATTRIBUTE, who)
        return dependency

    return mark


def declared_access(call: object) -> str | None:
    """Who a dependency lets through, or None when it declares nothing."""
    who = getattr(call, ATTRIBUTE, None)
    return who if isinstance(who, str) else None
