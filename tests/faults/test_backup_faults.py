"""A backup folder that fills up or cannot be written: the job ends `failed` with no partial
file, nothing else is affected, and the next backup works once there is room."""

import asyncio
import os
import secrets
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import scripted


@pytest.fixture
def small_disk():
    """A 64 KiB tmpfs of the test's own (needs root to mount; skipped otherwise)."""
    folder = Path(tempfile.mkdtemp(prefix="vektor-full-"))
    mounted = os.geteuid() == 0 and (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True
        ).returncode
        == 0
    )
    if not mounted:
        folder.rmdir()
        pytest.skip("mounting a small tmpfs needs root")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)
    folder.rmdir()


async def _backup_status(chat):
    started = await chat.client.post("/sync/backup", headers=chat.headers)
    assert started.status_code == 202
    task = started.json()["task_id"]
    for _ in range(500):
        status = (await chat.client.get(f"/sync/backup/{task}", headers=chat.headers)).json()
        if status["status"] != "in_progress":
            return status
        await asyncio.sleep(0.02)
    raise AssertionError("the backup never ended")


async def test_disk_full_backup_fails_cleanly(chat_harness, upstream, small_disk):
    chat = await chat_harness(
        [scripted(upstream, "chunks=2;text=ok")], backup_dir=small_disk, max_message_chars=100_000
    )
    for _ in range(3):  # about 200 KB of text that does not compress: more than the disk
        noise = secrets.token_hex(30_000)
        status, _, _ = await chat.stream(
            {"model": "scripted", "messages": [{"role": "user", "content": noise}]}
        )
        assert status == 200
    failed = await _backup_status(chat)
    assert failed["status"] == "failed"
    assert not [p for p in small_disk.rglob("*") if p.is_file()]  # no partial file left
    # Nothing else is affected.
    history = await chat.client.get("/chat/history", headers=chat.headers)
    assert history.status_code == 200
    assert len(history.json()) == 3
    listing = (await chat.client.get("/sync/backups", headers=chat.headers)).json()
    assert listing[0]["status"] == "failed"


async def test_unwritable_backup_folder_fails_cleanly(chat_harness, upstream, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the backup folder should be")
    chat = await chat_harness([scripted(upstream, "chunks=2;text=ok")], backup_dir=blocker)
    status, _, _ = await chat.stream(
        {"model": "scripted", "messages": [{"role": "user", "content": "hola"}]}
    )
    assert status == 200
    failed = await _backup_status(chat)
    assert failed["status"] == "failed"
    assert blocker.read_text().startswith("a file")
    assert (await chat.client.get("/users/me", headers=chat.headers)).status_code == 200
