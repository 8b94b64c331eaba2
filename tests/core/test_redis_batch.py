"""Commands of one event-loop turn go to Redis as one pipeline, each caller getting its own
reply or error; against the machine's Redis (a namespace of the test's own)."""

import asyncio

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError, ResponseError

from tests.conftest import REDIS_URL
from tests.support.upstream import free_port
from vektor.core.redis_batch import CommandBatch


class CountingRedis(Redis):
    """The real client, counting the pipelines it opens."""

    pipelines = 0

    def pipeline(self, *args, **kwargs):
        self.pipelines += 1
        return super().pipeline(*args, **kwargs)


async def test_one_turns_commands_share_a_pipeline_and_keep_their_replies(namespace):
    redis = CountingRedis.from_url(REDIS_URL)
    batch = CommandBatch(redis)
    counter, text = f"{namespace}:counter", f"{namespace}:text"
    try:
        await redis.set(text, "not a number")
        replies = await asyncio.gather(
            *(batch.call("INCR", counter) for _ in range(20)),
            batch.call("INCR", text),  # fails on its own
            batch.call("GET", text),
            return_exceptions=True,
        )
        assert redis.pipelines == 1
        assert replies[:20] == list(range(1, 21))  # in the order they were called
        assert isinstance(replies[20], ResponseError)
        assert replies[21] == b"not a number"
        # The next turn is a pipeline of its own.
        assert await batch.call("INCR", counter) == 21
        assert redis.pipelines == 2
    finally:
        await redis.delete(counter, text)
        await redis.aclose()


async def test_an_unreachable_redis_fails_every_caller_of_the_pipeline():
    redis = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    batch = CommandBatch(redis)
    try:
        replies = await asyncio.gather(
            *(batch.call("PING") for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(reply, ConnectionError) for reply in replies), replies
    finally:
        await redis.aclose()


async def test_a_caller_that_stops_waiting_leaves_the_others_their_replies(namespace):
    redis = Redis.from_url(REDIS_URL)
    batch = CommandBatch(redis)
    key = f"{namespace}:n"
    try:
        gone = asyncio.ensure_future(batch.call("INCR", key))
        kept = asyncio.ensure_future(batch.call("INCR", key))
        await asyncio.sleep(0)
        gone.cancel()
        assert await kept == 2  # both were sent; the cancelled caller's reply is dropped
        with pytest.raises(asyncio.CancelledError):
            await gone
    finally:
        await redis.delete(key)
        await redis.aclose()
