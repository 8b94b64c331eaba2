"""The backup file: gzip-compressed JSON lines, checked end to end.

    {"kind": "header", "format": "vektor-backup", "version": 1, "app_version", "created_at"}
    {"kind": "profile", ...}        {"kind": "preferences", "values": {...}}
    {"kind": "conversation", "id", "title", "model", ..., "messages": [...]}   (one per line)
    {"kind": "usage", "rows": [{"id", "model", "prompt_tokens", "cost", ...}, ...]}
    {"kind": "manifest", "counts": {...}, "sha256": "<of every line above>"}

`usage` lines (up to USAGE_PER_LINE rows each) carry the account's usage rows: they are the
user's data, so a backup includes them, but a restore verifies and then ignores them (usage
and quotas never change by a restore). `counts` has `usage` only when there are some, so a
file written before usage was backed up still checks.

Writing and reading are blocking (files, gzip): callers run them in a worker thread.

Storage is measured as the quota counts it (`MAX_USER_STORAGE_BYTES`): the UTF-8 bytes of
every title and message, plus ROW_BYTES for each conversation and message, so that
millions of tiny messages count for what their rows take.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from vektor.auth.schemas import AvatarUrl
from vektor.sync.index import BackupIndex, DuplicateId, MoveIds
from vektor.users.schemas import PreferencesRead

FORMAT = "vektor-backup"
FORMAT_VERSION = 1
MAX_LINE_BYTES = 16 * 1024 * 1024
ROW_BYTES = 200
MAX_CONTENT_CHARS = 1_000_000
MAX_INT = 2**31 - 1
USAGE_PER_LINE = 1000


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    return value


Text = Annotated[str, Field(max_length=MAX_CONTENT_CHARS), AfterValidator(_no_nul)]
Short = Annotated[str, Field(max_length=128), AfterValidator(_no_nul)]
Count = Annotated[int, Field(ge=0, le=MAX_INT)]


class BackupInvalid(ValueError):
    """The file is not an intact backup this version can restore."""


class OverQuota(BackupInvalid):
    """The file's content would take the user past their storage quota."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Header(_Record):
    kind: Literal["header"]
    format: Literal["vektor-backup"]
    version: int
    app_version: str
    created_at: datetime


class Profile(_Record):
    kind: Literal["profile"]
    email: Annotated[str, Field(max_length=320), AfterValidator(_no_nul)]
    username: Short
    avatar_url: AvatarUrl


class Preferences(_Record):
    kind: Literal["preferences"]
    values: PreferencesRead


class MessageRecord(_Record):
    id: uuid.UUID
    role: Literal["system", "user", "assistant", "tool"]
    content: Text
    created_at: datetime
    model: Short | None = None
    finish_reason: Annotated[str, Field(max_length=16), AfterValidator(_no_nul)] | None = None
    prompt_tokens: Count | None = None
    completion_tokens: Count | None = None


class ConversationRecord(_Record):
    kind: Literal["conversation"]
    id: uuid.UUID
    title: Annotated[str, Field(max_length=200), AfterValidator(_no_nul)]
    model: Short
    created_at: datetime
    updated_at: datetime
    messages: list[MessageRecord]


class UsageRowRecord(_Record):
    id: uuid.UUID
    api_key_id: uuid.UUID | None
    model: Short
    deployment: Annotated[str, Field(max_length=160), AfterValidator(_no_nul)]
    prompt_tokens: Count
    completion_tokens: Count
    cost: Annotated[Decimal, Field(ge=0, max_digits=20, decimal_places=9)]
    cached: bool
    estimated: bool
    source: Annotated[str, Field(max_length=8), AfterValidator(_no_nul)]
    finish_reason: Annotated[str, Field(max_length=32), AfterValidator(_no_nul)]
    created_at: datetime


class UsageRecord(_Record):
    kind: Literal["usage"]
    rows: Annotated[list[UsageRowRecord], Field(max_length=USAGE_PER_LINE)]


class Manifest(_Record):
    kind: Literal["manifest"]
    counts: dict[str, int]
    sha256: str


Record = Annotated[
    Header | Profile | Preferences | ConversationRecord | UsageRecord | Manifest,
    Field(discriminator="kind"),
]
_record = TypeAdapter(Record)


class ArchiveWriter:
    """Writes records to a temporary file, then moves it into place when complete."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.temp = path.with_name(f".{path.name}.tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._raw: BinaryIO = open(self.temp, "wb")  # noqa: SIM115 - closed in finish/abort
        self._gzip = gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=6, mtime=0)
        self._content = hashlib.sha256()
        self.counts = {"conversations": 0, "messages": 0}

    def write(self, records: list[dict[str, Any]]) -> None:
        """Append records (one JSON line each)."""
        for record in records:
            line = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
            self._content.update(line)
            self._gzip.write(line)
            if record["kind"] == "conversation":
                self.counts["conversations"] += 1
                self.counts["messages"] += len(record["messages"])
            elif record["kind"] == "usage":
                self.counts["usage"] = self.counts.get("usage", 0) + len(record["rows"])

    def finish(self) -> tuple[int, str]:
        """Write the manifest, sync, rename into place; (size, sha256 of the file)."""
        manifest = {"kind": "manifest", "counts": self.counts, "sha256": self._content.hexdigest()}
        self._gzip.write(json.dumps(manifest, separators=(",", ":")).encode() + b"\n")
        self._gzip.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        os.replace(self.temp, self.path)
        return self.path.stat().st_size, file_sha256(self.path)

    def abort(self) -> None:
        """Drop the temporary file. Closing may fail too (the disk that ended the job is
        still full): the file goes regardless."""
        for close in (self._gzip.close, self._raw.close):
            with contextlib.suppress(OSError):
                close()
        self.temp.unlink(missing_ok=True)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _lines(path: Path, max_total: int | None = None) -> Iterator[bytes]:
    total = 0
    try:
        with gzip.open(path, "rb") as handle:
            while True:
                line = handle.readline(MAX_LINE_BYTES + 1)
                if not line:
                    return
                if len(line) > MAX_LINE_BYTES or not line.endswith(b"\n"):
                    raise BackupInvalid("a record is truncated or too large")
                total += len(line)
                if max_total is not None and total > max_total:
                    raise OverQuota("the backup expands beyond what your storage quota holds")
                yield line
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise BackupInvalid(f"not a readable backup: {type(exc).__name__}") from exc


def _parse(line: bytes) -> Any:
    try:
        return _record.validate_json(line)
    except ValidationError as exc:
        raise BackupInvalid(
            f"a record does not match the format: {exc.errors()[0]['msg']}"
        ) from exc


def storage_bytes(record: ConversationRecord) -> int:
    """What a conversation takes of the storage quota."""
    content = sum(len(m.content.encode()) for m in record.messages)
    return ROW_BYTES * (1 + len(record.messages)) + len(record.title.encode()) + content


def verify(
    path: Path, *, index: BackupIndex, moved: MoveIds, limit: int, expected_sha256: str | None
) -> int:
    """Check the whole file without keeping it: checksums, version, every record, counts,
    ids (into `index`); returns its storage bytes, refusing past `limit` as soon as it
    passes it. JSON escapes may make a line up to six times its content: reading stops
    at twice the limit plus a margin, whatever the compression ratio."""
    if expected_sha256 is not None and file_sha256(path) != expected_sha256:
        raise BackupInvalid("checksum mismatch: the file changed since it was written")
    check = _Check(index, moved, limit)
    for index_, line in enumerate(_lines(path, 2 * limit + MAX_LINE_BYTES)):
        check.line(index_, line)
    return check.finish()


class _Check:
    """The running state of one verification."""

    def __init__(self, index: BackupIndex, moved: MoveIds, limit: int) -> None:
        self.index, self.moved, self.limit = index, moved, limit
        self.content = hashlib.sha256()
        self.counts = {"conversations": 0, "messages": 0}
        self.storage = 0
        self.manifest: Manifest | None = None

    def line(self, number: int, line: bytes) -> None:
        if self.manifest is not None:
            raise BackupInvalid("records after the manifest")
        record = _parse(line)
        if number == 0:
            if not isinstance(record, Header):
                raise BackupInvalid("no header")
            if record.version != FORMAT_VERSION:
                raise BackupInvalid(f"unsupported format version {record.version}")
        elif isinstance(record, Header):
            raise BackupInvalid("a second header")
        if isinstance(record, Manifest):
            self.manifest = record
            return
        self.content.update(line)
        if isinstance(record, ConversationRecord):
            self.conversation(record)
        elif isinstance(record, UsageRecord):
            self.counts["usage"] = self.counts.get("usage", 0) + len(record.rows)

    def conversation(self, record: ConversationRecord) -> None:
        self.counts["conversations"] += 1
        self.counts["messages"] += len(record.messages)
        self.storage += storage_bytes(record)
        if self.storage > self.limit:
            raise OverQuota("the backup holds more than your storage quota")
        try:
            self.index.add(record.id, [m.id for m in record.messages], self.moved)
        except DuplicateId as exc:
            raise BackupInvalid("an id appears twice") from exc

    def finish(self) -> int:
        if self.manifest is None:
            raise BackupInvalid("no manifest: the file is truncated")
        if self.manifest.sha256 != self.content.hexdigest():
            raise BackupInvalid("content checksum mismatch")
        if self.manifest.counts != self.counts:
            raise BackupInvalid("counts do not match the manifest")
        if self.index.has_collision():
            raise BackupInvalid("ids collide with the ids they would be moved to")
        return self.storage


def records(path: Path) -> Iterator[tuple[Profile | Preferences | ConversationRecord, int]]:
    """The records of a verified file, one at a time, with their size in bytes."""
    for line in _lines(path):
        record = _parse(line)
        if isinstance(record, Profile | Preferences | ConversationRecord):
            yield record, len(line)
