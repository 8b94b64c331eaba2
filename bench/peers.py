"""Peers to measure Vektor against: LiteLLM's proxy on the same scripted upstream.

LiteLLM is never a dependency of Vektor, and Vektor never imports it: the benchmark runs its
proxy as a separate program. It is `litellm[proxy]==1.106.2`, the newest 1.x whose pinned
dependencies the package index here offers in full (1.106.3 and later pin a newer
`certifi`, `litellm-enterprise` or `litellm-proxy-extras` than it has). On first use it is
installed into a throw-away virtual environment outside the repo,
`$XDG_CACHE_HOME/vektor-bench/litellm-1.106.2` (`~/.cache/...` by default), with
`uv venv --python 3.11` and `uv pip install`, and reused afterwards (a marker file is
written after a successful install).

`litellm_proxy(upstream_base_url, model)` starts it with one model routed to the upstream
(a random master key, which this version requires, to be sent as `Peer.headers`; no
database; nothing fetched from the internet; request logging off), warms it up and stops
it by its pid afterwards. The smoke check sends one streaming and one non-streaming
request through it:

    uv run python -m bench.peers
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from bench.common import free_port, scripted_upstream, stop, wait_until_ok

VERSION = "1.106.2"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "vektor-bench"
VENV = CACHE / f"litellm-{VERSION}"
MARKER = VENV / ".vektor-bench-installed"
START_DEADLINE_S = 90.0
SCRIPT = "chunks=20;delay=0.01;text=word"  # the smoke check's upstream script

# LiteLLM's stream starts with a role chunk whose content is "", then sends each piece as
# compact JSON, `"content":"word"`, where the scripted upstream writes `"content": "word"`:
# this first-content marker matches both.
FIRST = re.compile(rb'"content": ?"[^"]')
DONE = b"data: [DONE]"

# Nothing fetched at run time (each has a bundled copy), and no per-request logging:
# LITELLM_LOG also sets uvicorn's level, so WARNING turns its access log off.
ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_LOG": "WARNING",
    "NO_COLOR": "1",
}


@dataclass
class Peer:
    """A running peer gateway, OpenAI-compatible at `base` + /v1."""

    name: str
    base: str
    port: int
    pid: int
    version: str
    headers: dict[str, str] = field(default_factory=dict)  # to send with each request


def _installed_version(python: Path) -> str | None:
    """The litellm version importable by `python`, or None if that fails."""
    probe = "import importlib.metadata as m; print(m.version('litellm'))"
    try:
        result = subprocess.run(
            [str(python), "-c", probe], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def ensure_litellm() -> Path:
    """LiteLLM's virtual environment, installed first if it is missing or broken."""
    python = VENV / "bin" / "python"
    if (
        MARKER.exists()
        and (VENV / "bin" / "litellm").exists()
        and _installed_version(python) == VERSION
    ):
        return VENV
    uv = shutil.which("uv")
    if uv is None:
        raise SystemExit("bench.peers needs `uv` on PATH (pip install uv)")
    print(f"installing litellm[proxy]=={VERSION} into {VENV} (once) ...", flush=True)
    started = time.monotonic()
    shutil.rmtree(VENV, ignore_errors=True)
    VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([uv, "venv", "--quiet", "--python", "3.11", str(VENV)], check=True)
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", str(python), f"litellm[proxy]=={VERSION}"],
        check=True,
    )
    if _installed_version(python) != VERSION:
        raise SystemExit(f"litellm {VERSION} did not install into {VENV}")
    MARKER.write_text(VERSION + "\n")
    print(f"installed litellm {VERSION} in {time.monotonic() - started:.1f}s", flush=True)
    return VENV


def _config(models: list[str], upstream_base_url: str) -> str:
    """The proxy's config: each model routed to the upstream (JSON is valid YAML)."""
    entries = [
        {
            "model_name": model,
            "litellm_params": {
                "model": f"openai/{model}",
                "api_base": upstream_base_url,
                "api_key": "sk-bench-dummy",
            },
        }
        for model in models
    ]
    return json.dumps({"model_list": entries}, indent=2) + "\n"


def _tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Stop the process group, then kill by pid any child that outlived its parent."""
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    stop(process)
    for child in children:  # psutil checks the pid was not reused
        with suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(children, timeout=grace)


def _wait_ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until /health/liveliness answers 200; show the log's tail if it dies or hangs."""
    try:
        wait_until_ok(f"{base}/health/liveliness", process, deadline_s=START_DEADLINE_S)
    except AssertionError as exc:
        raise SystemExit(f"litellm did not start ({exc}):\n{_tail(log)}") from None


def _warm(peer: Peer, model: str) -> None:
    """One streaming and one plain request, so first-call imports are not measured."""
    messages = [{"role": "user", "content": "warm-up"}]
    with httpx.Client(base_url=peer.base, headers=peer.headers, timeout=60) as client:
        for stream in (True, False):
            body = {"model": model, "stream": stream, "messages": messages}
            response = client.post("/v1/chat/completions", json=body)
            if response.status_code != 200:
                raise SystemExit(f"litellm warm-up: {response.status_code} {response.text[:300]}")


@contextmanager
def litellm_proxy(
    upstream_base_url: str, model: str | list[str], *, warm: bool = True
) -> Iterator[Peer]:
    """LiteLLM's proxy on a spare loopback port, serving `model` (one or several) from the upstream
    (whose base URL ends in /v1); stopped by its pid afterwards. With `warm`, one streaming
    and one plain request first: LiteLLM imports its provider code on the first call
    (~0.7 s), which would otherwise land in the first measurement."""
    models = [model] if isinstance(model, str) else list(model)
    venv = ensure_litellm()
    workdir = Path(tempfile.mkdtemp(prefix="vektor-bench-litellm-"))
    try:
        config = workdir / "config.yaml"
        config.write_text(_config(models, upstream_base_url))
        log = workdir / "litellm.log"
        port = free_port()
        key = "sk-" + secrets.token_hex(32)  # without one, this version refuses to start
        env = {**os.environ, **ENV, "LITELLM_MASTER_KEY": key}
        for name in ("DATABASE_URL", "PORT", "HOST", "NUM_WORKERS"):
            env.pop(name, None)  # Vektor's DATABASE_URL must not become LiteLLM's
        command = [
            str(venv / "bin" / "litellm"),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ]
        started = time.monotonic()
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_ready(base, process, log)
            ready = time.monotonic() - started
            auth = {"Authorization": f"Bearer {key}"}
            peer = Peer("litellm", base, port, process.pid, VERSION, auth)
            if warm:
                for each in models:
                    _warm(peer, each)
            print(
                f"litellm {VERSION} on :{port} (pid {process.pid}): answered in {ready:.1f}s"
                + (f", warmed up in {time.monotonic() - started - ready:.1f}s" if warm else ""),
                flush=True,
            )
            yield peer
        finally:
            _stop(process)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _check_stream(peer: Peer, expected: str) -> None:
    """One streaming request; the pieces must arrive as chunks, then [DONE]."""
    body = {"model": SCRIPT, "stream": True, "messages": [{"role": "user", "content": "Hola"}]}
    events: list[str] = []
    raw = b""
    started = time.perf_counter()
    first: float | None = None
    with (
        httpx.Client(timeout=30) as client,
        client.stream(
            "POST", f"{peer.base}/v1/chat/completions", json=body, headers=peer.headers
        ) as response,
    ):
        assert response.status_code == 200, response.read()
        content_type = response.headers.get("content-type", "")
        for chunk in response.iter_raw():
            raw += chunk
            if first is None and FIRST.search(raw):
                first = time.perf_counter() - started
        total = time.perf_counter() - started
    for block in raw.decode().split("\n\n"):
        if block.strip():
            events.append(block.strip())
    assert events[-1] == DONE.decode(), events[-3:]
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert all(e.startswith("data: ") for e in events), events
    assert all(c["object"] == "chat.completion.chunk" for c in chunks), chunks
    pieces = [
        c["choices"][0]["delta"].get("content") or ""
        for c in chunks
        if c.get("choices") and c["choices"][0].get("delta")
    ]
    text = "".join(pieces)
    assert text == expected, text
    with_content = [p for p in pieces if p]
    usage = [c for c in chunks if c.get("usage")]
    print(f"stream: {response.status_code} {content_type}; {len(chunks)} chunks + [DONE]")
    print(f"  {len(with_content)} content pieces, {text[:30]!r}...; usage chunks: {len(usage)}")
    print(f"  first content after {(first or 0) * 1000:.1f}ms, done after {total * 1000:.1f}ms")
    print(f"  first event: {events[0][:200]}")
    print(f"  second event: {events[1][:200]}")
    print(f"  last chunk: {events[-2][:200]}")


def _check_plain(peer: Peer, expected: str) -> None:
    """One non-streaming request; the whole text in one chat.completion."""
    body = {"model": SCRIPT, "messages": [{"role": "user", "content": "Hola"}]}
    response = httpx.post(
        f"{peer.base}/v1/chat/completions", json=body, headers=peer.headers, timeout=30
    )
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["object"] == "chat.completion", data
    text = data["choices"][0]["message"]["content"]
    assert text == expected, text
    print(
        f"plain: {response.status_code} object={data['object']} model={data['model']!r} "
        f"finish={data['choices'][0]['finish_reason']} usage={data.get('usage')}"
    )


def main() -> None:
    """Smoke check: scripted upstream, LiteLLM in front of it, two requests, all stopped."""
    with scripted_upstream() as (up_port, _):
        expected = " ".join(["word"] * 20)
        with litellm_proxy(f"http://127.0.0.1:{up_port}/v1", SCRIPT) as peer:
            _check_stream(peer, expected)
            _check_plain(peer, expected)
            print(f"peer: {peer.name} {peer.version} at {peer.base} (pid {peer.pid})")
    print("ok")


if __name__ == "__main__":
    main()
