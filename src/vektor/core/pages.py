"""HTML pages the server renders itself (the dashboard, the API docs), with security
headers: a Content-Security-Policy that allows exactly the page's own inline scripts and
styles (by hash) and the sources named for it, and no framing or MIME sniffing."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence

from starlette.responses import HTMLResponse

# Inline blocks only: `<script src=…>` loads from a source the policy names.
_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.S)

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _digest(text: str) -> str:
    digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
    return f"'sha256-{digest}'"


def content_security_policy(html: str, sources: Mapping[str, Sequence[str]]) -> str:
    """A policy for `html`: its inline scripts and styles by hash, plus `sources` (directive
    → allowed sources); everything else refused."""
    directives: dict[str, list[str]] = {
        "default-src": ["'none'"],
        "connect-src": ["'self'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
    for kind, body in _INLINE.findall(html):
        if "'unsafe-inline'" not in sources.get(f"{kind}-src", ()):  # a hash would void it
            directives.setdefault(f"{kind}-src", []).append(_digest(body))
    for directive, allowed in sources.items():
        directives.setdefault(directive, []).extend(allowed)
    return "; ".join(f"{name} {' '.join(values)}" for name, values in directives.items())


def secure_page(html: str, sources: Mapping[str, Sequence[str]] | None = None) -> HTMLResponse:
    """The page with its policy and the other security headers."""
    headers = {
        **SECURITY_HEADERS,
        "Content-Security-Policy": content_security_policy(html, sources or {}),
    }
    return HTMLResponse(html, headers=headers)
