"""Adapters: `adapters/<name>.json` in the config folder, one JSON object per external
service (a webhook, Slack, …). Names, sizes, depth and URLs are checked before anything is
written, and the file is written atomically."""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from loguru import logger

from vektor.configuration.egress import may_connect
from vektor.core.errors import Invalid, PayloadTooLarge, Unavailable

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}", re.ASCII)
MAX_SETTINGS_BYTES = 64 * 1024
MAX_DEPTH = 10
URL_SCHEMES = ("http", "https", "ws", "wss")
URL_LIKE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
ADAPTERS = "adapters"


def check_name(name: str) -> str:
    """A full match of the ASCII pattern: no dots, slashes or look-alike characters."""
    if not isinstance(name, str) or NAME.fullmatch(name) is None:
        raise Invalid("Adapter names match ^[a-z0-9][a-z0-9_-]{0,63}$")
    return name


def _depth(value: Any, level: int = 1) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max([level, *(_depth(v, level + 1) for v in value.values())])
    if isinstance(value, list):
        return max([level, *(_depth(v, level + 1) for v in value)])
    return level


def check_shape(settings: dict[str, Any]) -> bytes:
    """The settings serialised, within the size (413) and depth (422) caps."""
    if _depth(settings) > MAX_DEPTH:
        raise Invalid(f"Adapter settings may nest at most {MAX_DEPTH} levels")
    data = json.dumps(settings, ensure_ascii=False, indent=2).encode("utf-8")
    if len(data) > MAX_SETTINGS_BYTES:
        raise PayloadTooLarge(f"Adapter settings may be at most {MAX_SETTINGS_BYTES} bytes")
    return data


def urls_in(value: Any) -> Iterable[str]:
    """Every string in the settings that looks like a URL (`scheme://…`)."""
    if isinstance(value, dict):
        for item in value.values():
            yield from urls_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from urls_in(item)
    elif isinstance(value, str) and URL_LIKE.match(value.strip()):
        yield value  # any scheme: check_url refuses all but http(s) and ws(s)


def check_form(url: str) -> str:
    """The URL's host, if it is an http(s) or ws(s) URL without credentials. Errors never
    quote the URL: a webhook URL is itself a secret (Slack's are)."""
    parts = urlsplit(url.strip())
    try:
        host = parts.hostname
    except ValueError:
        host = None
    if parts.scheme.lower() not in URL_SCHEMES or not host:
        raise Invalid("Adapter URLs must be http(s) or ws(s) URLs with a host")
    if parts.username or parts.password:
        raise Invalid("Credentials inside adapter URLs are not allowed")
    return host


def check_url(url: str, allow: list[str]) -> None:
    """Refuse a URL whose host is, or resolves to, a non-public address (forms like `127.1`
    or `0x7f000001` resolve like the OS would), unless the allow-list names the host or a
    network holding the address. A name that does not resolve now is accepted (DNS may be
    down): every delivery checks the address it connects to. Blocking (DNS)."""
    host = check_form(url)
    try:
        port = urlsplit(url.strip()).port or 443
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, ValueError):
        return
    for info in infos:
        address = str(info[4][0])
        if not may_connect(host, address, allow):
            raise Invalid(
                f"An adapter URL points at a non-public address ({address}); an "
                "administrator can allow it with ADAPTER_URL_ALLOWLIST"
            )


def validate(name: str, settings: dict[str, Any], allow: list[str]) -> bytes:
    """Everything checked before writing; the bytes to write. Blocking (DNS)."""
    check_name(name)
    data = check_shape(settings)
    kind = settings.get("kind")
    if kind in ("webhook", "slack") and not isinstance(settings.get("url"), str):
        raise Invalid(f"A {kind} adapter needs a `url`")
    for url in urls_in(settings):
        check_url(url, allow)
    return data


def write_atomically(config_dir: Path, name: str, data: bytes) -> Path:
    """`adapters/<name>.json`, atomically; Unavailable (503) if the folder cannot be written."""
    try:
        return _write(config_dir, name, data)
    except OSError as exc:
        # A read-only mount (docker-compose mounts config `:ro`), a full disk or a path in
        # the way: the server's storage, not the request, is at fault, and the old file stays.
        logger.warning("adapter {} not saved: {}", name, type(exc).__name__)
        raise Unavailable("The adapters folder cannot be written; nothing was changed") from exc


def _write(config_dir: Path, name: str, data: bytes) -> Path:
    """A temporary file, fsync, rename, fsync of the folder."""
    folder = (Path(config_dir) / ADAPTERS).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{check_name(name)}.json"
    if target.parent != folder:  # belt and braces: the name pattern already forbids this
        raise Invalid("Adapter path escapes the adapters folder")
    descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return target


def list_adapters(config_dir: Path) -> list[dict[str, Any]]:
    """`{name, path}` of every adapter file, by name."""
    folder = Path(config_dir) / ADAPTERS
    if not folder.is_dir():
        return []
    return [
        {"name": path.stem, "path": f"{ADAPTERS}/{path.name}"}
        for path in sorted(folder.glob("*.json"))
        if NAME.fullmatch(path.stem)
    ]


def load_adapters(config_dir: Path) -> dict[str, dict[str, Any]]:
    """Every adapter's settings; unreadable files are skipped."""
    loaded = {}
    for row in list_adapters(config_dir):
        try:
            value = json.loads((Path(config_dir) / row["path"]).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(value, dict):
            loaded[row["name"]] = value
    return loaded
