"""Deterministic stand-ins for model handlers: a chat model that streams words slowly and
records where it stopped, so tests can see a cancellation reach the worker."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from localinfer.handlers.base import Handler, WorkItem
from localinfer.handlers.tasks import GenerationRequest, GenerationResult


class SlowChat(Handler):
    """Chat task: emits ``w0 w1 ...`` (one word per ``delay_s``), up to ``max_new_tokens``."""

    task = "chat"
    name = "slow-chat"

    def __init__(self, delay_s: float = 0.01) -> None:
        self.delay_s = delay_s
        #: words emitted by each request that ended early (cancelled)
        self.stopped_after: list[int] = []
        self.stopped = threading.Event()

    def process(self, items: Sequence[WorkItem]) -> None:
        for item in items:
            request: GenerationRequest = item.payload
            prompt = sum(len(str(m["content"]).split()) for m in request.messages or ())
            started = time.perf_counter()
            words: list[str] = []
            for index in range(request.max_new_tokens):
                if item.cancelled:
                    self.stopped_after.append(len(words))
                    self.stopped.set()
                    break
                words.append(f"w{index} ")
                item.emit(words[-1])
                time.sleep(self.delay_s)
            else:
                item.finish(
                    GenerationResult(
                        text="".join(words),
                        finish_reason="length",
                        prompt_tokens=prompt,
                        completion_tokens=len(words),
                        prefill_ms=0.5,
                        decode_ms=(time.perf_counter() - started) * 1e3,
                    )
                )
