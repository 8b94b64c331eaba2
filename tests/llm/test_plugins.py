"""Providers from other packages: the entry-point group `vektor.providers`.

The package in tests/support/plugin_provider is built and installed (pip, into a folder
put on PYTHONPATH) and a served Vektor answers through it; the registry's refusals of
wrong plug-ins are checked on it too."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import parse_sse
from tests.support.processes import serve_vektor, stop, vektor_env, wait_healthy
from tests.support.upstream import free_port
from vektor.llm import providers

PLUGIN = Path(__file__).resolve().parent.parent / "support" / "plugin_provider"
ECHO = {"name": "echo", "provider": "echo", "model": "echo-1", "greeting": "Eco:"}


def install_plugin(folder: Path) -> Path:
    """Build and install the plug-in (from a copy: a build writes into its tree) into
    `folder`/site, offline, with the pip and setuptools of Vektor's environment (in
    uv.lock; today through `llm`)."""
    source = shutil.copytree(PLUGIN, folder / "plugin-source")
    site = folder / "site"
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
    command += ["--no-build-isolation", "--target", str(site), str(source)]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    assert next(site.glob("vektor_echo_provider-0.1.0.dist-info/entry_points.txt"))
    return site


def chat(base: str, headers: dict[str, str], model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hola otra vez"}]}
    return httpx.post(f"{base}/v1/chat/completions", json=body, headers=headers, timeout=30)


def test_a_served_vektor_answers_through_an_installed_plugin(tmp_path, database_url):
    site = install_plugin(tmp_path)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "model_configs.json").write_text(json.dumps([ECHO]))
    env = vektor_env(tmp_path, DATABASE_URL=database_url, PYTHONPATH=str(site))
    port = free_port()
    process = serve_vektor(port, env, tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(f"{base}/health", process)
        user = {"email": "plug@example.com", "username": "plugger", "password": "long enough pw"}
        assert httpx.post(f"{base}/auth/register", json=user).status_code == 201
        login = {"username": "plugger", "password": "long enough pw"}
        token = httpx.post(f"{base}/auth/login", data=login).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        answer = chat(base, headers, "echo")
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"] == "Eco: hola otra vez"
        assert answer.json()["usage"] == {
            "prompt_tokens": 3,
            "completion_tokens": 4,
            "total_tokens": 7,
        }
        ask = {"model": "echo", "messages": [{"role": "user", "content": "uno"}]}
        streamed = httpx.post(f"{base}/chat/stream", json=ask, headers=headers, timeout=30)
        assert streamed.status_code == 200
        events = parse_sse(streamed.text)
        assert "".join(e["content"] for e in events if e["type"] == "delta") == "Eco: uno"
        assert events[-1]["finish_reason"] == "stop"
    finally:
        stop(process)
    # A wrong plug-in is refused by name when an entry uses it; the built-ins stay.
    broken = {"name": "b", "provider": "broken", "model": "x"}
    (tmp_path / "config" / "model_configs.json").write_text(json.dumps([broken]))
    command = [sys.executable, "-m", "vektor", "serve", "--host", "127.0.0.1", "--port", "9"]
    result = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert "provider plug-in 'broken' could not be loaded (AttributeError" in result.stderr


def test_wrong_plugins_are_refused_by_name(monkeypatch):
    monkeypatch.setattr(providers, "_broken", {})
    assert "openai" in providers.provider_names()  # the built-ins are loaded first
    providers._load_plugin("openai", lambda: object)  # a built-in's name
    providers._load_plugin("half", lambda: type("Half", (), {"build": classmethod(print)}))
    assert providers.provider_class("openai").__name__ == "OpenAIProvider"
    assert providers._broken["openai"] == "a built-in provider has that name"
    with pytest.raises(ValueError, match=r"'half' could not be loaded .*missing default_context"):
        providers.provider_class("half")
    assert "half" not in providers.provider_names()
