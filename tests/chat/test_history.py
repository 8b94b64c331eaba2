"""History listing, full-text search, reading and deleting; isolation between users."""

import uuid

import pytest

from tests.conftest import bearer, login, register, scripted


async def say(chat, content, answer="fine thanks", conversation_id=None, headers=None):
    body = {"model": "scripted", "messages": [{"role": "user", "content": content}]}
    if conversation_id:
        body["conversation_id"] = conversation_id
    chat.app.state.vektor.balancer.deployments["scripted"][
        0
    ].config.model = f"chunks={len(answer.split())};text={answer}"
    status, events, _ = await chat.stream(body, headers=headers)
    assert status == 200
    return events[0]["conversation_id"]


@pytest.fixture
async def chat(chat_harness, upstream):
    return await chat_harness([scripted(upstream)])


async def test_newest_first_with_limit_and_offset(chat):
    ids = [await say(chat, f"question number {i}") for i in range(5)]
    listing = (await chat.client.get("/chat/history", headers=chat.headers)).json()
    assert [row["id"] for row in listing] == ids[::-1]
    assert set(listing[0]) >= {"id", "title", "model", "created_at", "updated_at", "message_count"}
    assert listing[0]["message_count"] == 2
    page = (await chat.client.get("/chat/history?limit=2&offset=1", headers=chat.headers)).json()
    assert [row["id"] for row in page] == ids[::-1][1:3]
    # Continuing an old conversation moves it to the top.
    await say(chat, "and again", conversation_id=ids[0])
    top = (await chat.client.get("/chat/history?limit=1", headers=chat.headers)).json()
    assert top[0]["id"] == ids[0]


async def test_search_titles_and_message_text(chat):
    volcano = await say(chat, "Tell me about the Cotopaxi volcano", answer="It erupts rarely")
    await say(chat, "Recipe for locro de papa", answer="Potatoes and cheese")
    search = lambda q: chat.client.get("/chat/history", params={"q": q}, headers=chat.headers)  # noqa: E731
    assert [r["id"] for r in (await search("cotopaxi")).json()] == [volcano]
    assert [r["id"] for r in (await search("ERUPTS")).json()] == [volcano]  # answer text
    assert [r["id"] for r in (await search("erupt")).json()] == [volcano]  # prefix
    assert len((await search("potatoes cheese")).json()) == 1
    assert (await search("potatoes volcano")).json() == []  # every word must match
    assert (await search("nothing-like-this")).json() == []


@pytest.mark.parametrize(
    "query",
    [
        '"',
        "*",
        "a OR b",
        "NEAR(x y)",
        "x AND",
        ")",
        "col:val",
        "'; DROP TABLE message;--",
        "!!!",
        "a & b | c",
        "ü",
    ],
)
async def test_search_with_operators_is_safe(chat, query):
    await say(chat, "plain words here")
    response = await chat.client.get("/chat/history", params={"q": query}, headers=chat.headers)
    assert response.status_code == 200
    assert isinstance(response.json(), list)


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 101}, {"offset": -1}, {"limit": "x"}, {"q": ""}, {"q": "x" * 201}],
)
async def test_bad_listing_params_are_422(chat, params):
    response = await chat.client.get("/chat/history", params=params, headers=chat.headers)
    assert response.status_code == 422


async def test_read_and_delete(chat):
    conversation_id = await say(chat, "to be deleted", answer="bye")
    body = (await chat.client.get(f"/chat/history/{conversation_id}", headers=chat.headers)).json()
    assert [m["content"] for m in body["messages"]] == ["to be deleted", "bye"]
    assert all(set(m) >= {"id", "role", "content", "created_at"} for m in body["messages"])
    deleted = await chat.client.delete(f"/chat/history/{conversation_id}", headers=chat.headers)
    assert deleted.status_code == 204
    gone = await chat.client.get(f"/chat/history/{conversation_id}", headers=chat.headers)
    assert gone.status_code == 404
    assert (
        await chat.client.get("/chat/history", params={"q": "deleted"}, headers=chat.headers)
    ).json() == []


async def test_other_users_conversations_are_404_and_never_listed(chat):
    mine = await say(chat, "secret plans about zebras")
    await register(chat.client, "intruder")
    intruder = bearer(await login(chat.client, "intruder"))
    assert (await chat.client.get(f"/chat/history/{mine}", headers=intruder)).status_code == 404
    assert (await chat.client.delete(f"/chat/history/{mine}", headers=intruder)).status_code == 404
    assert (await chat.client.get("/chat/history", headers=intruder)).json() == []
    found = await chat.client.get("/chat/history", params={"q": "zebras"}, headers=intruder)
    assert found.json() == []
    still = await chat.client.get(f"/chat/history/{mine}", headers=chat.headers)
    assert still.status_code == 200


async def test_unknown_or_malformed_ids(chat):
    unknown = uuid.uuid4()
    assert (
        await chat.client.get(f"/chat/history/{unknown}", headers=chat.headers)
    ).status_code == 404
    assert (
        await chat.client.get("/chat/history/not-a-uuid", headers=chat.headers)
    ).status_code == 422


async def test_history_requires_auth(chat):
    assert (await chat.client.get("/chat/history")).status_code == 401


async def test_deleting_the_account_deletes_conversations(chat):
    await say(chat, "gone with the account")
    assert (await chat.client.delete("/users/me", headers=chat.headers)).status_code == 204
    from sqlalchemy import func, select

    from vektor.chat.models import Conversation, Message

    async with chat.app.state.vektor.sessionmaker() as session:
        assert (await session.execute(select(func.count()).select_from(Conversation))).scalar() == 0
        assert (await session.execute(select(func.count()).select_from(Message))).scalar() == 0
