"""The balancer's circuit breaker: after a cooldown one request at a time tests a
deployment, and however that attempt ends, the deployment is never left out for good."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.conftest import scripted
from tests.support.upstream import ScriptedUpstream
from vektor.core.errors import Unavailable, UpstreamError
from vektor.llm.balancer import ModelBalancer
from vektor.llm.base import ChatMessage, GenerationRequest
from vektor.llm.config import DeploymentConfig
from vektor.llm.http import new_session

REQUEST = GenerationRequest(messages=[ChatMessage(role="user", content="hola")])


@pytest.fixture
async def balancer(upstream: ScriptedUpstream) -> AsyncIterator[ModelBalancer]:
    """One deployment whose upstream answers after 0.3 s; a long cooldown, ended by hand."""
    config = DeploymentConfig.model_validate(scripted(upstream, "stall=0.3;chunks=1"))
    async with new_session() as session:
        balancer = ModelBalancer([config], session, cooldown_s=60)
        yield balancer
        await balancer.aclose()


async def half_open(balancer: ModelBalancer, upstream: ScriptedUpstream) -> None:
    """Fail the deployment once, then end its cooldown."""
    upstream.forced_status = 502
    with pytest.raises(Unavailable):
        await balancer.open("scripted", REQUEST)
    upstream.forced_status = None
    deployment = balancer.deployments["scripted"][0]
    assert deployment.status(0)["state"] == "cooldown"
    deployment.breaker.cooldown_until = 0
    assert deployment.breaker.state(0) == "half-open"


async def test_half_open_one_request_tests_the_deployment(balancer, upstream):
    await half_open(balancer, upstream)
    probe = asyncio.create_task(balancer.open("scripted", REQUEST))
    await asyncio.sleep(0.1)
    with pytest.raises(Unavailable):  # the others are not sent to it meanwhile
        await balancer.open("scripted", REQUEST)
    stream = await probe
    await stream.aclose()
    assert balancer.deployments["scripted"][0].breaker.state(0) == "closed"
    assert len(upstream.requests) == 2  # the failure and the probe
    stream = await balancer.open("scripted", REQUEST)
    await stream.aclose()


async def test_a_failed_probe_opens_the_breaker_again(balancer, upstream):
    await half_open(balancer, upstream)
    upstream.forced_status = 503
    with pytest.raises(Unavailable):
        await balancer.open("scripted", REQUEST)
    breaker = balancer.deployments["scripted"][0].breaker
    assert breaker.state(0) == "open"
    assert not breaker.probing
    assert breaker.consecutive_failures == 2


async def test_a_refused_probe_is_released(balancer, upstream):
    await half_open(balancer, upstream)
    upstream.forced_status = 400
    with pytest.raises(UpstreamError):
        await balancer.open("scripted", REQUEST)
    breaker = balancer.deployments["scripted"][0].breaker
    assert not breaker.probing
    assert breaker.available(0)  # a refusal says nothing of its health: another may test it


async def test_a_cancelled_probe_is_released(balancer, upstream):
    await half_open(balancer, upstream)
    probe = asyncio.create_task(balancer.open("scripted", REQUEST))
    await asyncio.sleep(0.1)
    breaker = balancer.deployments["scripted"][0].breaker
    assert breaker.probing
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert not breaker.probing
    stream = await balancer.open("scripted", REQUEST)
    await stream.aclose()
    assert breaker.state(0) == "closed"
