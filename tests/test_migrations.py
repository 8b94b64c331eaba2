"""Migrations: upgrade to head, no drift from the models, downgrade to base, on both databases."""

import asyncio
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, inspect
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from tests.support.databases import backends, temporary_database
from vektor.core.migrations import downgrade, include_object, upgrade
from vektor.models import Base
from vektor.sync.repository import BackupRepository


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


@pytest.mark.parametrize("backend", backends())
async def test_the_sweep_of_interrupted_backups_reads_an_index(backend, tmp_path):
    """Every backup listing and status poll fails the stale running jobs first: that must
    not read every user's rows."""
    async with temporary_database(backend, tmp_path) as url:
        await asyncio.to_thread(upgrade, url)
        engine = create_async_engine(url)
        seen: list[tuple[str, object]] = []

        def capture(conn, cursor, statement, parameters, context, executemany):
            if statement.lstrip().upper().startswith("UPDATE BACKUP"):
                seen.append((statement, parameters))

        event.listen(engine.sync_engine, "before_cursor_execute", capture)
        try:
            async with AsyncSession(engine) as session, session.begin():
                await BackupRepository(session).fail_stale(datetime.now(UTC))
            ((statement, parameters),) = seen
            async with engine.connect() as connection:
                explain = "EXPLAIN QUERY PLAN" if backend == "sqlite" else "EXPLAIN"
                if backend == "postgresql":  # its planner scans a table this small anyway
                    await connection.exec_driver_sql("SET enable_seqscan = off")
                plan = await connection.exec_driver_sql(f"{explain} {statement}", parameters)
                text = " ".join(str(row) for row in plan.all())
            assert "ix_backup_status_heartbeat" in text
        finally:
            await engine.dispose()
