"""Input a client should not be able to slip in: fields a body does not declare (mass
assignment, OWASP API3/API6) and out-of-range paging (limit, offset) on every listing.

A crafted restore carrying another user's conversation ids is covered by
tests/sync/test_backup.py::test_another_users_ids_land_on_the_caller_only.
"""

import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import PASSWORD, bearer, login, register, scripted
from tests.monitoring.test_system import make_admin

JSON = "application/json"

# JSON bodies that may carry properties they do not declare, with the reason.
OPEN_BODIES = {
    ("POST", "/v1/chat/completions"): (
        "OpenAI compatibility: fields Vektor does not use (top_p, user, seed, …) are accepted "
        "and ignored, as other OpenAI-compatible servers do (vektor.compat.schemas); see "
        "test_v1_ignores_unknown_fields_and_answers_for_the_caller"
    ),
}
# Objects inside otherwise closed bodies that are free-form on purpose, with the reason.
OPEN_OBJECTS = {
    "AdapterWrite.settings": (
        "the adapter's own settings document, written as given after "
        "configuration.adapters.validate checks its size, depth and URLs"
    ),
}


def loose_objects(schema, schemas, where, seen=frozenset()):
    """Locations of the object schemas, at any depth, that accept undeclared properties."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name not in seen:
            yield from loose_objects(schemas[name], schemas, name, seen | {name})
        return
    for key in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(key, []):
            yield from loose_objects(option, schemas, where, seen)
    if "items" in schema:
        yield from loose_objects(schema["items"], schemas, f"{where}[]", seen)
    if schema.get("type") == "object" or "properties" in schema:
        extra = schema.get("additionalProperties")
        if extra is not False:
            yield where
        if isinstance(extra, dict):
            yield from loose_objects(extra, schemas, f"{where}{{}}", seen)
        for name, prop in schema.get("properties", {}).items():
            yield from loose_objects(prop, schemas, f"{where}.{name}", seen)


def json_bodies(spec):
    """(method, path) → the schema of its JSON request body."""
    return {
        (method.upper(), path): operation["requestBody"]["content"][JSON]["schema"]
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if JSON in operation.get("requestBody", {}).get("content", {})
    }


async def test_every_json_body_forbids_undeclared_fields(app):
    spec = app.openapi()
    schemas = spec["components"]["schemas"]
    bodies = json_bodies(spec)
    assert ("POST", "/auth/register") in bodies
    loose: dict[str, set[tuple[str, str]]] = {}
    for operation, schema in bodies.items():
        found = set(loose_objects(schema, schemas, " ".join(operation)))
        if operation in OPEN_BODIES:
            assert found, f"{operation} is closed now: remove it from OPEN_BODIES"
            continue
        for where in found:
            loose.setdefault(where, set()).add(operation)
    unexplained = {where: ops for where, ops in loose.items() if where not in OPEN_OBJECTS}
    assert not unexplained, (
        f"request bodies accepting fields they do not declare: {unexplained}; forbid extra "
        "fields (model_config = ConfigDict(extra='forbid')) or list the object, with a "
        "reason, in OPEN_OBJECTS"
    )
    assert not set(OPEN_OBJECTS) - set(loose), "an OPEN_OBJECTS entry is stale"
    assert not set(OPEN_BODIES) - set(bodies), "an OPEN_BODIES entry is stale"


@dataclass
class World:
    """The harness's user (the caller), a second user, and what the cases need of them."""

    chat: Any
    me: dict[str, str]
    tokens: dict[str, Any]
    victim: dict[str, str]
    victim_id: str


HOOK = {"kind": "webhook", "url": "http://93.184.216.34/hook"}
QUESTION = [{"role": "user", "content": "hello"}]


@dataclass(frozen=True)
class Case:
    """A valid body for one write endpoint, sent with one field it does not declare."""

    method: str
    path: str
    body: Any  # World -> dict
    extra: dict[str, Any]
    caller: str = "user"  # "user", "admin" or "anonymous"


CASES = {
    "register": Case(
        "POST",
        "/auth/register",
        lambda w: {"email": "mallory@example.com", "username": "mallory", "password": PASSWORD},
        {"is_admin": True},
        caller="anonymous",
    ),
    "profile": Case("PUT", "/users/me", lambda w: {"username": "renamed"}, {"is_admin": True}),
    "preferences": Case(
        "PUT", "/users/preferences", lambda w: {"theme": "light"}, {"user_id": "victim"}
    ),
    "change-password": Case(
        "POST",
        "/users/change-password",
        lambda w: {"current_password": PASSWORD, "new_password": "a brand new secret"},
        {"user_id": "victim"},
    ),
    "chat-stream": Case(
        "POST",
        "/chat/stream",
        lambda w: {"model": "scripted", "messages": QUESTION},
        {"user_id": "victim"},
    ),
    "api-key": Case("POST", "/users/me/api-keys", lambda w: {"name": "k"}, {"user_id": "victim"}),
    "adapter": Case(
        "POST",
        "/config/adapters",
        lambda w: {"name": "alerts", "settings": HOOK},
        {"path": "../../model_configs.json"},
        caller="admin",
    ),
    "restore": Case("POST", "/sync/restore", lambda w: {"mode": "merge"}, {"user_id": "victim"}),
    "refresh": Case(
        "POST",
        "/auth/refresh",
        lambda w: {"refresh_token": w.tokens["refresh_token"]},
        {"user_id": "victim"},
        caller="anonymous",
    ),
    "logout": Case(
        "POST",
        "/auth/logout",
        lambda w: {"refresh_token": w.tokens["refresh_token"]},
        {"id": "victim"},
        caller="anonymous",
    ),
}


async def state(client, headers):
    """Everything of a user that a write could change (use timestamps left out)."""
    get = lambda path: client.get(path, headers=headers)  # noqa: E731
    keys = (await get("/users/me/api-keys")).json()
    return {
        "me": (await get("/users/me")).json(),
        "preferences": (await get("/users/preferences")).json(),
        "history": (await get("/chat/history")).json(),
        "keys": [{k: v for k, v in key.items() if k != "last_used_at"} for key in keys],
        "sessions": sorted(s["id"] for s in (await get("/sync/sessions")).json()),
        "devices": sorted(d["id"] for d in (await get("/sync/devices")).json()),
        "backups": (await get("/sync/backups")).json(),
    }


@pytest.fixture
async def world(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=2;text=ok")])
    tokens = await login(chat.client, "user1", device_id="laptop")
    victim = await register(chat.client, "victim")
    victim_headers = bearer(await login(chat.client, "victim"))
    return World(chat, bearer(tokens), tokens, victim_headers, victim["id"])


@pytest.mark.parametrize("name", list(CASES))
async def test_undeclared_field_is_422_and_changes_nothing(world, name):
    case = CASES[name]
    client = world.chat.client
    extra = {k: world.victim_id if v == "victim" else v for k, v in case.extra.items()}
    headers = {
        "user": world.me,
        "anonymous": {},
        "admin": await make_admin(world.chat.app, client) if case.caller == "admin" else {},
    }[case.caller]
    before = (await state(client, world.me), await state(client, world.victim))

    response = await client.request(
        case.method, case.path, json={**case.body(world), **extra}, headers=headers
    )

    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    field = next(iter(extra))
    # The extra field alone is refused: the rest of the body was valid.
    assert [(e["loc"][-1], e["type"]) for e in errors] == [(field, "extra_forbidden")], errors
    assert (await state(client, world.me), await state(client, world.victim)) == before
    for who in (world.me, world.victim):
        assert (await client.get("/users/me", headers=who)).json()["is_admin"] is False
    # What the request would have done, had it been valid, did not happen either.
    if name == "register":
        refused = await client.post(
            "/auth/login", data={"username": "mallory", "password": PASSWORD}
        )
        assert refused.status_code == 401
    elif name == "change-password":
        await login(client, "user1")  # the old password still works
    elif name == "adapter":
        assert (await client.get("/config/adapters", headers=world.me)).json() == []
        folder = world.chat.app.state.vektor.settings.vektor_config_dir
        assert not (folder / "adapters").exists() or not list((folder / "adapters").iterdir())
    elif name in ("refresh", "logout"):
        # Neither rotated nor revoked: the session and its refresh token still work.
        assert (await client.get("/users/me", headers=world.me)).status_code == 200
        refreshed = await client.post(
            "/auth/refresh", json={"refresh_token": world.tokens["refresh_token"]}
        )
        assert refreshed.status_code == 200, refreshed.text


async def test_v1_ignores_unknown_fields_and_answers_for_the_caller(world):
    """/v1 takes unknown fields and ignores them (OpenAI compatibility): an `is_admin` or a
    `user_id` there makes nobody an admin and stores nothing for anyone else."""
    client = world.chat.client
    victim_before = await state(client, world.victim)
    response = await client.post(
        "/v1/chat/completions",
        json={
            "model": "scripted",
            "messages": QUESTION,
            "is_admin": True,
            "user_id": world.victim_id,
            "conversation_id": str(uuid.uuid4()),
            "user": "someone-else",
        },
        headers={**world.me, "X-Vektor-Store": "true"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["object"] == "chat.completion"
    stored = response.headers["X-Vektor-Conversation-Id"]
    mine = (await client.get("/chat/history", headers=world.me)).json()
    assert [c["id"] for c in mine] == [stored]
    assert await state(client, world.victim) == victim_before
    for who in (world.me, world.victim):
        assert (await client.get("/users/me", headers=who)).json()["is_admin"] is False
    # A bad value there is refused in OpenAI's error shape.
    refused = await client.post(
        "/v1/chat/completions",
        json={"model": "scripted", "messages": QUESTION, "n": 2},
        headers=world.me,
    )
    assert refused.status_code == 422
    assert set(refused.json()["error"]) == {"message", "type", "param", "code"}


BAD_PAGING = {
    "limit-huge": {"limit": 10**12},
    "limit-int64-overflow": {"limit": 2**63},
    "limit-negative": {"limit": -1},
    "limit-zero": {"limit": 0},
    "limit-not-a-number": {"limit": "abc"},
    "limit-float": {"limit": "1.5"},
    "offset-negative": {"offset": -1},
    "offset-huge": {"offset": 10**12},
    "offset-not-a-number": {"offset": "abc"},
}


def listings(spec):
    """(path, query parameter names) of every GET operation with a `limit` parameter."""
    found = []
    for path, operations in spec["paths"].items():
        operation = operations.get("get")
        if operation is None:
            continue
        names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        if "limit" in names:
            assert "{" not in path, f"{path}: give the sweep an id to put in the path"
            found.append((path, names))
    return found


@pytest.mark.parametrize("params", list(BAD_PAGING.values()), ids=list(BAD_PAGING))
async def test_out_of_range_paging_is_422_on_every_listing(app, client, alice, params):
    found = listings(app.openapi())
    assert found, "no GET operation has a limit parameter: is the schema walk broken?"
    tried = 0
    admin = await make_admin(app, client)
    for path, names in found:
        if not set(params) <= names:
            continue
        headers = admin if path.startswith("/admin/") else alice["headers"]
        response = await client.get(path, params=params, headers=headers)
        assert response.status_code == 422, f"{path} {params}: {response.status_code}"
        tried += 1
    if "limit" in params:
        assert tried == len(found)


async def test_valid_paging_is_200_on_every_listing(app, client, alice):
    admin = await make_admin(app, client)
    for path, names in listings(app.openapi()):
        params = {"limit": 1} | ({"offset": 0} if "offset" in names else {})
        headers = admin if path.startswith("/admin/") else alice["headers"]
        response = await client.get(path, params=params, headers=headers)
        assert response.status_code == 200, f"{path} {params}: {response.text}"
        assert isinstance(response.json(), list)
