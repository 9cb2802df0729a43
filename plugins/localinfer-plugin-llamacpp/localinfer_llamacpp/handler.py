"""Chat with a GGUF model through llama.cpp, following the ``chat`` task contract.

The messages are rendered with the model's own chat template (GGUF metadata, or the
``chat_template`` option), tokenized once so the prompt is counted exactly and checked
against the context, then generated with ``Llama.create_completion(stream=True)``: each
streamed piece is one text delta, and generation stops at the next piece once the item
is cancelled. One ``Llama`` per worker thread (it is not thread-safe, and needs no lock
here: a worker serves one request at a time).

Options (catalog entry or ``--models`` path): ``n_ctx`` (4096), ``n_threads``,
``n_gpu_layers`` (all on a GPU device, none on CPU), ``chat_template``, ``flash_attn``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from localinfer.errors import ConfigurationError, InvalidRequest
from localinfer.handlers.base import Handler, ModelSource, WorkItem
from localinfer.handlers.generation.constraints import refuse_unenforced
from localinfer.handlers.tasks import CHAT, GenerationRequest, GenerationResult

DEFAULT_CONTEXT = 4096


def gguf_file(source: ModelSource) -> Path:
    """The ``.gguf`` file of ``source``: its ``filename``, or the only one in its directory."""
    location = Path(source.location)
    if source.filename:
        return location / source.filename
    if location.is_file():
        return location
    found = sorted(location.glob("*.gguf"))
    if len(found) != 1:
        raise ConfigurationError(
            f"{location} holds {len(found)} .gguf files; name one (a path to the file)"
        )
    return found[0]


def _gpu_index(device: str) -> int:
    _, _, index = device.partition(":")
    return int(index) if index.isdigit() else 0


class LlamaCppChatHandler(Handler):
    task = CHAT
    handler_name = "llama-cpp"

    def __init__(self, source: ModelSource) -> None:
        self.source = source
        self.path = gguf_file(source)
        self.llm: Any = None
        self.formatter: Any = None
        self.context_length = DEFAULT_CONTEXT

    def load(self, device: str) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        options = dict(self.source.options)
        on_gpu = not device.startswith("cpu")
        self.context_length = int(options.get("n_ctx", DEFAULT_CONTEXT))
        self.llm = Llama(
            model_path=str(self.path),
            n_ctx=self.context_length,
            n_threads=options.get("n_threads"),
            n_gpu_layers=int(options.get("n_gpu_layers", -1 if on_gpu else 0)),
            main_gpu=_gpu_index(device),
            flash_attn=bool(options.get("flash_attn", False)),
            verbose=False,
        )
        template = options.get("chat_template") or self.llm.metadata.get("tokenizer.chat_template")
        if template:
            eos, bos = self.llm.token_eos(), self.llm.token_bos()
            self.formatter = Jinja2ChatFormatter(
                template=str(template),
                eos_token=self._token_text(eos),
                bos_token=self._token_text(bos),
                stop_token_ids=[eos],
            )

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return bytes(self.llm.detokenize([token], special=True)).decode("utf-8", "replace")

    def process(self, items: Sequence[WorkItem]) -> None:
        for item in items:
            if item.cancelled:
                continue
            try:
                self._generate(item)
            except Exception as exc:  # fail this item only; the worker carries on
                item.fail(exc)

    def encode(self, request: GenerationRequest) -> tuple[list[int], list[str], Any]:
        """The prompt's tokens, the template's stop strings and stopping criteria."""
        if not isinstance(request, GenerationRequest):
            raise InvalidRequest(
                f"{self.handler_name} takes a GenerationRequest, not {type(request).__name__}"
            )
        refuse_unenforced(request, self.handler_name)  # until issue 17 enforces them
        stop: list[str] = list(request.stop)
        criteria = None
        if request.messages is not None:
            if self.formatter is None:
                raise InvalidRequest(
                    "this model has no chat template; send a plain prompt, or set the "
                    "chat_template option",
                    param="messages",
                )
            try:
                formatted = self.formatter(messages=[dict(m) for m in request.messages])
            except Exception as exc:  # a template raising on purpose, or jinja's errors
                raise InvalidRequest(
                    f"the model's chat template rejected the messages: {exc}", param="messages"
                ) from exc
            text, add_bos = formatted.prompt, not formatted.added_special
            extra = [formatted.stop] if isinstance(formatted.stop, str) else formatted.stop
            stop += [s for s in extra or [] if s]
            criteria = formatted.stopping_criteria
        elif request.prompt is not None:
            text, add_bos = request.prompt, True
        else:
            raise InvalidRequest("a generation request needs messages or a prompt")
        tokens = list(self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))
        if not tokens:
            raise InvalidRequest("the prompt is empty", param="prompt")
        if request.max_new_tokens < 1:
            raise InvalidRequest("max_new_tokens must be at least 1", param="max_tokens")
        total = len(tokens) + request.max_new_tokens
        if total > self.context_length:
            raise InvalidRequest(
                f"the prompt has {len(tokens)} tokens and max_tokens is "
                f"{request.max_new_tokens}: {total} tokens exceed this model's context of "
                f"{self.context_length} tokens",
                param="max_tokens",
                code="context_length_exceeded",
            )
        return tokens, stop, criteria

    def _generate(self, item: WorkItem) -> None:
        request: GenerationRequest = item.payload
        tokens, stop, criteria = self.encode(request)
        started = time.perf_counter()
        first_at: float | None = None
        pieces: list[str] = []
        finish = "stop"
        stream = self.llm.create_completion(
            prompt=tokens,
            max_tokens=request.max_new_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            stop=stop,
            stopping_criteria=criteria,
            seed=request.seed,
            stream=True,
        )
        try:
            for chunk in stream:
                choice = chunk["choices"][0]
                if choice["text"]:
                    if first_at is None:
                        first_at = time.perf_counter()
                    pieces.append(choice["text"])
                    item.emit(choice["text"])
                finish = choice.get("finish_reason") or finish
                if item.cancelled:
                    break
        finally:
            stream.close()  # stops generation at once when the caller has gone
        ended = time.perf_counter()
        text = "".join(pieces)
        first_at = first_at or ended
        item.finish(
            GenerationResult(
                text=text,
                finish_reason="length" if finish == "length" else "stop",
                prompt_tokens=len(tokens),
                completion_tokens=len(self.llm.tokenize(text.encode("utf-8"), add_bos=False)),
                prefill_ms=(first_at - started) * 1e3,
                decode_ms=(ended - first_at) * 1e3,
            )
        )

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()
            self.llm = None
