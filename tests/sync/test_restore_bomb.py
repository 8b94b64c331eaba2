"""Restore bombs against a served process: its peak resident memory stays within +300 MB.

Small uploads that expand a thousandfold, records at the size limit, an incompressible
upload: the server's peak (VmHWM, reset after a warm-up restore) is read from /proc.
Memory does not depend on the quota (ids go to disk, records are read a batch at a time),
so a quota of 128 MiB stands for the default 1 GiB at a tenth of the test's time.
"""

import gzip
import hashlib
import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.support.processes import serve_vektor, stop, vektor_env, wait_healthy
from tests.support.upstream import free_port

PASSWORD = "long enough password"
QUOTA = 128 * 1024 * 1024
PER_LINE = 120_000  # tiny messages in one conversation record: about 13.5 MB of JSON
MAX_EXTRA_KIB = 300 * 1024


def _memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _bomb(lines: int, per_line: int = PER_LINE) -> bytes:
    """A consistent backup of `lines` conversations of `per_line` one-letter messages, with
    sequential ids so that it compresses about a hundredfold."""
    now = datetime.now(UTC).isoformat()
    base = uuid.uuid4().int & ~((1 << 64) - 1)
    content, counts = hashlib.sha256(), {"conversations": lines, "messages": lines * per_line}
    header = {"kind": "header", "format": "vektor-backup", "version": 1, "app_version": "x"}
    body = [json.dumps({**header, "created_at": now}).encode() + b"\n"]
    for n in range(lines):
        first = base + n * (per_line + 1)
        messages = ",".join(
            f'{{"id":"{uuid.UUID(int=first + i + 1)}","role":"user","content":"x",'
            f'"created_at":"{now}"}}'
            for i in range(per_line)
        )
        body.append(
            f'{{"kind":"conversation","id":"{uuid.UUID(int=first)}","title":"Bomb",'
            f'"model":"scripted","created_at":"{now}","updated_at":"{now}",'
            f'"messages":[{messages}]}}\n'.encode()
        )
    for line in body:
        content.update(line)
    manifest = {"kind": "manifest", "counts": counts, "sha256": content.hexdigest()}
    body.append(json.dumps(manifest).encode() + b"\n")
    return gzip.compress(b"".join(body), compresslevel=6)


@pytest.fixture
def served(database_url, tmp_path):
    port = free_port()
    env = vektor_env(tmp_path, DATABASE_URL=database_url, MAX_USER_STORAGE_BYTES=str(QUOTA))
    process = serve_vektor(port, env, tmp_path)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health/ready", process, deadline_s=60)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
            account = {"email": "bomb@example.com", "username": "bomb", "password": PASSWORD}
            assert client.post("/auth/register", json=account).status_code == 201
            login = client.post("/auth/login", data={"username": "bomb", "password": PASSWORD})
            client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
            yield client, process.pid
    finally:
        stop(process)


def _upload(client: httpx.Client, data: bytes, mode: str = "merge") -> httpx.Response:
    files = {"file": ("backup.vkb.gz", data, "application/gzip")}
    return client.post("/sync/restore", files=files, data={"mode": mode})


def test_restore_bombs_keep_the_server_within_300_mb(served):
    client, pid = served
    assert _upload(client, _bomb(1, 100)).status_code == 200  # warm: every path loaded once
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM starts over from here
    baseline = _memory_kib(pid, "VmRSS")

    over = _bomb(12)  # 1.44 M messages, 162 MB of JSON in a 4 MB file: past the quota
    assert len(over) < 8 * 1024 * 1024
    refused = _upload(client, over)
    assert refused.status_code == 422
    assert "storage quota" in refused.json()["detail"]

    one_line = 200 * 1024 * 1024  # a single 200 MB "record" of spaces: 200 kB gzipped
    assert _upload(client, gzip.compress(b" " * one_line)).status_code == 422
    assert _upload(client, os.urandom(32 * 1024 * 1024)).status_code == 422  # not gzip

    applied = _upload(client, _bomb(1), mode="replace")  # within the quota: written
    assert applied.status_code == 200, applied.text
    history = client.get("/chat/history").json()
    assert [c["message_count"] for c in history] == [PER_LINE]

    extra = _memory_kib(pid, "VmHWM") - baseline
    print(f"restore bombs: peak +{extra / 1024:.0f} MiB over {baseline / 1024:.0f} MiB")
    assert extra <= MAX_EXTRA_KIB, f"peak +{extra / 1024:.0f} MiB"
