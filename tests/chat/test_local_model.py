"""The built-in model end to end: no configuration at all, real llama.cpp inference."""

import asyncio

from tests.conftest import login, make_settings, register


async def test_local_model_answers_with_no_configuration(database_url, tmp_path):
    import httpx
    from asgi_lifespan import LifespanManager

    from tests.conftest import empty_tables
    from vektor.app import create_app

    # No model_configs.json in the config folder: the built-in model is the default.
    app = create_app(make_settings(database_url, tmp_path, vektor_config_dir=tmp_path / "none"))
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as c:
            await register(c, "local")
            headers = {"Authorization": f"Bearer {(await login(c, 'local'))['access_token']}"}
            models = (await c.get("/chat/models", headers=headers)).json()
            assert models == [
                {
                    "name": "smollm2",
                    "provider": "local",
                    "streaming": True,
                    "description": "SmolLM2 135M Instruct, runs on this machine",
                }
            ]

            async def ask(question):
                from tests.conftest import collect_stream

                return await collect_stream(
                    c,
                    "POST",
                    "/chat/stream",
                    headers=headers,
                    json={
                        "model": "smollm2",
                        "max_tokens": 24,
                        "temperature": 0,
                        "messages": [{"role": "user", "content": question}],
                    },
                )

            # Two at once: they queue on the model thread instead of crashing.
            (s1, e1, _), (s2, e2, _) = await asyncio.gather(
                ask("What is the capital of France?"), ask("Say hello.")
            )
            for status, events in ((s1, e1), (s2, e2)):
                assert status == 200
                deltas = [e["content"] for e in events if e["type"] == "delta"]
                assert deltas
                assert "".join(deltas).strip()
                usage = next(e for e in events if e["type"] == "usage")
                assert 0 < usage["completion_tokens"] <= 24
                assert usage["prompt_tokens"] > 0
                assert events[-1]["finish_reason"] in ("stop", "length")
            stored = (
                await c.get(f"/chat/history/{e1[0]['conversation_id']}", headers=headers)
            ).json()
            answer = "".join(e["content"] for e in e1 if e["type"] == "delta")
            assert stored["messages"][-1]["content"] == answer
            assert app.state.vektor.balancer.local_model.loaded
        await empty_tables(app)
