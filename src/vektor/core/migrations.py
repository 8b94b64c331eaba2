"""Run Alembic from code (CLI, startup, tests) with the project's migration scripts."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def _script_location() -> Path:
    """Migrations shipped in the wheel, else the source tree's."""
    bundled = _PACKAGE_DIR / "_migrations"
    if bundled.is_dir():
        return bundled
    return _PACKAGE_DIR.parent.parent / "migrations"


# Full-text search objects made by raw DDL in the migrations, unknown to the models.
SEARCH_OBJECT_PREFIXES = (
    "message_fts",
    "conversation_fts",
    "ix_message_search",
    "ix_conversation_search",
)


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Leave the search objects out of autogenerate comparisons."""
    return not (name or "").startswith(SEARCH_OBJECT_PREFIXES)


def alembic_config(database_url: str) -> Config:
    """An Alembic config bound to one database, leaving the app's logging alone."""
    config = Config()
    config.set_main_option("script_location", str(_script_location()))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema up to `revision` (blocking)."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    """Take the schema down to `revision` (blocking)."""
    command.downgrade(alembic_config(database_url), revision)
