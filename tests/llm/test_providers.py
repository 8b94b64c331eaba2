"""The provider registry: names in model_configs.json, validation, context windows."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from vektor.llm.balancer import DEFAULT_CONTEXT_WINDOW, ModelBalancer
from vektor.llm.config import DeploymentConfig
from vektor.llm.deployments import load_deployments
from vektor.llm.http import new_session
from vektor.llm.providers import provider_class, provider_names, register
from vektor.llm.providers.local import DEFAULT_CONTEXT, LocalProvider
from vektor.llm.providers.openai import OpenAIProvider


def test_built_in_providers_are_registered():
    assert provider_names() == [
        "anthropic",
        "azure",
        "bedrock",
        "gemini",
        "local",
        "ollama",
        "openai",
    ]
    assert provider_class("openai") is OpenAIProvider
    assert provider_class("local") is LocalProvider


def test_a_name_is_registered_once():
    class Impostor(OpenAIProvider):
        pass

    with pytest.raises(ValueError, match="registered twice"):
        register("openai")(Impostor)
    assert provider_class("openai") is OpenAIProvider


def test_an_unknown_provider_fails_the_file_and_names_the_known_ones(tmp_path):
    entry = {"name": "m", "provider": "bogus", "model": "x"}
    (tmp_path / "model_configs.json").write_text(json.dumps([entry]))
    with pytest.raises(ValidationError) as failure:
        load_deployments(tmp_path)
    known = "registered: anthropic, azure, bedrock, gemini, local, ollama, openai"
    assert f"unknown provider 'bogus' ({known})" in str(failure.value)


def test_without_a_file_the_built_in_model(tmp_path):
    [default] = load_deployments(tmp_path)
    assert default.provider == "local"


async def test_context_window_from_the_entry_else_the_provider():
    def entry(name: str, provider: str, **extra: object) -> DeploymentConfig:
        return DeploymentConfig(name=name, provider=provider, model="x", **extra)

    configs = [
        entry("local", "local"),
        entry("remote", "openai"),
        entry("sized", "anthropic", context_window=8_000),
        entry("mixed", "openai", context_window=100_000),
        entry("mixed", "local"),
    ]
    async with new_session() as session:
        balancer = ModelBalancer(configs, session)
        assert balancer.context_window("local") == DEFAULT_CONTEXT
        assert balancer.context_window("remote") == DEFAULT_CONTEXT_WINDOW
        assert balancer.context_window("sized") == 8_000
        assert balancer.context_window("mixed") == DEFAULT_CONTEXT  # the smallest
        await balancer.aclose()
