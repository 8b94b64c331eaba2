"""/health/*, /api/status, /api/info, /api/endpoints and /metrics."""

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from tests.conftest import bearer, login, register, scripted
from vektor.auth.models import User


def samples(text, name):
    """{labels: value} of one metric's samples in a text exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def make_admin(app, client, name="root"):
    await register(client, name)
    async with app.state.vektor.sessionmaker() as session:
        await session.execute(update(User).where(User.username == name).values(is_admin=True))
        await session.commit()
    return bearer(await login(client, name))


async def test_probes(client):
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    health = (await client.get("/health")).json()
    assert set(health["checks"]) >= {"database", "models", "mcp"}
    assert health["checks"]["models"]["smollm2"] == "ok"


async def test_ready_is_503_once_shutting_down(app, client):
    app.state.vektor.ready = False
    try:
        refused = await client.get("/health/ready")
    finally:
        app.state.vektor.ready = True
    assert refused.status_code == 503
    assert refused.json()["reason"] == "shutting down"


async def test_info_has_limits_and_no_secrets(client, settings):
    info = (await client.get("/api/info")).json()
    assert info["limits"]["max_tool_rounds"] == settings.max_tool_rounds
    assert info["limits"]["rate_limit_chat"] == settings.rate_limit_chat
    assert info["capabilities"]["openai_compatible_api"] == "/v1"
    assert info["capabilities"]["websocket"] == "/chat/ws"
    assert settings.secret_key not in str(info)


async def test_endpoints_say_who_may_call(client):
    listed = (await client.get("/api/endpoints")).json()
    rows = {(r["path"], tuple(r["methods"])): r for r in listed}
    assert rows[("/chat/stream", ("POST",))]["auth"] is True
    assert rows[("/health", ("GET",))]["auth"] is False
    assert rows[("/auth/login", ("POST",))]["auth"] is False
    assert rows[("/api/status", ("GET",))]["who"] == "admin"
    assert rows[("/v1/chat/completions", ("POST",))]["who"] == "user or API key"
    assert rows[("/users/me", ("GET",))]["tags"] == ["users"]
    assert rows[("/chat/ws", ("GET",))]["who"] == "user or API key"


async def test_status_is_for_admins(app, client, alice):
    assert (await client.get("/api/status")).status_code == 401
    assert (await client.get("/api/status", headers=alice["headers"])).status_code == 403
    admin = await make_admin(app, client)
    for _ in range(3):
        await client.get("/users/me", headers=admin)
    status = (await client.get("/api/status", headers=admin)).json()
    assert status["requests"] >= 4
    assert status["routes"]["GET /users/me"]["count"] >= 3
    assert status["routes"]["GET /users/me"]["p50_ms"] > 0
    assert status["active_streams"] == 0
    assert "smollm2" in status["models"]
    assert status["process"]["rss_bytes"] > 10_000_000
    assert "pool" in status["database"]


async def test_metrics_by_route_template(client, alice):
    before = samples((await client.get("/metrics")).text, "vektor_http_requests_total")
    await client.get("/users/me", headers=alice["headers"])
    await client.get("/chat/history/00000000-0000-0000-0000-000000000000", headers=alice["headers"])
    await client.get("/no/such/path/123")
    response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    after = samples(response.text, "vektor_http_requests_total")

    def grew(route, status, method="GET"):
        key = (("method", method), ("route", route), ("status", status))
        return after.get(key, 0) - before.get(key, 0)

    assert grew("/users/me", "200") == 1
    assert grew("/chat/history/{conversation_id}", "404") == 1  # the template, not the path
    assert grew("unmatched", "404") == 1
    assert not any(dict(k)["route"].startswith("/no/") for k in after)


async def test_metrics_token(database_url, tmp_path):
    import httpx
    from asgi_lifespan import LifespanManager

    from tests.conftest import make_settings
    from vektor.app import create_app

    app = create_app(make_settings(database_url, tmp_path, metrics_token="scrape-secret"))
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/metrics")).status_code == 401
            wrong = {"Authorization": "Bearer nope"}
            assert (await client.get("/metrics", headers=wrong)).status_code == 401
            right = {"Authorization": "Bearer scrape-secret"}
            assert (await client.get("/metrics", headers=right)).status_code == 200


async def test_chat_feeds_llm_token_and_stream_metrics(chat_harness, upstream):
    chat = await chat_harness([scripted(upstream, "chunks=3;text=a b c", name="metered")])
    before = (await chat.client.get("/metrics")).text
    status, _, _ = await chat.stream(
        {"model": "metered", "messages": [{"role": "user", "content": "hola"}]}
    )
    assert status == 200
    after = (await chat.client.get("/metrics")).text
    out = (("kind", "completion"), ("model", "metered"))
    tokens_before = samples(before, "vektor_tokens_total").get(out, 0)
    assert samples(after, "vektor_tokens_total")[out] - tokens_before == 3
    llm = samples(after, "vektor_llm_requests_total")
    assert any(dict(k)["model"] == "metered" and dict(k)["outcome"] == "success" for k in llm)
    assert samples(after, "vektor_active_streams") == {(): 0.0}


async def test_health_checks_redis_when_configured(database_url, tmp_path):
    import httpx
    from asgi_lifespan import LifespanManager

    from tests.conftest import make_settings
    from tests.support.upstream import free_port
    from vektor.app import create_app

    for redis_url, expected in (
        ("redis://127.0.0.1:6379/0", "ok"),
        (f"redis://127.0.0.1:{free_port()}/0", "down"),  # nothing listens there
    ):
        app = create_app(make_settings(database_url, tmp_path, redis_url=redis_url))
        async with LifespanManager(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.get("/health")
        assert response.status_code == 200  # Redis down degrades, it does not fail health
        assert response.json()["checks"]["redis"]["status"] == expected


async def test_rate_limit_rejections_are_counted(database_url, tmp_path):
    import httpx
    from asgi_lifespan import LifespanManager

    from tests.conftest import make_settings
    from vektor.app import create_app

    app = create_app(make_settings(database_url, tmp_path, rate_limit_auth="2/minute"))
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            before = samples(
                (await client.get("/metrics")).text, "vektor_rate_limit_rejections_total"
            )
            codes = [
                (
                    await client.post("/auth/login", data={"username": "x", "password": "y"})
                ).status_code
                for _ in range(3)
            ]
            after = samples(
                (await client.get("/metrics")).text, "vektor_rate_limit_rejections_total"
            )
    assert codes[-1] == 429
    grown = {k: after[k] - before.get(k, 0) for k in after}
    assert sum(grown.values()) >= 1
