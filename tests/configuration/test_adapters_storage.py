"""POST /config/adapters when the config folder cannot be written: a 503, nothing changed."""

import json
import os

import pytest

from tests.monitoring.test_system import make_admin

HOOK = {"kind": "webhook", "url": "http://93.184.216.34/hook"}


async def _save(client, admin, name, settings=HOOK):
    return await client.post(
        "/config/adapters", json={"name": name, "settings": settings}, headers=admin
    )


async def test_rename_refused_is_a_503_and_nothing_changes(app, client, settings):
    """The rename of the atomic write fails (a folder sits where the file goes), root or not."""
    admin = await make_admin(app, client)
    assert (await _save(client, admin, "kept")).status_code == 201
    folder = settings.vektor_config_dir / "adapters"
    (folder / "blocked.json").mkdir()
    before = sorted(p.name for p in folder.iterdir())
    listed = (await client.get("/config/adapters", headers=admin)).json()
    response = await _save(client, admin, "blocked")
    assert response.status_code == 503
    assert "cannot be written" in response.json()["detail"]
    assert sorted(p.name for p in folder.iterdir()) == before  # no temporary file left
    assert (await client.get("/config/adapters", headers=admin)).json() == listed
    assert json.loads((folder / "kept.json").read_text()) == HOOK


async def test_folder_that_cannot_be_created_is_a_503(app, client, settings):
    """`adapters` is a file, so the folder cannot be made: the error of a broken mount."""
    admin = await make_admin(app, client)
    settings.vektor_config_dir.mkdir(parents=True, exist_ok=True)
    (settings.vektor_config_dir / "adapters").write_text("not a folder")
    response = await _save(client, admin, "alerts")
    assert response.status_code == 503
    assert "cannot be written" in response.json()["detail"]  # not "Database unavailable"
    assert (settings.vektor_config_dir / "adapters").read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file modes")
async def test_read_only_folder_is_a_503(app, client, settings):
    """A folder without write permission, as a `:ro` mount is for a non-root server."""
    admin = await make_admin(app, client)
    assert (await _save(client, admin, "kept")).status_code == 201
    folder = settings.vektor_config_dir / "adapters"
    folder.chmod(0o555)
    try:
        response = await _save(client, admin, "kept", {**HOOK, "events": ["x"]})
    finally:
        folder.chmod(0o755)
    assert response.status_code == 503
    assert "cannot be written" in response.json()["detail"]
    assert json.loads((folder / "kept.json").read_text()) == HOOK
