"""Throw-away test databases: a SQLite file, or a fresh PostgreSQL database per run."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

PG_ADMIN_DSN = os.environ.get("VEKTOR_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def backends() -> list[str]:
    """Backends to run on: VEKTOR_TEST_DATABASES, default both."""
    raw = os.environ.get("VEKTOR_TEST_DATABASES", "sqlite,postgresql")
    return [name.strip() for name in raw.split(",") if name.strip()]


@asynccontextmanager
async def temporary_database(backend: str, tmp_dir: Path) -> AsyncIterator[str]:
    """Yield the SQLAlchemy URL of an empty database, dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_dir / f'vektor-{uuid.uuid4().hex[:8]}.db'}"
        return
    if backend != "postgresql":
        raise ValueError(f"unknown test backend {backend!r}")
    name = f"vektor_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    host_part = PG_ADMIN_DSN.split("://", 1)[1].rsplit("/", 1)[0]
    try:
        yield f"postgresql+asyncpg://{host_part}/{name}"
    finally:
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
