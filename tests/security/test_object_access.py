"""OWASP API1, broken object-level authorization: Bob sends Alice's object ids to every
endpoint that takes one, in the path or in the body, and gets exactly the answer an unknown
id gets; Alice's objects are left as they were. The OpenAPI schema keeps the sweep complete."""

import asyncio
import contextlib
import hashlib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.chat.test_jobs import Reader, wait_for_answer
from tests.conftest import bearer, login, parse_sse, register, scripted
from tests.support.redis_keys import drop_namespace
from tests.sync.test_backup import backup as finished_backup

SLOW_CHUNKS = 80  # 0.05 s apart: about 4 s of answer, far longer than the probes take
REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class Probe:
    """One operation tried by Bob with one of Alice's ids."""

    method: str
    path: str  # the OpenAPI path template
    target: str  # which of Alice's objects
    body: Callable[[str], dict[str, Any]] | None = None  # a JSON body around the id

    def url(self, object_id):
        return re.sub(r"\{[^}]+\}", object_id, self.path)

    def __str__(self):
        shown = f" {self.body('<id>')}" if self.body else ""
        return f"{self.method} {self.path}{shown} [{self.target}]"


def append_to(conversation_id):
    return {
        "model": "quick",
        "messages": [{"role": "user", "content": "bob writes here"}],
        "conversation_id": conversation_id,
    }


PROBES = [
    Probe("GET", "/chat/history/{conversation_id}", "conversation"),
    Probe("GET", "/chat/history/{conversation_id}", "running_conversation"),
    Probe("POST", "/chat/stream", "conversation", append_to),
    Probe("POST", "/chat/stream", "running_conversation", append_to),
    Probe("GET", "/chat/stream/{message_id}", "answer"),
    Probe("GET", "/chat/stream/{message_id}", "running_answer"),
    # For Alice, cancelling a finished answer is a 409: Bob must not learn even that.
    Probe("POST", "/chat/stream/{message_id}/cancel", "answer"),
    Probe("POST", "/chat/stream/{message_id}/cancel", "running_answer"),
    Probe("GET", "/sync/backup/{task_id}", "backup"),
    Probe("GET", "/sync/backup/{task_id}/download", "backup"),
    Probe("POST", "/sync/restore", "backup", lambda i: {"backup_id": i}),
    Probe("POST", "/sync/restore", "backup", lambda i: {"backup_id": i, "mode": "replace"}),
    Probe("DELETE", "/users/me/api-keys/{key_id}", "api_key"),
    Probe("DELETE", "/sync/devices/{device_id}", "device"),
    # Destructive ones last, so a failure above is not caused by a deletion.
    Probe("DELETE", "/chat/history/{conversation_id}", "conversation"),
    Probe("DELETE", "/chat/history/{conversation_id}", "running_conversation"),
]
# Admin operations take any user's id: Bob, no admin, gets the same 403 for Alice's id as
# for an unknown one, and nothing changes.
ADMIN_PROBES = [Probe("PATCH", "/admin/users/{user_id}", "user", lambda i: {"disabled": True})]
# The change feed and its catch-up take a cursor, not an id: checked by what Bob receives.
FEEDS = {("GET", "/sync/events"), ("GET", "/sync/changes")}
COVERED = {(p.method, p.path) for p in PROBES + ADMIN_PROBES} | FEEDS


def unknown_id(target):
    """An id of the same kind that nobody has."""
    return f"no-such-device-{uuid.uuid4().hex[:8]}" if target == "device" else str(uuid.uuid4())


def outcome(response):
    """What a client can see of an answer: status and body."""
    try:
        body = response.json()
    except ValueError:
        body = response.text[:200]
    return response.status_code, body


async def attempt(client, probe, object_id, headers):
    body = probe.body(object_id) if probe.body else None
    response = await client.request(probe.method, probe.url(object_id), json=body, headers=headers)
    return outcome(response)


async def drain(response, sink):
    """Keep whatever a streamed answer sends."""
    async for chunk in response.aiter_text():
        sink.append(chunk)


async def alice_view(client, headers, ids):
    """What Alice can see of her objects; Bob's attempts must not change any of it."""
    conversation = await client.get(f"/chat/history/{ids['conversation']}", headers=headers)
    keys = (await client.get("/users/me/api-keys", headers=headers)).json()
    backups = (await client.get("/sync/backups", headers=headers)).json()
    devices = (await client.get("/sync/devices", headers=headers)).json()
    return {
        "conversation": conversation.json(),
        "keys": [{k: v for k, v in key.items() if k != "last_used_at"} for key in keys],
        "backups": backups,
        "devices": sorted(d["id"] for d in devices),
    }


@pytest.fixture(params=["memory", "redis"])
async def chat(request, chat_harness, upstream):
    """A live server with a quick and a slow model, its streams and change feed in the
    process or on Redis (a namespace of its own); its user is Alice."""
    shared = {}
    if request.param == "redis":
        shared = {"redis_url": REDIS_URL, "redis_namespace": f"vektor-bola-{uuid.uuid4().hex[:8]}"}
    chat = await chat_harness(
        [
            scripted(upstream, "chunks=3;text=kept words here", name="quick"),
            scripted(upstream, f"chunks={SLOW_CHUNKS};delay=0.05;text=w", name="slow"),
        ],
        live=True,
        sse_ping_seconds=0.1,
        **shared,
    )
    kind = type(chat.app.state.vektor.events).__name__
    assert kind == ("RedisEventBus" if shared else "MemoryEventBus"), kind
    yield chat
    if shared:
        await drop_namespace(REDIS_URL, shared["redis_namespace"])


async def test_bob_gets_404_for_every_one_of_alices_ids(chat):
    client, alice = chat.client, chat.headers
    start = (await client.get("/sync/changes", headers=alice)).json()["cursor"]
    await register(client, "bob")
    bob = bearer(await login(client, "bob", device_id="bob-phone"))
    # Bob follows the change feed from Alice's cursor for the whole test.
    feed = await client.send(
        client.build_request("GET", "/sync/events", headers={**bob, "Last-Event-ID": start}),
        stream=True,
    )
    assert feed.status_code == 200
    received: list[str] = []
    feeding = asyncio.create_task(drain(feed, received))
    try:
        # Alice's objects.
        _, events, _ = await chat.stream(
            {"model": "quick", "messages": [{"role": "user", "content": "alice's secret"}]}
        )
        ids = {"conversation": events[0]["conversation_id"], "answer": events[0]["message_id"]}
        ids["user"] = (await client.get("/users/me", headers=alice)).json()["id"]
        laptop = await login(client, "user1", device_id="alice-laptop", device_name="Laptop")
        ids["device"] = "alice-laptop"
        created = await client.post("/users/me/api-keys", json={"name": "cli"}, headers=alice)
        assert created.status_code == 201, created.text
        ids["api_key"], api_key = created.json()["id"], created.json()["key"]
        stored = await finished_backup(chat)
        ids["backup"] = stored["task_id"]
        before = await alice_view(client, alice, ids)
        assert [m["role"] for m in before["conversation"]["messages"]] == ["user", "assistant"]

        # And one answer still being written while Bob tries.
        body = {"model": "slow", "messages": [{"role": "user", "content": "long one"}]}
        async with client.stream("POST", "/chat/stream", json=body, headers=alice) as running:
            assert running.status_code == 200
            reader = Reader(running)
            first = await reader.read(2)
            ids["running_conversation"] = first[0]["conversation_id"]
            ids["running_answer"] = first[0]["message_id"]

            failures = []
            for probe in PROBES:
                seen = await attempt(client, probe, ids[probe.target], bob)
                expected = await attempt(client, probe, unknown_id(probe.target), bob)
                if expected[0] != 404 or seen != expected:
                    failures.append(f"{probe}: Alice's id {seen}, unknown id {expected}")
            for probe in ADMIN_PROBES:
                seen = await attempt(client, probe, ids[probe.target], bob)
                expected = await attempt(client, probe, unknown_id(probe.target), bob)
                if expected[0] != 403 or seen != expected:
                    failures.append(f"{probe}: Alice's id {seen}, unknown id {expected}")
            assert not failures, "\n".join(failures)

            # The probes ran while the answer was still being written.
            mid = (
                await client.get(f"/chat/history/{ids['running_conversation']}", headers=alice)
            ).json()
            assert mid["messages"][-1]["role"] == "user", "the slow answer ended too soon"
            rest = await reader.read(10_000)

        # The running answer was neither cancelled nor cut: it ends normally and is stored.
        streamed = first + rest
        assert streamed[-1]["type"] == "done", streamed[-3:]
        assert streamed[-1]["finish_reason"] == "stop", streamed[-1]
        text = "".join(e["content"] for e in streamed if e["type"] == "delta")
        assert text.split() == ["w"] * SLOW_CHUNKS
        answer = await wait_for_answer(chat, ids["running_conversation"])
        assert answer["finish_reason"] == "stop"
        assert answer["content"] == text

        # Everything else of Alice's is as it was, and still works.
        assert await alice_view(client, alice, ids) == before
        assert (await client.get("/users/me", headers=bearer(laptop))).status_code == 200
        by_key = {"Authorization": f"Bearer {api_key}"}
        assert (await client.get("/v1/models", headers=by_key)).status_code == 200
        download = await client.get(f"/sync/backup/{ids['backup']}/download", headers=alice)
        assert download.status_code == 200
        assert hashlib.sha256(download.content).hexdigest() == stored["sha256"]
        # Alice's own answers differ from Bob's 404s: the ids were live, the 404s hid them.
        resumed = await client.get(f"/chat/stream/{ids['answer']}", headers=alice)
        assert resumed.status_code == 200
        cancel = await client.post(f"/chat/stream/{ids['answer']}/cancel", headers=alice)
        assert cancel.status_code == 409

        # Bob has nothing of hers, not even copies from the restores he tried.
        assert (await client.get("/chat/history", headers=bob)).json() == []
        assert (await client.get("/sync/backups", headers=bob)).json() == []
        assert (await client.get("/users/me/api-keys", headers=bob)).json() == []
        devices = (await client.get("/sync/devices", headers=bob)).json()
        assert [d["id"] for d in devices] == ["bob-phone"]

        # Catching up, from Alice's cursor or from nothing, Bob sees no change of hers...
        alice_ids = set(ids.values())
        for since in (start, None):
            params = {"since": since} if since else {}
            changes = (await client.get("/sync/changes", params=params, headers=bob)).json()
            assert not [e for e in changes["events"] if e["id"] in alice_ids], changes
        # ...though Alice does (the feed works: it just is not Bob's).
        hers = (await client.get("/sync/changes", params={"since": start}, headers=alice)).json()
        assert ids["conversation"] in {e["id"] for e in hers["events"]}, hers
        # Bob changed nothing, so his live feed carries heartbeats and nothing else.
        await asyncio.sleep(0.3)
        assert ": ping" in "".join(received), "Bob's feed was not followed to the end"
        delivered = parse_sse("".join(received))
        assert [e for e in delivered if e["type"] != "resync"] == [], delivered
    finally:
        feeding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeding
        await feed.aclose()


async def test_a_device_id_is_the_users_own_even_when_two_users_pick_the_same(client, alice):
    """Device ids are chosen by the client: Bob naming his device like Alice's gets a device
    of his own, and removing it leaves hers alone."""
    laptop = await login(client, "alice", device_id="laptop")
    await register(client, "bob")
    bob = bearer(await login(client, "bob", device_id="laptop"))
    assert [d["id"] for d in (await client.get("/sync/devices", headers=bob)).json()] == ["laptop"]
    assert (await client.delete("/sync/devices/laptop", headers=bob)).status_code == 204
    assert (await client.get("/users/me", headers=bob)).status_code == 401
    assert (await client.get("/users/me", headers=bearer(laptop))).status_code == 200
    mine = (await client.get("/sync/devices", headers=alice["headers"])).json()
    assert "laptop" in {d["id"] for d in mine}


def id_operations(spec):
    """Every (method, path) that takes an object id: a path parameter, an `*_id` query
    parameter, or an `id`/`*_id` property at the top of its JSON body."""
    schemas = spec["components"]["schemas"]

    def resolve(schema):
        while "$ref" in schema:
            schema = schemas[schema["$ref"].rsplit("/", 1)[-1]]
        return schema

    found = {}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            why = [
                f"{p['in']} {p['name']}"
                for p in operation.get("parameters", [])
                if p["in"] == "path" or (p["in"] == "query" and p["name"].endswith("_id"))
            ]
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                body = resolve(content["application/json"]["schema"])
                why += [
                    f"body {name}"
                    for name in body.get("properties", {})
                    if name == "id" or name.endswith("_id")
                ]
            if why:
                found[(method.upper(), path)] = why
    return found


async def test_every_operation_taking_an_id_is_in_the_sweep(app):
    spec = app.openapi()
    operations = id_operations(spec)
    assert ("POST", "/chat/stream") in operations  # the body is looked at
    missing = {op: why for op, why in operations.items() if op not in COVERED}
    assert not missing, (
        f"operations taking an object id with no case in PROBES: {missing}; add one so Bob "
        "tries them with Alice's ids"
    )
    existing = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    stale = COVERED - existing
    assert not stale, f"PROBES/FEEDS name operations the app no longer has: {stale}"
