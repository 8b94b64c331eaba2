"""How secrets look when an API, a metric or a log shows a configuration: masked, never
echoed. Hosted MCP servers carry tokens in their URL, Azure keys travel as `?api-key=`,
stdio servers take `--token X`: every such place is masked before it leaves the server."""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit, urlunsplit

SECRET_MASK = "***"  # noqa: S105 - the mask shown instead of secrets

# A query parameter, flag or variable is secret when one of the words of its name is one of
# these (`api-key`, `access_token`, `X-Amz-Signature`, `--client-secret`, `DB_PASSWORD`).
SECRET_WORDS = frozenset(
    {
        "key",
        "apikey",
        "token",
        "sig",
        "signature",
        "secret",
        "password",
        "passwd",
        "pwd",
        "pass",
        "auth",
        "authorization",
        "credential",
        "credentials",
        "code",
        "session",
        "jwt",
    }
)
_WORD = re.compile(r"[a-z0-9]+")
_URL = re.compile(r"""[A-Za-z][A-Za-z0-9+.-]*://[^\s'"<>`]+""")
_FLAG = re.compile(r"^(-{1,2}[A-Za-z0-9][A-Za-z0-9_.-]*)=(.*)$", re.DOTALL)
_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.DOTALL)


def is_secret_name(name: str) -> bool:
    """Whether a parameter, flag or variable of this name holds a secret."""
    return any(word in SECRET_WORDS for word in _WORD.findall(name.lower()))


def _mask_query(query: str) -> str:
    parts = []
    for pair in query.split("&"):
        name, sep, value = pair.partition("=")
        parts.append(f"{name}={SECRET_MASK}" if sep and value and is_secret_name(name) else pair)
    return "&".join(parts)


def mask_url(url: str) -> str:
    """The URL with its user-info and secret query parameters masked."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
    except ValueError:
        return SECRET_MASK  # not parseable: show nothing of it
    netloc = f"{SECRET_MASK}@{host}" if "@" in parts.netloc else host
    query = _mask_query(parts.query) if parts.query else ""
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, parts.fragment))


def mask_text(text: str) -> str:
    """Free text (an error, a log line) with every URL in it masked."""
    if "://" not in text:
        return text  # the common case, kept cheap
    return _URL.sub(lambda found: mask_url(found.group(0)), text)


def mask_command(command: list[str]) -> list[str]:
    """A command line with flagged secrets (`--token X`, `--api-key=X`), `NAME=value`
    assignments of secret names and URLs masked."""
    masked: list[str] = []
    hide_next = False
    for arg in command:
        if hide_next:
            masked.append(SECRET_MASK)
            hide_next = False
            continue
        flag = _FLAG.match(arg) or _ASSIGNMENT.match(arg)
        if flag and is_secret_name(flag.group(1)):
            masked.append(f"{flag.group(1)}={SECRET_MASK}")
        elif arg.startswith("-") and is_secret_name(arg):
            masked.append(arg)
            hide_next = True
        else:
            masked.append(mask_text(arg))
    return masked
