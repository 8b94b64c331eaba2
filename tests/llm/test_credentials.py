"""An entry whose credential variable is not set is refused when the configuration loads —
from the file, at startup and on /config/reload — naming the entry and the field."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from tests.conftest import scripted
from tests.llm.test_bedrock import bedrock
from tests.monitoring.test_system import make_admin
from tests.support.processes import vektor_env
from vektor.llm.deployments import load_deployments

OPENAI = {"name": "gpt", "provider": "openai", "model": "m", "api_key_env": "TEST_UNSET_KEY"}
BEDROCK = {"name": "rock", "provider": "bedrock", "model": "m", "region": "us-east-1"}


def load(folder, *entries):
    (folder / "model_configs.json").write_text(json.dumps(list(entries)))
    return load_deployments(folder)


def test_a_named_variable_must_be_set(tmp_path, monkeypatch):
    monkeypatch.delenv("TEST_UNSET_KEY", raising=False)
    with pytest.raises(ValidationError) as failure:
        load(tmp_path, OPENAI)
    assert (
        "model entry 'gpt' (provider 'openai'): the variable 'TEST_UNSET_KEY' named by "
        "'api_key_env' is not set" in str(failure.value)
    )
    monkeypatch.setenv("TEST_UNSET_KEY", "")  # empty is no key either
    with pytest.raises(ValidationError, match="'TEST_UNSET_KEY' named by 'api_key_env'"):
        load(tmp_path, OPENAI)
    monkeypatch.setenv("TEST_UNSET_KEY", "sk-1")
    [entry] = load(tmp_path, OPENAI)
    assert entry.resolve_api_key() == "sk-1"


def test_a_plug_in_field_naming_a_variable_is_checked_too(tmp_path, monkeypatch):
    monkeypatch.delenv("TEST_UNSET_TOKEN", raising=False)
    entry = {"name": "x", "provider": "openai", "model": "m", "token_env": "TEST_UNSET_TOKEN"}
    with pytest.raises(ValidationError, match="'TEST_UNSET_TOKEN' named by 'token_env'"):
        load(tmp_path, entry)


def test_bedrock_needs_its_variables_or_the_standard_ones(tmp_path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValidationError) as failure:
        load(tmp_path, BEDROCK)
    assert (
        "model entry 'rock' (provider 'bedrock') needs credentials: the variable "
        "'AWS_ACCESS_KEY_ID' is not set (or name another in 'aws_access_key_id_env')"
    ) in str(failure.value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKID")
    with pytest.raises(ValidationError, match="'aws_secret_access_key_env'"):
        load(tmp_path, BEDROCK)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    assert load(tmp_path, BEDROCK)[0].region == "us-east-1"
    named = {**BEDROCK, "aws_session_token_env": "TEST_UNSET_TOKEN"}
    with pytest.raises(
        ValidationError, match="'TEST_UNSET_TOKEN' named by 'aws_session_token_env'"
    ):
        load(tmp_path, named)
    with pytest.raises(ValidationError, match="needs the field 'region'"):
        load(tmp_path, {k: v for k, v in BEDROCK.items() if k != "region"})


@pytest.mark.parametrize("bad", ["A B", "X;rm", "", "9LIVES"])
def test_a_variable_name_must_be_one(tmp_path, bad):
    with pytest.raises(ValidationError, match="api_key_env"):
        load(tmp_path, {**OPENAI, "api_key_env": bad})


async def test_a_reload_naming_an_unset_variable_is_refused(chat_harness, native, monkeypatch):
    chat = await chat_harness([bedrock(native[0], "chunks=1")])
    admin = await make_admin(chat.app, chat.client, "boss")
    config_dir = chat.app.state.vektor.settings.vektor_config_dir
    entry = bedrock(native[0], "chunks=1", name="rock-new", aws_secret_access_key_env="TEST_GONE")
    monkeypatch.delenv("TEST_GONE", raising=False)
    (config_dir / "model_configs.json").write_text(json.dumps([entry]))
    refused = await chat.client.post("/config/reload", headers=admin)
    assert refused.status_code == 422
    assert (
        "model entry 'rock-new' (provider 'bedrock'): the variable 'TEST_GONE' named by "
        "'aws_secret_access_key_env' is not set"
    ) in refused.json()["detail"]
    models = (await chat.client.get("/chat/models", headers=admin)).json()
    assert [m["name"] for m in models] == ["rock"]
    status, events, _ = await chat.stream(
        {"model": "rock", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert status == 200  # the old configuration still answers
    assert "".join(e["content"] for e in events if e["type"] == "delta") == "Hola"


def test_startup_refuses_an_unset_variable(tmp_path, database_url, upstream):
    (tmp_path / "config").mkdir()
    entry = scripted(upstream, name="gpt", api_key_env="TEST_UNSET_AT_START")
    (tmp_path / "config" / "model_configs.json").write_text(json.dumps([entry]))
    env = vektor_env(tmp_path, DATABASE_URL=database_url)
    env.pop("TEST_UNSET_AT_START", None)
    command = [sys.executable, "-m", "vektor", "serve", "--host", "127.0.0.1", "--port", "9"]
    result = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "model entry 'gpt' (provider 'openai'): the variable 'TEST_UNSET_AT_START'" in output
