"""Migrations: upgrade to head, no drift from the models, downgrade to base, on both databases."""

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.databases import backends, temporary_database
from vektor.core.migrations import downgrade, include_object, upgrade
from vektor.models import Base


def _diff(connection):
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "include_object": include_object}
    )
    return compare_metadata(context, Base.metadata)


def _tables(connection):
    return set(inspect(connection).get_table_names())


@pytest.mark.parametrize("backend", backends())
async def test_upgrade_head_matches_models_and_downgrades_to_base(backend, tmp_path):
    async with temporary_database(backend, tmp_path) as url:
        await asyncio.to_thread(upgrade, url)
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                assert await connection.run_sync(_diff) == []
                tables = await connection.run_sync(_tables)
            assert {t.name for t in Base.metadata.sorted_tables} <= tables
            await asyncio.to_thread(downgrade, url)
            async with engine.connect() as connection:
                assert await connection.run_sync(_tables) <= {"alembic_version"}
            # And back up again: migrations are repeatable.
            await asyncio.to_thread(upgrade, url)
            async with engine.connect() as connection:
                assert await connection.run_sync(_diff) == []
        finally:
            await engine.dispose()
