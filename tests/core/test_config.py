"""Settings: every SPEC key, list parsing, production refusals."""

import pytest
from pydantic import ValidationError

from vektor.core.config import Settings


def build(**values):
    return Settings(_env_file=None, **values)


def test_defaults_are_the_embedded_setup():
    settings = build()
    assert settings.database_url == "sqlite+aiosqlite:///./vektor.db"
    assert settings.access_token_expire_minutes == 60
    assert settings.refresh_token_expire_days == 30
    assert settings.backend_cors_origins == []
    assert settings.log_level == "INFO"
    assert settings.log_format == "structured"
    assert settings.redis_url is None
    assert settings.metrics_token is None
    assert settings.rate_limit_auth == "10/minute"
    assert settings.rate_limit_chat == "60/minute"
    assert settings.max_concurrent_streams == 4
    assert settings.max_body_bytes == 4194304
    assert settings.trusted_proxies == []
    assert settings.cancel_on_disconnect is False
    # Development without a key: a random per-run key, never empty.
    assert settings.secret_key_is_ephemeral
    assert len(settings.secret_key) >= 32


def test_environment_and_dotenv(monkeypatch, tmp_path):
    env = tmp_path / ".env"
    env.write_text("ACCESS_TOKEN_EXPIRE_MINUTES=15\nLOG_FORMAT=simple\nSECRET_KEY=" + "k" * 40)
    monkeypatch.setenv("REFRESH_TOKEN_EXPIRE_DAYS", "7")
    monkeypatch.setenv("BACKEND_CORS_ORIGINS", '["https://a.example", "https://b.example"]')
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.1, 10.0.1.0/24")
    settings = Settings(_env_file=env)
    assert settings.access_token_expire_minutes == 15
    assert settings.log_format == "simple"
    assert settings.refresh_token_expire_days == 7
    assert settings.backend_cors_origins == ["https://a.example", "https://b.example"]
    assert settings.trusted_proxies == ["10.0.0.1", "10.0.1.0/24"]
    assert not settings.secret_key_is_ephemeral


def test_comma_list_for_cors():
    assert build(
        backend_cors_origins="https://a.example,https://b.example"
    ).backend_cors_origins == [
        "https://a.example",
        "https://b.example",
    ]


@pytest.mark.parametrize(
    "values",
    [
        {"rate_limit_auth": "ten per minute"},
        {"log_format": "xml"},
        {"access_token_expire_minutes": 0},
        {"trusted_proxies": "not-an-address"},
    ],
)
def test_bad_values_are_refused(values):
    with pytest.raises(ValidationError):
        build(**values)


STRONG = "Zx8" + "q" * 10 + "Kp2-w7VbN4mT_a9LcR5s"


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({}, "missing"),
        ({"secret_key": "changethis"}, "default"),
        ({"secret_key": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}, "weak"),
        ({"secret_key": "Sh0rt-but-varied-k3y"}, "shorter"),
        (
            {"secret_key": STRONG, "backend_cors_origins": ["*"], "cors_allow_credentials": True},
            "credentials",
        ),
    ],
)
def test_production_refuses_unsafe_settings(values, reason):
    with pytest.raises(ValidationError, match=reason):
        build(environment="production", **values)


def test_production_accepts_a_strong_key():
    settings = build(environment="production", secret_key=STRONG)
    assert settings.secret_key == STRONG


def test_wildcard_origin_never_gets_credentials_in_development():
    settings = build(backend_cors_origins=["*"], cors_allow_credentials=True)
    assert settings.cors_credentials_enabled is False
