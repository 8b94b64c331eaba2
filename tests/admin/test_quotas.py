"""Quotas an admin sets per user and those an API key is created with: each refuses its own
answers once used up (429 `quota_exceeded`), checked as well as the owner's, counted by
`vektor_quota_rejections_total{limit}`."""

from __future__ import annotations

from tests.admin.helpers import make_admin, new_key
from tests.conftest import scripted
from tests.monitoring.test_system import samples
from tests.usage.helpers import usage_rows

QUESTION = {"messages": [{"role": "user", "content": "hola"}]}


def _rejections(text: str, limit: str) -> float:
    return samples(text, "vektor_quota_rejections_total").get((("limit", limit),), 0)


async def test_an_api_key_is_refused_at_its_own_quota_while_its_owner_is_not(
    chat_harness, upstream
):
    chat = await chat_harness([scripted(upstream, "chunks=3", name="k")])
    limited = {
        "Authorization": f"Bearer {await new_key(chat.client, chat.headers, tokens_per_day=20)}"
    }
    free = {"Authorization": f"Bearer {await new_key(chat.client, chat.headers)}"}
    listed = (await chat.client.get("/users/me/api-keys", headers=chat.headers)).json()
    assert {k["tokens_per_day"] for k in listed} == {20, None}
    assert {k["budget_per_month"] for k in listed} == {None}
    before = (await chat.client.get("/metrics")).text
    body = {"model": "k", **QUESTION}
    for _ in range(2):  # 14 tokens each: the second crosses 20 and runs to its end
        answer = await chat.client.post("/v1/chat/completions", json=body, headers=limited)
        assert answer.status_code == 200, answer.text
    refused = await chat.client.post("/v1/chat/completions", json=body, headers=limited)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    error = refused.json()["error"]
    assert (error["code"], error["param"]) == ("quota_exceeded", "tokens_per_day")
    assert "API key" in error["message"]
    # The owner's own quota is unlimited: another key and the access token go on.
    assert (
        await chat.client.post("/v1/chat/completions", json=body, headers=free)
    ).status_code == 200
    assert (await chat.stream(body))[0] == 200
    after = (await chat.client.get("/metrics")).text
    assert _rejections(after, "tokens_per_day") - _rejections(before, "tokens_per_day") == 1
    rows = await usage_rows(chat.app)
    assert len(rows) == 4  # the refused request left no row


async def test_an_api_key_budget_and_the_owners_quota_both_apply(chat_harness, upstream):
    prices = {"input_cost_per_mtok": 1, "output_cost_per_mtok": 1}
    chat = await chat_harness([scripted(upstream, "chunks=3", name="b", **prices)])
    admin = await make_admin(chat.app, chat.client, "root")
    key = await new_key(chat.client, chat.headers, budget_per_month="0.00001")
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": "b", **QUESTION}
    assert (
        await chat.client.post("/v1/chat/completions", json=body, headers=headers)
    ).status_code == 200
    refused = await chat.client.post("/v1/chat/completions", json=body, headers=headers)
    assert refused.status_code == 429  # $0.000014 spent through the key
    assert refused.json()["error"]["param"] == "budget_per_month"
    # The owner's requests quota, set by an admin, refuses the owner's other credentials.
    me = (await chat.client.get("/users/me", headers=chat.headers)).json()["id"]
    response = await chat.client.patch(
        f"/admin/users/{me}", json={"quota": {"requests_per_day": 2}}, headers=admin["headers"]
    )
    assert response.status_code == 200
    assert (await chat.stream(body))[0] == 200  # the second answer of the day
    refused = await chat.client.post("/chat/stream", json=body, headers=chat.headers)
    assert refused.status_code == 429
    assert refused.json()["limit"] == "requests_per_day"
    for bad in ({"tokens_per_day": -1}, {"budget_per_month": "x"}, {"tokens_per_day": "5"}):
        answer = await chat.client.post(
            "/users/me/api-keys", json={"name": "bad", **bad}, headers=chat.headers
        )
        assert answer.status_code == 422, bad
        assert answer.json()["detail"][0]["loc"] == ["body", next(iter(bad))]
    assert len((await chat.client.get("/users/me/api-keys", headers=chat.headers)).json()) == 1


async def test_an_admins_quota_overrides_the_default_and_null_restores_it(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=3", name="d")], default_tokens_per_day=20)
    admin = await make_admin(chat.app, chat.client, "root")
    me = (await chat.client.get("/users/me", headers=chat.headers)).json()["id"]
    body = {"model": "d", **QUESTION}
    assert [(await chat.stream(body))[0] for _ in range(3)] == [200, 200, 429]
    url = f"/admin/users/{me}"
    raised = await chat.client.patch(
        url, json={"quota": {"tokens_per_day": 50}}, headers=admin["headers"]
    )
    assert raised.status_code == 200
    assert (await chat.stream(body))[0] == 200  # 42 of 50: admitted at once
    listed = (
        await chat.client.get("/admin/users", params={"q": "user"}, headers=admin["headers"])
    ).json()
    assert listed[0]["usage_month"]["requests"] == 3
    assert listed[0]["usage_month"]["tokens"] == 42
    back = await chat.client.patch(
        url, json={"quota": {"tokens_per_day": None}}, headers=admin["headers"]
    )
    assert back.json()["quota"]["tokens_per_day"] is None
    refused = await chat.client.post("/chat/stream", json=body, headers=chat.headers)
    assert refused.status_code == 429  # the default of 20 again
