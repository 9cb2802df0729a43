"""A toy chat model that repeats the last message word by word: the shape of a real one.

It follows the ``chat`` task contract (``localinfer.handlers.tasks``): the input is a
``GenerationRequest``; text deltas are emitted as they are "decoded" (one word per
token), generation stops at ``max_new_tokens``, at a stop string, or as soon as the
item is cancelled; the item finishes with a ``GenerationResult``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Sequence
from functools import partial
from pathlib import Path

from localinfer.errors import InvalidArguments
from localinfer.handlers.base import Handler, ModelSource, WorkItem
from localinfer.handlers.generation.constraints import refuse_unenforced
from localinfer.handlers.tasks import CHAT, FinishReason, GenerationRequest, GenerationResult


def _is_cancelled(item: WorkItem) -> bool:
    return item.cancelled


def _last_text(request: GenerationRequest) -> tuple[str, int]:
    """The text to repeat, and the prompt's size in tokens (words)."""
    if request.messages:
        users = [m for m in request.messages if m.get("role") == "user"] or list(request.messages)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in request.messages)
        return str(users[-1].get("content", "")), prompt_tokens
    prompt = request.prompt or ""
    return prompt, len(prompt.split())


class ParrotChatHandler(Handler):
    task = CHAT
    handler_name = "example-parrot"

    def __init__(self, source: ModelSource) -> None:
        self.source = source
        self.greeting = ""
        self.delay_s = 0.0

    def load(self, device: str) -> None:
        """Read the "weights" (a config file) from the model's location."""
        config = json.loads((Path(self.source.location) / "config.json").read_text())
        settings = {**config, **self.source.options}
        self.greeting = str(settings.get("greeting", ""))
        self.delay_s = float(settings.get("delay_s", 0.0))

    def process(self, items: Sequence[WorkItem]) -> None:
        for item in items:
            if item.cancelled:
                continue  # the worker ends cancelled items left unanswered
            try:
                stream = self.reply(item.payload, cancelled=partial(_is_cancelled, item))
                while True:
                    try:
                        item.emit(next(stream))
                    except StopIteration as end:
                        item.finish(end.value)
                        break
            except Exception as exc:  # fail this item only; the worker carries on
                item.fail(exc)

    def reply(
        self, request: GenerationRequest, cancelled: Callable[[], bool] = lambda: False
    ) -> Generator[str, None, GenerationResult]:
        """Yield the reply's text deltas; return how the generation ended."""
        if not isinstance(request, GenerationRequest):
            raise InvalidArguments(f"expected a GenerationRequest, got {type(request).__name__}")
        # a parrot cannot constrain its output: say so rather than ignore the field
        refuse_unenforced(request, "parrot")
        started = time.perf_counter()
        text, prompt_tokens = _last_text(request)
        words = ([self.greeting] if self.greeting else []) + text.split()
        prefill_ms = (time.perf_counter() - started) * 1e3
        decode_started = time.perf_counter()
        out = ""
        tokens = 0
        finish: FinishReason = "stop"
        for word in words:
            if tokens >= request.max_new_tokens:
                finish = "length"
                break
            if cancelled():
                break
            candidate = out + (" " if out else "") + word
            cut = min((i for s in request.stop if (i := candidate.find(s)) >= 0), default=-1)
            if cut >= 0:  # a stop string: emit what comes before it, then stop
                if cut > len(out):
                    yield candidate[len(out) : cut]
                out = candidate[:cut]
                break
            if self.delay_s:
                time.sleep(self.delay_s)
            yield candidate[len(out) :]
            out, tokens = candidate, tokens + 1
        return GenerationResult(
            text=out,
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            completion_tokens=tokens,
            prefill_ms=prefill_ms,
            decode_ms=(time.perf_counter() - decode_started) * 1e3,
        )
