"""Schemathesis against the app's own OpenAPI schema, every phase including the stateful
one, as a signed-in admin, with a scripted model behind /chat/stream and /v1: no 5xx, every
status and body documented, auth never ignored, nothing usable after deletion."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import scripted
from tests.support.processes import serve_vektor, stop, vektor_env, wait_healthy
from tests.support.upstream import free_port

CHECKS = ",".join(
    [
        "not_a_server_error",
        "response_schema_conformance",
        "status_code_conformance",
        "ignored_auth",
        "use_after_free",
    ]
)
PASSWORD = "long enough password"


@pytest.mark.timeout(900)
def test_schemathesis_finds_nothing(tmp_path, upstream):
    import httpx

    (tmp_path / "config").mkdir()
    models = [scripted(upstream, "chunks=2;text=ok", name="scripted")]
    (tmp_path / "config" / "model_configs.json").write_text(json.dumps(models))
    port = free_port()
    env = vektor_env(
        tmp_path,
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'fuzz.db'}",
        BACKUP_DIR=str(tmp_path / "backups"),
        RATE_LIMIT_AUTH="1000000/minute",
        RATE_LIMIT_CHAT="1000000/minute",
        MAX_CONCURRENT_STREAMS="50",
    )
    vektor = [sys.executable, "-m", "vektor"]
    server = serve_vektor(port, env, tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(f"{base}/health/ready", server, deadline_s=60)
        subprocess.run(
            [
                *vektor,
                "create-user",
                "--email",
                "fuzz@example.com",
                "--username",
                "fuzzer",
                "--password",
                PASSWORD,
                "--admin",
            ],
            env=env,
            cwd=tmp_path,
            check=True,
            capture_output=True,
            timeout=60,
        )
        login = httpx.post(f"{base}/auth/login", data={"username": "fuzzer", "password": PASSWORD})
        token = login.json()["access_token"]
        run = subprocess.run(
            [
                str(os.path.join(os.path.dirname(sys.executable), "st")),
                "run",
                f"{base}/openapi.json",
                "--header",
                f"Authorization: Bearer {token}",
                "--checks",
                CHECKS,
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--max-examples",
                "10",
                "--seed",
                "20261123",
                "--no-color",
                # Deleting the account would sign the fuzzer out for the rest of the run;
                # tests/users covers it.
                "--exclude-path",
                "/users/me",
                "--exclude-method",
                "DELETE",
                "--report-dir",
                str(tmp_path / "report"),
            ],
            env={**env, "SCHEMATHESIS_HOOKS": ""},
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    finally:
        stop(server)
