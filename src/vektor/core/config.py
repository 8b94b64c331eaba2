"""Environment settings (SPEC §1), read from the environment and `.env`."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from limits import parse as parse_limit
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./vektor.db"
MIN_SECRET_KEY_LENGTH = 32
# Values that must never sign tokens in production, whatever their length.
KNOWN_WEAK_SECRETS = frozenset(
    {
        "",
        "secret",
        "changeme",
        "change-me",
        "changethis",
        "your-secret-key",
        "your_secret_key_here",
        "please-change-this-secret-key-in-production",
    }
)
EPHEMERAL_KEY_ENV = "VEKTOR_EPHEMERAL_SECRET_KEY"


# The largest WebSocket message /chat/ws accepts (§3.8); the server is told too (uvicorn
# `ws_max_size`), and the app checks it whatever serves it.
WS_MAX_FRAME_BYTES = 1024 * 1024


class SettingsError(ValueError):
    """The settings cannot be used as they are."""


class Settings(BaseSettings):
    """Every setting of the service; see the README's configuration table."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
    )

    environment: Literal["development", "production"] = Field(
        default="development", validation_alias="VEKTOR_ENV"
    )
    database_url: str = DEFAULT_DATABASE_URL
    secret_key: str = ""
    access_token_expire_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)
    refresh_token_expire_days: int = Field(default=30, ge=1, le=365)
    backend_cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cors_allow_credentials: bool = False
    log_level: str = "INFO"
    log_format: Literal["structured", "simple"] = "structured"
    log_dir: Path = Path("./logs")
    log_rotation: str = "10 MB"
    log_retention: int = Field(default=10, ge=1)
    redis_url: str | None = None
    redis_namespace: str = Field(default="vektor", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    vektor_config_dir: Path = Path("./config")
    metrics_token: str | None = None
    db_pool_size: int = Field(default=20, ge=1, le=500)  # PostgreSQL connections kept per process
    db_max_overflow: int = Field(default=20, ge=0, le=500)
    # On SIGTERM: answers in progress get this long to finish, then are stopped and stored.
    shutdown_grace_seconds: float = Field(default=20, ge=0, le=600)
    # Hosts (names or addresses) and networks (CIDR) that adapter URLs may point at even
    # though they are private, loopback or link-local; everything else such is refused.
    adapter_url_allowlist: Annotated[list[str], NoDecode] = Field(default_factory=list)
    rate_limit_auth: str = "10/minute"
    rate_limit_chat: str = "60/minute"
    # /mcp (SPEC §3.12): served when on; tool calls through it per user (`limits` notation).
    mcp_gateway: bool = True
    rate_limit_mcp: str = "600/minute"
    max_concurrent_streams: int = Field(default=4, ge=1)
    # Each user's quotas (SPEC §3.9); unset or empty = unlimited. The budget is USD.
    default_tokens_per_day: int | None = Field(default=None, ge=0)
    default_requests_per_day: int | None = Field(default=None, ge=0)
    default_budget_per_month: Decimal | None = Field(default=None, ge=0)
    # The response cache (SPEC §3.11), for the models whose entry sets `cache_ttl_s`. In
    # memory its LRU holds at most this many answers and bytes; with REDIS_URL, Redis holds it.
    response_cache: bool = False
    response_cache_max_entries: int = Field(default=10_000, ge=1)
    response_cache_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cancel_on_disconnect: bool = False
    max_message_chars: int = Field(default=32_000, ge=1)
    max_messages_per_request: int = Field(default=100, ge=1)
    max_answer_tokens: int = Field(default=2048, ge=1)
    sse_ping_seconds: float = Field(default=15.0, gt=0, le=15.0)
    stream_retention_seconds: float = Field(default=600.0, ge=1)
    # /chat/ws: the auth frame's deadline; what one socket may have queued for a client
    # (1008 past it, see socket_outbox.py); how often revoked sessions are looked for.
    ws_auth_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    ws_send_buffer_bytes: int = Field(default=1024 * 1024, ge=4096)
    # How long a socket's full send buffer may wait for the client to take a frame.
    ws_slow_reader_seconds: float = Field(default=10.0, gt=0, le=300)
    ws_revocation_check_seconds: float = Field(default=0.5, gt=0, le=1.0)
    llm_cooldown_seconds: float = Field(default=5.0, gt=0)
    max_tool_rounds: int = Field(default=5, ge=0, le=50)
    tool_call_timeout_seconds: float = Field(default=60.0, gt=0)
    backup_dir: Path = Path("./backups")
    # Completed backups kept per user; the oldest (file and row) goes when one more is made.
    max_backups_per_user: int = Field(default=5, ge=1, le=1000)
    # Backups that read, and restores that write, at once per process, each on a connection
    # of their own outside DB_POOL_SIZE (PostgreSQL; SQLite reads one at a time); the rest
    # wait their turn.
    backup_workers: int = Field(default=2, ge=1, le=32)
    max_upload_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    # What one user's conversations and messages may take once a restore is applied (UTF-8
    # bytes of titles and contents, plus 200 per row); a restore past it is refused (422).
    max_user_storage_bytes: int = Field(default=1024 * 1024 * 1024, ge=1024)
    bcrypt_rounds: int = Field(default=12, ge=4, le=16)
    auto_migrate: bool = True
    jwt_issuer: str = "vektor"
    jwt_audience: str = "vektor-api"
    # FastAPI's built-in OpenTelemetry (tracing, metrics, logs through the global providers).
    # Off by default: even unconfigured it costs a provider lookup per request.
    otel_enabled: bool = False
    # After start, freeze what was built so far and collect young objects less often: the
    # cyclic collector otherwise rescans every module and class many times a second.
    gc_freeze: bool = True
    # Live sessions and API keys remembered per process (core/credential_cache.py): `off`
    # asks the database on every request. With REDIS_URL each cached answer is checked
    # against a revocation counter in Redis, per user (`user`) or one for all (`global`).
    session_cache: bool = True
    session_cache_entries: int = Field(default=100_000, ge=1)
    session_cache_epoch: Literal["user", "global"] = "user"
    secret_key_is_ephemeral: bool = Field(default=False, exclude=True)

    @field_validator(
        "backend_cors_origins", "trusted_proxies", "adapter_url_allowlist", mode="before"
    )
    @classmethod
    def _parse_list(cls, value: Any) -> Any:
        """Accept a JSON list or a comma-separated list."""
        if isinstance(value, str):
            text = value.strip()
            if not text:
                return []
            if text.startswith("["):
                return json.loads(text)
            return [item.strip() for item in text.split(",") if item.strip()]
        return value

    @field_validator(
        "default_tokens_per_day",
        "default_requests_per_day",
        "default_budget_per_month",
        mode="before",
    )
    @classmethod
    def _empty_is_unlimited(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        """Each entry is an address or a network."""
        for entry in value:
            ipaddress.ip_network(entry, strict=False)
        return value

    @field_validator("rate_limit_auth", "rate_limit_chat", "rate_limit_mcp")
    @classmethod
    def _check_limit(cls, value: str) -> str:
        """Refuse a rate limit that `limits` cannot parse."""
        parse_limit(value)
        return value

    @field_validator("log_level")
    @classmethod
    def _upper_level(cls, value: str) -> str:
        """Log levels are compared upper-case."""
        return value.upper()

    @model_validator(mode="after")
    def _check_production(self) -> Settings:
        """Refuse unsafe values in production; fill a development key."""
        if self.environment == "production":
            problems = production_problems(self)
            if problems:
                raise SettingsError("refusing to start in production: " + "; ".join(problems))
        elif not self.secret_key:
            # Development without a key: one per run, shared with worker processes
            # through the environment; tokens do not survive a restart.
            self.secret_key = os.environ.get(EPHEMERAL_KEY_ENV) or generate_secret_key()
            self.secret_key_is_ephemeral = True
        return self

    @property
    def is_sqlite(self) -> bool:
        """Whether the database is SQLite."""
        return self.database_url.startswith("sqlite")

    @property
    def cors_credentials_enabled(self) -> bool:
        """Credentials are never combined with a wildcard origin."""
        return self.cors_allow_credentials and "*" not in self.backend_cors_origins


def production_problems(settings: Settings) -> list[str]:
    """List the reasons these settings are unsafe for production."""
    problems = []
    key = settings.secret_key
    if not key:
        problems.append("SECRET_KEY is missing (run `vektor init-config`)")
    elif key.lower() in KNOWN_WEAK_SECRETS or len(set(key)) < 8:
        problems.append("SECRET_KEY is a known default or trivially weak")
    elif len(key) < MIN_SECRET_KEY_LENGTH:
        problems.append(f"SECRET_KEY is shorter than {MIN_SECRET_KEY_LENGTH} characters")
    if "*" in settings.backend_cors_origins and settings.cors_allow_credentials:
        problems.append("BACKEND_CORS_ORIGINS '*' cannot be combined with credentials")
    return problems


def generate_secret_key() -> str:
    """A fresh random signing key."""
    return secrets.token_urlsafe(48)


@lru_cache
def get_settings() -> Settings:
    """Settings of this process, read once."""
    return Settings()
