"""Chat with a GGUF model through llama.cpp, following the ``chat`` task contract.

The messages are rendered with the model's own chat template (GGUF metadata, or the
``chat_template`` option) and tokenized once, so the prompt is counted exactly and
checked against the context; the request then joins the
:class:`~localinfer_llamacpp.engine.BatchedEngine`, which decodes every request in flight
together in one llama.cpp context. The worker thread only prepares and queues: the
handler advertises ``max_in_flight`` (the engine's slots) so the runtime keeps that many
requests in flight.

Options (catalog entry or ``--models`` path): ``n_ctx`` (KV cells, split evenly between the
sequences, 8192), ``parallel`` (sequences decoded together, 4), ``n_batch`` (512),
``n_threads`` (one-token decodes) and ``n_threads_batch`` (several sequences or a prompt;
``n_threads`` when only that is given): unset, each decode runs on every core or every
core but one, whichever is faster at the time (:mod:`localinfer_llamacpp.threads`),
``n_gpu_layers`` (all on a GPU device, none on CPU), ``chat_template``,
``flash_attn`` (unset or ``None``: llama.cpp decides, on where the device has the kernel),
``prompt_cache_mib`` (host memory for the KV cells of conversations whose slot went to
another, 256; 0 turns it off).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path
from typing import Any

from localinfer.errors import ConfigurationError, InvalidRequest
from localinfer.handlers.base import CacheUsage, Handler, ModelSource, WorkItem
from localinfer.handlers.generation.constraints import refuse_unenforced
from localinfer.handlers.generation.logprobs import LogprobRecorder
from localinfer.handlers.generation.sequence import Generation, check_fits_context
from localinfer.handlers.generation.tool_calls import (
    HERMES,
    ToolCallFormat,
    calls_tools,
    format_for_template,
    messages_for_template,
    with_tool_constraint,
)
from localinfer.handlers.tasks import CHAT, GenerationRequest
from localinfer.slower_path import take_slower_path
from localinfer_llamacpp.constraints import constraint_sampler
from localinfer_llamacpp.engine import BatchedEngine
from localinfer_llamacpp.model import ContextSettings, GgufModel, gpu_offload_supported
from localinfer_llamacpp.sampling import SamplerChain

logger = logging.getLogger(__name__)

DEFAULT_CONTEXT = 8192
DEFAULT_PARALLEL = 4
#: what /health, /v1/models, /v1/stats and the TUI show as a model's engine
ENGINE = "llama.cpp (batched)"
#: the same, where a GPU device was asked of a build without GPU offload (allowed slower path)
CPU_ENGINE = "llama.cpp (batched, CPU: this llama-cpp-python has no GPU offload)"


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


def _installed_version() -> str:
    try:
        return version("llama-cpp-python")
    except PackageNotFoundError:
        return "(version unknown)"


def _llama_cpp_requirement() -> str:
    """This plugin's own requirement on llama-cpp-python (its pyproject.toml, installed)."""
    try:
        declared = requires("localinfer-plugin-llamacpp") or []
    except PackageNotFoundError:
        declared = []
    return next((r for r in declared if r.startswith("llama-cpp-python")), "llama-cpp-python")


def _gpu_index(device: str) -> int:
    _, _, index = device.partition(":")
    return int(index) if index.isdigit() else 0


def context_settings(options: dict[str, Any], device: str) -> ContextSettings:
    """The shared context's settings from the model's options, for ``device``."""
    on_gpu = not device.startswith("cpu")
    flash = options.get("flash_attn")
    threads = options.get("n_threads")
    threads_batch = options.get("n_threads_batch")
    return ContextSettings(
        n_ctx=int(options.get("n_ctx", DEFAULT_CONTEXT)),
        n_seq=max(1, int(options.get("parallel", DEFAULT_PARALLEL))),
        n_batch=int(options.get("n_batch", 512)),
        n_threads=int(threads) if threads else None,
        n_threads_batch=int(threads_batch) if threads_batch else None,
        n_gpu_layers=int(options.get("n_gpu_layers", -1 if on_gpu else 0)),
        main_gpu=_gpu_index(device),
        flash_attn=None if flash is None else bool(flash),
        prompt_cache_mib=int(options.get("prompt_cache_mib", ContextSettings.prompt_cache_mib)),
    )


class LlamaCppChatHandler(Handler):
    task = CHAT
    handler_name = "llama-cpp"
    engine = ENGINE

    def __init__(self, source: ModelSource) -> None:
        self.source = source
        self.path = gguf_file(source)
        self.model: GgufModel | None = None
        self.batcher: BatchedEngine | None = None
        self.formatter: Any = None
        self.context_length = DEFAULT_CONTEXT
        #: how this model family writes tool calls, and whether its template renders tools
        self.tool_format: ToolCallFormat = HERMES
        self.renders_tools = False

    def load(self, device: str) -> None:
        options = dict(self.source.options)
        settings = context_settings(options, device)
        self.engine = ENGINE
        if settings.n_gpu_layers and not device.startswith("cpu") and not gpu_offload_supported():
            take_slower_path(
                f"{self.path.name} was asked to run on {device}, but llama-cpp-python "
                f"{_installed_version()} was built without GPU offload",
                install='Install a GPU build (for CUDA: CMAKE_ARGS="-DGGML_CUDA=on" pip install '
                f"--force-reinstall --no-cache-dir '{_llama_cpp_requirement()}')",
                slower="run it on the CPU (many times slower)",
            )
            settings = dataclasses.replace(settings, n_gpu_layers=0)
            self.engine = CPU_ENGINE
        self.model = model = GgufModel(self.path, settings)
        self.context_length = model.n_ctx_seq
        template = options.get("chat_template") or model.chat_template()
        self.tool_format, self.renders_tools = format_for_template(
            str(template) if template else None
        )
        if template:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            eos, bos = model.eos_id(), model.bos_id()
            self.formatter = Jinja2ChatFormatter(
                template=str(template),
                eos_token=model.token_text(eos),
                bos_token=model.token_text(bos),
                stop_token_ids=[eos],
            )
        self.batcher = BatchedEngine(model)
        self.max_in_flight = self.batcher.max_in_flight

    def process(self, items: Sequence[WorkItem]) -> None:
        """Queue the items with the engine, all at once (their prompts then share a
        decode); a bad item fails alone, before any output."""
        assert self.batcher is not None, "load() first"
        ready: list[tuple[Generation, SamplerChain]] = []
        for item in items:
            if item.cancelled:
                item.finish(None)
                continue
            try:
                generation = self.prepare(item)
                ready.append((generation, self._sampler(generation)))
            except Exception as exc:
                item.fail(exc)
        if not ready:
            return
        try:
            self.batcher.submit_all(ready)
        except Exception as exc:
            for generation, _ in ready:
                generation.item.fail(exc)

    def prepare(self, item: WorkItem) -> Generation:
        """Validate and tokenize one request; the template's stop strings join the request's."""
        model = self.model
        assert model is not None, "load() first"
        request = item.payload
        if not isinstance(request, GenerationRequest):
            raise InvalidRequest(
                f"{self.handler_name} takes a GenerationRequest, not {type(request).__name__}"
            )
        calling = calls_tools(request)
        request = with_tool_constraint(request, self.tool_format)
        tokens, stop = self.encode(request)
        request = dataclasses.replace(request, stop=tuple(dict.fromkeys((*request.stop, *stop))))
        return Generation(
            item,
            request,
            tokens,
            model.detokenize,
            model.eog_ids,
            logprobs=(
                LogprobRecorder(request.logprobs, model.detokenize)
                if request.logprobs is not None
                else None
            ),
            tool_format=self.tool_format if calling else None,
        )

    def encode(self, request: GenerationRequest) -> tuple[list[int], list[str]]:
        """The prompt's tokens and the chat template's stop strings."""
        model = self.model
        assert model is not None, "load() first"
        if not isinstance(request, GenerationRequest):
            raise InvalidRequest(
                f"{self.handler_name} takes a GenerationRequest, not {type(request).__name__}"
            )
        # grammars (response_format, required/named tools) run per sequence in C; logprobs
        # are read from the rows of the sequences that ask (localinfer_llamacpp.logprobs)
        refuse_unenforced(request, self.handler_name, constraint=True, logprobs=True, tools=True)
        stop: list[str] = []
        if request.messages is not None:
            if self.formatter is None:
                raise InvalidRequest(
                    "this model has no chat template; send a plain prompt, or set the "
                    "chat_template option",
                    param="messages",
                )
            tools = request.tools if calls_tools(request) else None
            messages = messages_for_template(
                request.messages, tools, self.tool_format, self.renders_tools
            )
            try:
                formatted = self.formatter(
                    messages=messages,
                    **({"tools": [dict(t) for t in tools]} if tools and self.renders_tools else {}),
                )
            except Exception as exc:  # a template raising on purpose, or jinja's errors
                raise InvalidRequest(
                    f"the model's chat template rejected the messages: {exc}", param="messages"
                ) from exc
            text, add_special = formatted.prompt, not formatted.added_special
            extra = [formatted.stop] if isinstance(formatted.stop, str) else formatted.stop
            stop += [s for s in extra or [] if s]
        elif request.prompt is not None:
            text, add_special = request.prompt, True
        else:
            raise InvalidRequest("a generation request needs messages or a prompt")
        tokens = model.tokenize(text, add_special=add_special)
        if not tokens:
            raise InvalidRequest("the prompt is empty", param="prompt")
        if request.max_new_tokens < 1:
            raise InvalidRequest("max_new_tokens must be at least 1", param="max_tokens")
        check_fits_context(len(tokens), request.max_new_tokens, self.context_length)
        return tokens, stop

    def _sampler(self, generation: Generation) -> SamplerChain:
        model = self.model
        assert model is not None
        request = generation.request
        grammar = constraint_sampler(model, request.constraint)
        sampler = SamplerChain(model.lib, request, model.n_vocab, grammar)
        if generation.logprobs is not None:
            try:
                sampler.record_logprobs(generation.logprobs)
            except BaseException:
                sampler.close()
                raise
        return sampler

    def cache_usage(self) -> dict[str, CacheUsage]:
        batcher = self.batcher
        return {} if batcher is None else {"prompt_cache": batcher.cache.usage()}

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
            self.batcher = None
        if self.model is not None:
            self.model.close()
            self.model = None
