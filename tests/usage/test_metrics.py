"""/metrics counts every answer's tokens by model and kind, and its cost by model; the
labels are public names only."""

from __future__ import annotations

import pytest

from tests.conftest import scripted
from tests.monitoring.test_system import samples

QUESTION = [{"role": "user", "content": "hola"}]


async def test_tokens_and_cost_are_counted_by_model(chat_harness, upstream):
    prices = {"input_cost_per_mtok": 1000, "output_cost_per_mtok": 3000}
    chat = await chat_harness([scripted(upstream, "chunks=4;text=m", name="counted", **prices)])
    before = (await chat.client.get("/metrics")).text
    status, _, _ = await chat.stream({"model": "counted", "messages": QUESTION})
    assert status == 200
    answer = await chat.client.post(
        "/v1/chat/completions",
        json={"model": "counted", "messages": QUESTION},
        headers=chat.headers,
    )
    assert answer.status_code == 200
    after = (await chat.client.get("/metrics")).text

    def grew(name: str, labels: tuple[tuple[str, str], ...]) -> float:
        return samples(after, name)[labels] - samples(before, name).get(labels, 0)

    prompt = (("kind", "prompt"), ("model", "counted"))
    completion = (("kind", "completion"), ("model", "counted"))
    assert grew("vektor_tokens_total", prompt) == 22  # 11 reported by each answer
    assert grew("vektor_tokens_total", completion) == 8
    # 2 × (11 × $1000 + 4 × $3000) per million tokens
    assert grew("vektor_cost_usd_total", (("model", "counted"),)) == pytest.approx(0.046)
    assert "sk-test-secret" not in after


async def test_quota_rejections_are_counted_by_limit(chat_harness, upstream):
    chat = await chat_harness(
        [scripted(upstream, "chunks=1", name="limited")], default_requests_per_day=1
    )
    before = (await chat.client.get("/metrics")).text
    body = {"model": "limited", "messages": QUESTION}
    statuses = [(await chat.stream(body))[0] for _ in range(3)]
    v1 = await chat.client.post("/v1/chat/completions", json=body, headers=chat.headers)
    assert (statuses, v1.status_code) == ([200, 429, 429], 429)
    after = (await chat.client.get("/metrics")).text
    labels = (("limit", "requests_per_day"),)
    grown = samples(after, "vektor_quota_rejections_total")[labels]
    assert grown - samples(before, "vektor_quota_rejections_total").get(labels, 0) == 3
