"""Chat and text completion with any transformers causal LM, streamed token by token.

Two ways to run, picked at load time:

- **sequential** (the default on CPU): ``model.generate`` serves one request at a time. A
  stopping criterion sees each token the moment it is sampled, decodes it incrementally,
  streams the stable text and decides whether to stop (EOS, a stop string, the length
  limit, or a cancelled caller).
- **continuous batching** (the default on CUDA): transformers' ``ContinuousBatchingManager``
  runs one background loop that batches every in-flight request per forward pass.
  ``process`` only queues requests; a reader thread owned by the handler turns the
  manager's per-token outputs into ``emit`` / ``finish`` calls. The worker keeps up to
  ``max_in_flight`` requests in flight.

Both ways share the per-request bookkeeping (:class:`_Generation`): prompt building, the
context check, incremental detokenisation, stop strings, token counts and timings, so a
request gets the same text either way.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from localinfer.errors import ConfigurationError, HandlerFailed, InvalidRequest
from localinfer.handlers.base import Handler, ModelSource, WorkItem
from localinfer.handlers.tasks import CHAT, FinishReason, GenerationRequest, GenerationResult

if TYPE_CHECKING:
    import torch
    from transformers import (
        GenerationConfig,
        GenerationMixin,
        PreTrainedModel,
        PreTrainedTokenizerBase,
    )
    from transformers.generation.continuous_batching import ContinuousBatchingManager
    from transformers.generation.continuous_batching.requests import GenerationOutput

logger = logging.getLogger(__name__)

#: tokenizers without a known limit report this (transformers' VERY_LARGE_INTEGER)
_NO_LIMIT = 10**29
#: KV-cache budget of a continuous-batching engine on CPU (see ``_size_cache``)
_CPU_KV_CACHE_GIB = 1.0
#: tokens per forward pass on CPU (long prompts are prefilled in chunks of this size)
_CPU_MAX_BATCH_TOKENS = 1024
#: the cache is sized for requests up to this long, however long the model's context
_MAX_CACHED_CONTEXT = 32_768


class TransformersChatHandler(Handler):
    """``chat`` handler for transformers causal LMs (safetensors or GGUF weights).

    Options (``source.options``):

    - ``dtype``: ``"float32"``, ``"bfloat16"``, ``"float16"``, ``"auto"`` (default: float32 on
      CPU, bfloat16 on CUDA).
    - ``attn_implementation``: passed to ``from_pretrained`` (``"sdpa"``, ``"flash_attention_2"``,
      ...); continuous batching is much faster with a flash implementation.
    - ``cudnn_attention``: keep torch's cuDNN SDPA backend on (default off on CUDA: it
      re-plans for every new sequence length, see ``_avoid_cudnn_attention``).
    - ``continuous_batching``: ``True`` / ``False`` (default: on for CUDA when the model
      supports it; off on CPU, where one request at a time decodes ~2x faster through
      ``generate`` and a desktop rarely has many users; turn it on to serve several).
    - ``max_in_flight``: requests served at once with continuous batching (32 CUDA, 8 CPU).
    - ``kv_cache_gib``: the continuous-batching KV cache's budget (1 GiB on CPU, half the
      free GPU memory on CUDA); the cache holds ``max_in_flight`` full-context requests
      when the budget allows.
    - ``continuous_batching_config``: keyword arguments for transformers'
      ``ContinuousBatchingConfig`` (``num_blocks``, ``max_batch_tokens``, ``page_size``, ...).
    - ``context_length``: override the context limit read from the model and tokenizer.
    - ``gguf_cache``: for a ``.gguf`` source, dequantise once and load the cached dense copy
      (default ``True``, see :mod:`localinfer.handlers.gguf_cache`); ``False`` has
      transformers read the ``.gguf`` itself at every load.
    """

    task = CHAT
    handler_name = "transformers-chat"

    def __init__(self, source: ModelSource) -> None:
        self.source = source
        self.device = "cpu"
        self.model: PreTrainedModel | None = None
        self.tokenizer: PreTrainedTokenizerBase | None = None
        #: prompt + completion tokens the model can attend to; ``None`` if unknown
        self.context_length: int | None = None
        self.eos_token_ids: frozenset[int] = frozenset()
        self._pad_token_id: int | None = None
        self._engine: _ContinuousBatchingEngine | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def continuous_batching(self) -> bool:
        """True when requests are served by transformers' continuous-batching manager."""
        return self._engine is not None

    def load(self, device: str) -> None:
        """Load tokenizer and model from the local directory or the local HF cache."""
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils.import_utils import is_accelerate_available

        source, options = self.source, self.source.options
        self.device = device
        if device.startswith("cuda") and not options.get("cudnn_attention", False):
            _avoid_cudnn_attention()
        dtype = _resolve_dtype(options.get("dtype"), device)
        location, revision, gguf_file = source.location, source.revision, None
        if source.filename and source.filename.endswith(".gguf"):
            if options.get("gguf_cache", True):
                location, revision = _dense_copy_of_gguf(source, dtype), None
            else:
                gguf_file = source.filename
        common: dict[str, Any] = {
            "revision": revision,
            "trust_remote_code": source.trust_remote_code,
            # a repo id is read from the local cache only: downloading is the hub layer's job
            "local_files_only": not Path(location).is_dir(),
        }
        if gguf_file:
            common["gguf_file"] = gguf_file
        self.tokenizer = AutoTokenizer.from_pretrained(location, **common)
        if options.get("attn_implementation"):
            common["attn_implementation"] = options["attn_implementation"]
        # loading straight onto the device needs accelerate; without it, load then move
        direct = is_accelerate_available()
        model = AutoModelForCausalLM.from_pretrained(
            location, dtype=dtype, device_map=device if direct else None, **common
        )
        if not direct:
            model.to(device)  # type: ignore[arg-type]  # (transformers' wrapper mistypes it)
        model.eval()  # type: ignore[no-untyped-call]
        self.model = model

        self.context_length = _context_length(self.model, self.tokenizer, options)
        self.eos_token_ids = _eos_token_ids(self.model, self.tokenizer)
        pad = self.model.generation_config.pad_token_id
        if pad is None:
            pad = self.tokenizer.pad_token_id
        self._pad_token_id = pad if pad is not None else min(self.eos_token_ids, default=None)

        wanted = options.get("continuous_batching")
        if wanted is None:
            wanted = device.startswith("cuda")
        if wanted:
            try:
                self._engine = _ContinuousBatchingEngine.start(self, options)
            except Exception as exc:
                if options.get("continuous_batching"):
                    raise ConfigurationError(
                        f"continuous batching does not work for {source.location}: {exc}"
                    ) from exc
                logger.warning(
                    "%s: continuous batching unavailable (%s); serving one request at a time",
                    source.location,
                    exc,
                )
        if self._engine is not None:
            self.max_in_flight = self._engine.max_in_flight
        logger.info(
            "loaded %s on %s (%s, context %s, %s)",
            source.location,
            device,
            self.model.dtype,
            self.context_length,
            f"continuous batching x{self.max_in_flight}" if self._engine else "sequential",
        )

    def close(self) -> None:
        """Stop the engine and free the weights (and the CUDA cache they used)."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        self.model = None
        self.tokenizer = None
        gc.collect()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    # -- serving ---------------------------------------------------------------------------

    def process(self, items: Sequence[WorkItem]) -> None:
        """Start (continuous batching) or run (sequential) each item; a bad item fails alone."""
        for item in items:
            if item.cancelled:
                item.finish(None)
                continue
            try:
                generation = self._prepare(item)
                if self._engine is not None and not generation.needs_own_generator:
                    self._engine.submit(generation)
                elif self._engine is not None:
                    # the engine samples every request from one shared RNG; a seeded request
                    # gets its own generator by running alone while the engine waits
                    with self._engine.paused():
                        self._generate(generation)
                else:
                    self._generate(generation)
            except Exception as exc:
                _release_cuda_memory_after(exc, self.device)
                item.fail(exc)

    def _prepare(self, item: WorkItem) -> _Generation:
        """Validate and tokenize one request (raising ``InvalidRequest`` before any output)."""
        request = item.payload
        if not isinstance(request, GenerationRequest):
            raise InvalidRequest(
                f"{self.handler_name} takes a GenerationRequest, not {type(request).__name__}"
            )
        if request.max_new_tokens < 1:
            raise InvalidRequest("max_new_tokens must be at least 1", param="max_tokens")
        prompt_ids = self.encode_prompt(request)
        limit = self.context_length
        total = len(prompt_ids) + request.max_new_tokens
        if limit is not None and total > limit:
            raise InvalidRequest(
                f"the prompt has {len(prompt_ids)} tokens and max_tokens is "
                f"{request.max_new_tokens}: {total} tokens exceed this model's context of "
                f"{limit} tokens",
                param="max_tokens",
                code="context_length_exceeded",
            )
        assert self.tokenizer is not None
        return _Generation(item, request, prompt_ids, self.tokenizer, self.eos_token_ids)

    def encode_prompt(self, request: GenerationRequest) -> list[int]:
        """The prompt's token ids: the chat template for messages, plain text otherwise."""
        tokenizer = self.tokenizer
        assert tokenizer is not None, "load() first"
        if request.messages is not None:
            if not getattr(tokenizer, "chat_template", None):
                raise InvalidRequest(
                    "this model has no chat template; send a plain prompt instead", param="messages"
                )
            try:
                text = tokenizer.apply_chat_template(
                    [dict(message) for message in request.messages],
                    add_generation_prompt=True,
                    tokenize=False,
                )
            except Exception as exc:  # jinja's TemplateError, or a template raising on purpose
                raise InvalidRequest(
                    f"the model's chat template rejected the messages: {exc}", param="messages"
                ) from exc
            # the template already placed any BOS it wants
            ids = tokenizer(str(text), add_special_tokens=False)["input_ids"]
        elif request.prompt is not None:
            ids = tokenizer(request.prompt)["input_ids"]
        else:
            raise InvalidRequest("a generation request needs messages or a prompt")
        if not ids:
            raise InvalidRequest("the prompt is empty", param="prompt")
        return list(ids)

    def _generate(self, generation: _Generation) -> None:
        """Run one request through ``model.generate``, streaming as it goes."""
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        model = self.model
        assert model is not None
        request = generation.request
        input_ids = torch.tensor([generation.prompt_ids], device=model.device)
        processors = LogitsProcessorList(_sampling_processors(request))
        generation.start()
        with torch.inference_mode():
            cast("GenerationMixin", model).generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=request.max_new_tokens,
                # sampling happens in our processors (with a per-request generator), so
                # generate() itself only ever takes the one token left standing
                do_sample=False,
                num_beams=1,
                logits_processor=processors,
                stopping_criteria=StoppingCriteriaList([_StreamEachToken(generation)]),
                eos_token_id=sorted(self.eos_token_ids) or None,
                pad_token_id=self._pad_token_id,
            )
        generation.finish()


# -- per-request bookkeeping -------------------------------------------------------------------


class _Generation:
    """One request's progress: decode each new token, stream stable text, decide when to stop."""

    def __init__(
        self,
        item: WorkItem,
        request: GenerationRequest,
        prompt_ids: list[int],
        tokenizer: PreTrainedTokenizerBase,
        eos_token_ids: frozenset[int],
    ) -> None:
        self.item = item
        self.request = request
        self.prompt_ids = prompt_ids
        self.completion_tokens = 0
        self.finish_reason: FinishReason | None = None
        self._eos = eos_token_ids
        self._decoder = _IncrementalDecoder(tokenizer)
        self._text = _StopStringFilter(request.stop)
        self._started = time.perf_counter()
        self._first_token_at: float | None = None

    @property
    def needs_own_generator(self) -> bool:
        """Seeded sampling: reproducible only with a generator of its own."""
        return self.request.seed is not None and self.request.temperature > 0

    @property
    def stopped(self) -> bool:
        return self.finish_reason is not None

    def start(self) -> None:
        """Generation begins now: ``prefill_ms`` counts from here, tokenization excluded."""
        self._started = time.perf_counter()

    def on_token(self, token_id: int) -> bool:
        """Take one generated token; stream the text it settles; True once generation must stop."""
        if self.finish_reason is not None:
            return True
        if self._first_token_at is None:
            self._first_token_at = time.perf_counter()
        self.completion_tokens += 1
        if token_id in self._eos:
            self.finish_reason = "stop"
            return True
        self._send(self._text.push(self._decoder.push(token_id)))
        if self._text.matched:
            self.finish_reason = "stop"
        elif self.completion_tokens >= self.request.max_new_tokens:
            self.finish_reason = "length"
        elif self.item.cancelled:
            self.finish_reason = "stop"
        return self.finish_reason is not None

    def finish(self) -> None:
        """Flush what was held back and finish the item with its result."""
        if self.item.done:
            return
        now = time.perf_counter()
        if self.finish_reason is None:  # the engine ended it without us seeing why
            at_limit = self.completion_tokens >= self.request.max_new_tokens
            self.finish_reason = "length" if at_limit else "stop"
        if not self._text.matched:
            self._send(self._text.push(self._decoder.flush()) + self._text.flush())
        first = self._first_token_at if self._first_token_at is not None else now
        self.item.finish(
            GenerationResult(
                text=self._text.released,
                finish_reason=self.finish_reason,
                prompt_tokens=len(self.prompt_ids),
                completion_tokens=self.completion_tokens,
                prefill_ms=(first - self._started) * 1e3,
                decode_ms=(now - first) * 1e3,
            )
        )

    def _send(self, text: str) -> None:
        if text and not self.item.done:
            self.item.emit(text)


class _IncrementalDecoder:
    """Token ids in, text out, releasing only text that later tokens cannot change.

    Decodes a short window (the tokens since the last release plus the ones before them,
    so tokenizers that strip a leading space at a sequence start behave) and holds back
    while the window ends in an incomplete UTF-8 sequence. Cost per token is constant.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix = 0  # window start
        self._read = 0  # tokens before this are already released

    def push(self, token_id: int) -> str:
        self._ids.append(token_id)
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self._ids)
            return after[len(before) :]
        return ""

    def flush(self) -> str:
        """Release the rest, incomplete characters included (generation is over)."""
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        self._prefix = self._read = len(self._ids)
        return after[len(before) :] if len(after) > len(before) else ""

    def _decode(self, ids: list[int]) -> str:
        if not ids:
            return ""
        return str(
            self._tokenizer.decode(
                ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
            )
        )


class _StopStringFilter:
    """Releases text up to the first stop string, never the stop string or what follows.

    The longest tail that could still grow into a stop string is held back until the
    next piece of text settles it.
    """

    def __init__(self, stops: Iterable[str]) -> None:
        self._stops = tuple(stop for stop in stops if stop)
        self._longest = max((len(stop) for stop in self._stops), default=0)
        self._text = ""
        self._released = 0
        self.matched = False

    @property
    def released(self) -> str:
        return self._text[: self._released]

    def push(self, piece: str) -> str:
        if self.matched or not piece:
            return ""
        self._text += piece
        start = self._released
        if not self._stops:
            self._released = len(self._text)
            return self._text[start:]
        # nothing before ``_released`` can start a stop string: that tail was held back
        hits = [i for i in (self._text.find(stop, start) for stop in self._stops) if i >= 0]
        if hits:
            self.matched = True
            self._released = min(hits)
            return self._text[start : self._released]
        self._released = len(self._text) - self._held_back(start)
        return self._text[start : self._released]

    def flush(self) -> str:
        """Release the held-back tail: no stop string can complete any more."""
        if self.matched:
            return ""
        start, self._released = self._released, len(self._text)
        return self._text[start:]

    def _held_back(self, start: int) -> int:
        """Length of the longest tail (after ``start``) that is a prefix of a stop string."""
        for size in range(min(self._longest - 1, len(self._text) - start), 0, -1):
            tail = self._text[-size:]
            if any(stop.startswith(tail) for stop in self._stops):
                return size
        return 0


class _StreamEachToken:
    """A generate() stopping criterion that feeds each sampled token to its :class:`_Generation`.

    A stopping criterion rather than a ``BaseStreamer``: generate() calls its stopping
    criteria for a token before it hands that token to the streamer, so a streamer that
    spots a stop string could only stop generation one (wasted) forward pass later.
    (generate() takes any callable with ``StoppingCriteria``'s signature; not subclassing
    it keeps this module free of torch until a model loads.)
    """

    def __init__(self, generation: _Generation) -> None:
        self._generation = generation

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor | None, **kwargs: object
    ) -> torch.BoolTensor:
        import torch

        stop = self._generation.on_token(int(input_ids[0, -1]))
        return torch.full(  # type: ignore[return-value]
            (input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device
        )


class _SampleWithOwnGenerator:
    """A logits processor that draws the next token from the request's own generator.

    It leaves only the drawn token standing, so generate() (run greedy) takes it. generate()
    would sample from torch's global RNG, which every thread shares: a seed set there does
    not survive two requests running at once.
    """

    def __init__(self, seed: int | None) -> None:
        self._seed = seed
        self._generator: torch.Generator | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        import torch

        if self._generator is None:
            self._generator = torch.Generator(device=scores.device)
            if self._seed is None:
                self._generator.seed()
            else:
                self._generator.manual_seed(self._seed)
        probs = torch.softmax(scores.float(), dim=-1)
        chosen = torch.multinomial(probs, num_samples=1, generator=self._generator)
        only = torch.full_like(scores, float("-inf"))
        return only.scatter_(1, chosen, 0.0)  # type: ignore[return-value]


def _sampling_processors(request: GenerationRequest) -> list[Callable[..., Any]]:
    """Temperature / top-p warpers and the seeded sampler; none for greedy decoding."""
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    if request.temperature <= 0:
        return []
    processors: list[Callable[..., Any]] = []
    if request.temperature != 1.0:
        processors.append(TemperatureLogitsWarper(float(request.temperature)))
    if request.top_p < 1.0:
        processors.append(TopPLogitsWarper(float(request.top_p)))
    processors.append(_SampleWithOwnGenerator(request.seed))
    return processors


# -- continuous batching -----------------------------------------------------------------------


class _ContinuousBatchingEngine:
    """transformers' ContinuousBatchingManager plus the thread that turns its outputs into emits.

    Per-request sampling goes through the manager's per-request logits processors
    (temperature, top-k, top-p): it samples for every request, and greedy requests ask for
    ``top_k=1``, which leaves the argmax as the only candidate.
    """

    def __init__(
        self,
        manager: ContinuousBatchingManager,
        max_in_flight: int,
        vocab_size: int,
        eos_token_ids: frozenset[int],
        sequential_attention: str,
    ) -> None:
        self.manager = manager
        self.max_in_flight = max_in_flight
        self._sequential_attention = sequential_attention
        self._vocab_size = vocab_size
        self._eos = sorted(eos_token_ids) or -1
        self._live: dict[str, _Generation] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._closing = threading.Event()
        self._reader = threading.Thread(
            target=self._read_outputs, name="localinfer:cb-outputs", daemon=True
        )
        self._reader.start()

    @classmethod
    def start(
        cls, handler: TransformersChatHandler, options: Mapping[str, Any]
    ) -> _ContinuousBatchingEngine:
        """Create the manager with per-request sampling, size its cache, start its loop."""
        import torch
        from transformers import ContinuousBatchingConfig

        model = handler.model
        assert model is not None
        on_cpu = model.device.type == "cpu"
        max_in_flight = int(options.get("max_in_flight", 8 if on_cpu else 32))
        if max_in_flight < 2:
            raise ConfigurationError("continuous batching needs max_in_flight >= 2")
        settings: dict[str, Any] = {
            "per_request_processors": True,
            "max_requests_per_batch": max_in_flight,
        }
        settings.update(options.get("continuous_batching_config") or {})
        if "kv_cache_gib" in options:
            settings["kv_cache_gib"] = options["kv_cache_gib"]
        _size_cache(settings, model, max_in_flight, handler.context_length)
        sequential_attention = str(model.config._attn_implementation)
        manager = cast("GenerationMixin", model).init_continuous_batching(
            generation_config=_engine_generation_config(model, handler.eos_token_ids),
            continuous_batching_config=ContinuousBatchingConfig(**settings),
        )
        try:
            with torch.inference_mode():  # the manager's loop inherits the caller's mode
                manager.warmup()  # builds the cache here: a model that cannot batch fails now
                manager.start()
        except BaseException:
            # the manager may have switched the model's attention (eager -> paged|eager);
            # put it back so sequential generate() still works
            original = getattr(manager, "_original_attn_impl", None)
            if original is not None:
                model.set_attn_implementation(original)
            raise
        vocab_size = int(model.config.get_text_config().vocab_size)
        return cls(manager, max_in_flight, vocab_size, handler.eos_token_ids, sequential_attention)

    def submit(self, generation: _Generation) -> None:
        """Queue a request with the manager and return at once."""
        request = generation.request
        sampling: dict[str, Any]
        if request.temperature > 0:
            sampling = {
                "temperature": float(request.temperature),
                "top_p": float(request.top_p),
                "top_k": self._vocab_size,
            }
        else:
            sampling = {"temperature": 1.0, "top_p": 1.0, "top_k": 1}
        request_id = f"{generation.item.request_id}#{next(self._ids)}"
        with self._lock:
            self._live[request_id] = generation
        generation.start()
        try:
            added = self.manager.add_request(
                generation.prompt_ids,
                request_id=request_id,
                max_new_tokens=request.max_new_tokens,
                streaming=True,
                eos_token_id=self._eos,
                **sampling,
            )
        except BaseException:
            self._forget(request_id)
            raise
        if added is None:  # the manager's loop stopped (it logged why)
            with self._lock:
                dropped = self._live.pop(request_id, None)
            if dropped is not None:
                dropped.item.fail(HandlerFailed("the continuous-batching engine is not running"))
        elif request_id not in self._live:
            # the reader dropped it (cancelled) before the manager knew of it
            self.manager.cancel_request(request_id)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Hold the batching loop (keeping its requests) while this thread uses the model.

        The manager may have switched the model to a paged attention (``paged|eager``),
        which generate() cannot use: the model's own attention is back for the pause.
        """
        model = self.manager.model
        batched_attention = str(model.config._attn_implementation)
        with self.manager.pause():
            if batched_attention != self._sequential_attention:
                model.set_attn_implementation(self._sequential_attention)
            try:
                yield
            finally:
                if batched_attention != self._sequential_attention:
                    model.set_attn_implementation(batched_attention)

    def close(self) -> None:
        self._closing.set()
        self._reader.join(timeout=10)
        if self.manager.is_running():
            self.manager.stop(block=True, timeout=30, hard_stop=True)
        self.manager.destroy()
        with self._lock:
            left = list(self._live.values())
            self._live.clear()
        for generation in left:
            generation.item.fail(HandlerFailed("the model was unloaded before this request ended"))

    # reader thread -----------------------------------------------------------------------

    def _read_outputs(self) -> None:
        while not self._closing.is_set():
            try:
                output = self.manager.get_result(timeout=0.05)
                if output is not None:
                    self._deliver(output)
                elif not self.manager.is_running():
                    self._fail_all(self.manager.background_thread_status.fatal_error)
                    self._closing.wait(0.1)
                self._drop_cancelled()
            except Exception:
                logger.exception("continuous batching: delivering outputs failed")

    def _deliver(self, output: GenerationOutput) -> None:
        with self._lock:
            generation = self._live.get(output.request_id)
        if generation is None:
            return  # finished or cancelled on our side already
        if output.error is not None:
            self._forget(output.request_id)
            generation.item.fail(HandlerFailed(f"generation failed: {output.error}"))
            return
        try:
            for token in output.generated_tokens[generation.completion_tokens :]:
                if generation.on_token(int(token)):
                    break
            if generation.stopped or output.is_finished():
                self._forget(output.request_id)
                if not output.is_finished():
                    self.manager.cancel_request(output.request_id)
                generation.finish()
        except Exception as exc:
            self._forget(output.request_id)
            self.manager.cancel_request(output.request_id)
            generation.item.fail(exc)

    def _drop_cancelled(self) -> None:
        """Cancel, in the manager, requests whose caller went away (queued ones included)."""
        with self._lock:
            gone = [(rid, g) for rid, g in self._live.items() if g.item.cancelled]
            for rid, _ in gone:
                del self._live[rid]
        for rid, generation in gone:
            self.manager.cancel_request(rid)
            generation.finish()

    def _fail_all(self, error: BaseException | None) -> None:
        with self._lock:
            left = list(self._live.values())
            self._live.clear()
        for generation in left:
            failure = HandlerFailed(f"the continuous-batching loop stopped: {error}")
            generation.item.fail(failure)

    def _forget(self, request_id: str) -> None:
        with self._lock:
            self._live.pop(request_id, None)


def _engine_generation_config(
    model: PreTrainedModel, eos_token_ids: frozenset[int]
) -> GenerationConfig:
    """The model's defaults, with the sampling warpers every request then overrides.

    The manager only builds a per-request temperature / top-k / top-p processor when the
    config sets a non-default value for it, hence the placeholders.
    """
    import copy

    config = copy.deepcopy(model.generation_config)
    config.update(  # type: ignore[no-untyped-call]
        do_sample=True,
        temperature=0.7,
        top_k=50,
        top_p=0.9,
        min_p=None,
        typical_p=None,
        epsilon_cutoff=None,
        eta_cutoff=None,
        num_beams=1,
        num_return_sequences=1,
        eos_token_id=sorted(eos_token_ids) or None,
    )
    return config


def _size_cache(
    settings: dict[str, Any], model: PreTrainedModel, max_in_flight: int, context: int | None
) -> None:
    """Size the engine's KV cache for ``max_in_flight`` full-context requests, within a budget.

    Left to itself the library takes 90 % of the free GPU memory (60 % of RAM on CPU),
    which starves every other model sharing the device. The budget is ``kv_cache_gib``
    from the settings, else 1 GiB on CPU and half the free memory on CUDA.
    """
    budget_gib = settings.pop("kv_cache_gib", None)
    page_size = int(settings.setdefault("page_size", 256))
    if model.device.type == "cpu":
        settings.setdefault("max_batch_tokens", _CPU_MAX_BATCH_TOKENS)
    if settings.get("num_blocks") is not None:
        return
    if budget_gib is not None:
        budget = int(float(budget_gib) * 2**30)
    elif model.device.type == "cuda":
        import torch

        budget = torch.cuda.mem_get_info(model.device)[0] // 2
    else:
        budget = int(_CPU_KV_CACHE_GIB * 2**30)
    config = model.config.get_text_config()
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    bytes_per_token = 2 * int(config.num_hidden_layers) * kv_heads * head_dim
    bytes_per_block = bytes_per_token * page_size * model.dtype.itemsize
    per_request = math.ceil(min(context or 4096, _MAX_CACHED_CONTEXT) / page_size) + 1
    fits = budget // bytes_per_block
    settings["num_blocks"] = max(per_request, min(per_request * max_in_flight, fits))


# -- model facts -------------------------------------------------------------------------------


def _dense_copy_of_gguf(source: ModelSource, dtype: Any) -> str:
    """The cached dense checkpoint of the source's ``.gguf`` file (converted on first use)."""
    from localinfer.handlers.gguf_cache import dense_checkpoint, locate_gguf

    assert source.filename is not None
    gguf = locate_gguf(source.location, source.filename, source.revision)
    return str(dense_checkpoint(gguf, dtype))


def _resolve_dtype(option: object, device: str) -> Any:
    import torch

    if option is None:
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if isinstance(option, torch.dtype) or option == "auto":
        return option
    dtype = getattr(torch, str(option), None)
    if not isinstance(dtype, torch.dtype):
        raise ConfigurationError(f"unknown dtype {option!r} (try float32, bfloat16, float16, auto)")
    return dtype


def _context_length(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, options: Mapping[str, Any]
) -> int | None:
    """The smallest meaningful limit among the model's positions and the tokenizer's maximum."""
    if options.get("context_length"):
        return int(options["context_length"])
    limits = []
    config = model.config.get_text_config()
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            limits.append(value)
            break
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < _NO_LIMIT:
        limits.append(value)
    return min(limits) if limits else None


def _eos_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    """Every id that ends a turn: the generation config's list, else the tokenizer's EOS."""
    configured = model.generation_config.eos_token_id
    if configured is None:
        configured = tokenizer.eos_token_id
    if configured is None:
        return frozenset()
    ids = [configured] if isinstance(configured, int) else list(configured)
    return frozenset(int(i) for i in ids if int(i) >= 0)


def _avoid_cudnn_attention() -> None:
    """Keep SDPA off its cuDNN backend, which builds a plan for every new shape.

    Generation changes the attention shape at every token (and continuous batching at
    every step): on an H200 with torch 2.11 each new shape cost ~45 ms, making decoding
    10x slower than with the flash / memory-efficient backends. The switch is process
    wide; ``cudnn_attention: true`` keeps cuDNN for models that prefer it.
    """
    import torch

    if torch.backends.cuda.cudnn_sdp_enabled():  # type: ignore[no-untyped-call]
        logger.info("turning off cuDNN SDPA: it re-plans for every new sequence length")
        torch.backends.cuda.enable_cudnn_sdp(False)


def _release_cuda_memory_after(exc: BaseException, device: str) -> None:
    """After an out-of-memory error, hand the cached blocks back so the next request can fit."""
    if device.startswith("cuda") and type(exc).__name__ == "OutOfMemoryError":
        import torch

        torch.cuda.empty_cache()
