"""What an app's shared Redis command batch sends, pipeline by pipeline."""

from __future__ import annotations

from typing import Any

from vektor.core.redis_batch import CommandBatch


def record_pipelines(batch: CommandBatch) -> list[list[str]]:
    """The command names of every pipeline `batch` sends from now on, in order (the list
    fills as they go out)."""
    sent: list[list[str]] = []
    execute = batch._execute

    async def recorded(waiting: Any) -> None:
        sent.append([command[0] for command, _ in waiting])
        await execute(waiting)

    batch._execute = recorded  # type: ignore[method-assign]
    return sent
