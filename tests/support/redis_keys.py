"""Clean-up of the Redis keys a test wrote under its own namespace."""

from __future__ import annotations

from redis.asyncio import Redis


async def drop_namespace(url: str, namespace: str) -> None:
    """Delete every key under `namespace:`."""
    redis = Redis.from_url(url)
    keys = [key async for key in redis.scan_iter(f"{namespace}:*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()
