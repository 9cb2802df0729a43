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

Both ways share the per-request bookkeeping (:class:`Generation`): prompt building, the
context check, incremental detokenisation, stop strings, token counts and timings, so a
request gets the same text either way.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from localinfer.errors import InvalidRequest
from localinfer.handlers.base import Handler, ModelSource, WorkItem
from localinfer.handlers.generation.continuous_batching import ContinuousBatchingEngine
from localinfer.handlers.generation.grammar import ConstrainLogits, GrammarCache
from localinfer.handlers.generation.logprobs import LogprobRecorder, RecordLogprobs
from localinfer.handlers.generation.sequence import Generation, check_fits_context
from localinfer.handlers.generation.text import hf_decode
from localinfer.handlers.generation.tool_calls import (
    HERMES,
    ToolCallFormat,
    calls_tools,
    format_for_template,
    messages_for_template,
    with_tool_constraint,
)
from localinfer.handlers.generation.transformers_sampling import (
    StreamEachToken,
    sampling_processors,
)
from localinfer.handlers.hub_code import NO_HUB_CODE
from localinfer.handlers.model_facts import context_length, eos_token_ids
from localinfer.handlers.model_files import verify_model_files
from localinfer.handlers.tasks import CHAT, GenerationRequest
from localinfer.handlers.torch_devices import (
    avoid_cudnn_attention,
    release_cuda_memory_after,
    resolve_dtype,
)
from localinfer.slower_path import take_slower_path

if TYPE_CHECKING:
    from transformers import GenerationMixin, PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)


#: the transformers whose ContinuousBatchingManager this engine works with: older ones
#: lack ``ContinuousBatchingConfig(page_size=...)`` (issue 21: 5.17 fell back to serving
#: one request at a time, 1.09x sequential at 32 streams), and up to 5.23 its loop dies on
#: an in-place update to an inference tensor (found by .ci/lowest)
CONTINUOUS_BATCHING_REQUIREMENT = "transformers>=5.24"


def batching_by_default(device: str) -> bool:
    """Continuous batching is the default on CUDA (on CPU one request at a time decodes
    faster, and a desktop rarely has many users)."""
    return device.startswith("cuda")


def _transformers_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("transformers")
    except PackageNotFoundError:
        return "?"


class TransformersChatHandler(Handler):
    """``chat`` handler for transformers causal LMs (safetensors or GGUF weights).

    Options (``source.options``):

    - ``dtype``: ``"float32"``, ``"bfloat16"``, ``"float16"``, ``"auto"`` (default: float32 on
      CPU, bfloat16 on CUDA).
    - ``attn_implementation``: passed to ``from_pretrained`` (``"sdpa"``, ``"flash_attention_2"``,
      ...); continuous batching is much faster with a flash implementation.
    - ``cudnn_attention``: keep torch's cuDNN SDPA backend on (default off on CUDA: it
      re-plans for every new sequence length, see ``avoid_cudnn_attention``).
    - ``continuous_batching``: ``True`` / ``False`` (default: on for CUDA when the model
      supports it; off on CPU, where one request at a time decodes ~2x faster through
      ``generate`` and a desktop rarely has many users; turn it on to serve several).
    - ``max_in_flight``: requests served at once with continuous batching (32 CUDA, 8 CPU).
    - ``kv_cache_gib``: the continuous-batching KV cache's budget (1 GiB on CPU, half the
      free GPU memory on CUDA); the cache holds ``max_in_flight`` full-context requests
      when the budget allows.
    - ``engine_stall_s``: seconds the continuous-batching engine may produce nothing while
      requests wait before it counts as stalled (503 ``engine_stalled``, restarted; 120)
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
        self._engine: ContinuousBatchingEngine | None = None
        self._grammars: GrammarCache | None = None
        #: the model family's tool-call syntax, and whether its template renders tools
        self.tool_format: ToolCallFormat = HERMES
        self._template_renders_tools = False

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
        verify_model_files(source)
        self.device = device
        if device.startswith("cuda") and not options.get("cudnn_attention", False):
            avoid_cudnn_attention()
        dtype = resolve_dtype(options.get("dtype"), device)
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
        self.tool_format, self._template_renders_tools = format_for_template(
            getattr(self.tokenizer, "chat_template", None)
        )
        if options.get("attn_implementation"):
            common["attn_implementation"] = options["attn_implementation"]
        # loading straight onto the device needs accelerate; without it, load then move
        direct = is_accelerate_available()
        model = AutoModelForCausalLM.from_pretrained(
            location,
            dtype=dtype,
            device_map=device if direct else None,
            **common,
            **NO_HUB_CODE,
        )
        if not direct:
            model.to(device)  # type: ignore[arg-type]  # (transformers' wrapper mistypes it)
        model.eval()  # type: ignore[no-untyped-call]
        self.model = model

        self.context_length = context_length(self.model, self.tokenizer, options)
        self.eos_token_ids = eos_token_ids(self.model, self.tokenizer)
        pad = self.model.generation_config.pad_token_id
        if pad is None:
            pad = self.tokenizer.pad_token_id
        self._pad_token_id = pad if pad is not None else min(self.eos_token_ids, default=None)

        wanted = options.get("continuous_batching")
        if wanted is None:
            wanted = batching_by_default(device)
        if wanted:
            try:
                self._engine = ContinuousBatchingEngine.start(
                    self.model, self.eos_token_ids, self.context_length, options, self.thread_ledger
                )
            except Exception as exc:  # refused (chained to exc), or allowed: sequential
                take_slower_path(
                    f"continuous batching does not work for {source.location} with "
                    f"transformers {_transformers_version()}: {exc}",
                    install=f"Install {CONTINUOUS_BATCHING_REQUIREMENT!r} (pip install -U "
                    f"'{CONTINUOUS_BATCHING_REQUIREMENT}')",
                    slower="serve one request at a time (many times slower under load)",
                    per_model="the model option continuous_batching=false",
                    refuse=bool(options.get("continuous_batching")),
                )
        if self._engine is not None:
            self.max_in_flight = self._engine.max_in_flight
            self.engine = f"transformers continuous batching x{self.max_in_flight}"
        else:
            self.engine = "transformers generate (one request at a time)"
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
                if self._engine is not None and self._engine.can_serve(generation):
                    self._engine.submit(generation)
                elif self._engine is not None:
                    # the engine samples every request from one shared RNG; a seeded request
                    # gets its own generator by running alone while the engine waits (so
                    # does one the engine cannot constrain or report logprobs for)
                    with self._engine.paused():
                        self._generate(generation)
                else:
                    self._generate(generation)
            except Exception as exc:
                release_cuda_memory_after(exc, self.device)
                item.fail(exc)

    def _prepare(self, item: WorkItem) -> Generation:
        """Validate and tokenize one request (raising ``InvalidRequest`` before any output)."""
        request = item.payload
        if not isinstance(request, GenerationRequest):
            raise InvalidRequest(
                f"{self.handler_name} takes a GenerationRequest, not {type(request).__name__}"
            )
        if request.max_new_tokens < 1:
            raise InvalidRequest("max_new_tokens must be at least 1", param="max_tokens")
        calling = calls_tools(request)
        request = with_tool_constraint(request, self.tool_format)
        prompt_ids = self.encode_prompt(request)
        check_fits_context(len(prompt_ids), request.max_new_tokens, self.context_length)
        assert self.tokenizer is not None
        decode = hf_decode(self.tokenizer)
        grammar = None
        if request.constraint is not None:
            grammar = self._grammar_cache().sequence(request.constraint)
        recorder = None
        if request.logprobs is not None:
            recorder = LogprobRecorder(request.logprobs, decode)
        return Generation(
            item,
            request,
            prompt_ids,
            decode,
            self.eos_token_ids,
            recorder,
            grammar,
            self.tool_format if calling else None,
        )

    def _grammar_cache(self) -> GrammarCache:
        """The tokenizer's compiled-grammar cache, built at the first constrained request."""
        if self._grammars is None:
            assert self.model is not None and self.tokenizer is not None
            vocab_size = int(self.model.config.get_text_config().vocab_size)
            self._grammars = GrammarCache(self.tokenizer, vocab_size, self.eos_token_ids)
        return self._grammars

    def encode_prompt(self, request: GenerationRequest) -> list[int]:
        """The prompt's token ids: the chat template for messages, plain text otherwise."""
        tokenizer = self.tokenizer
        assert tokenizer is not None, "load() first"
        if request.messages is not None:
            if not getattr(tokenizer, "chat_template", None):
                raise InvalidRequest(
                    "this model has no chat template; send a plain prompt instead", param="messages"
                )
            tools = request.tools if request.tool_choice != "none" else None
            messages = messages_for_template(
                request.messages, tools, self.tool_format, self._template_renders_tools
            )
            try:
                text = tokenizer.apply_chat_template(
                    messages,
                    tools=[dict(tool) for tool in tools]
                    if tools and self._template_renders_tools
                    else None,
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

    def _generate(self, generation: Generation) -> None:
        """Run one request through ``model.generate``, streaming as it goes."""
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        model = self.model
        assert model is not None
        request = generation.request
        input_ids = torch.tensor([generation.prompt_ids], device=model.device)
        steps: list[Any] = []
        if generation.grammar is not None:
            steps.append(ConstrainLogits(generation.grammar, len(generation.prompt_ids)))
        if generation.logprobs is not None:
            steps.append(RecordLogprobs(generation.logprobs))
        processors = LogitsProcessorList(steps + sampling_processors(request))
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
                stopping_criteria=StoppingCriteriaList([StreamEachToken(generation)]),
                eos_token_id=sorted(self.eos_token_ids) or None,
                pad_token_id=self._pad_token_id,
            )
        generation.finish()


# -- model facts -------------------------------------------------------------------------------


def _dense_copy_of_gguf(source: ModelSource, dtype: Any) -> str:
    """The cached dense checkpoint of the source's ``.gguf`` file (converted on first use)."""
    from localinfer.handlers.gguf_cache import dense_checkpoint, locate_gguf

    assert source.filename is not None
    gguf = locate_gguf(source.location, source.filename, source.revision)
    return str(dense_checkpoint(gguf, dtype))
