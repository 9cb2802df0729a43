"""A GGUF model and the one llama.cpp context its sequences share.

Loaded through llama-cpp-python's low-level API (not ``Llama``): the context is created
for several sequences at once (``n_seq_max``), which is what lets
:mod:`localinfer_llamacpp.engine` decode them in one batch. As in ``llama-server -np N``,
each sequence has its own stream of the KV cache (``n_ctx / n_seq`` cells): a sequence's
cells then sit where they would if it ran alone, so batching changes no result, bit for
bit. Tokenizing and detokenizing go straight to the C vocabulary.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localinfer.errors import ConfigurationError, InvalidRequest

logger = logging.getLogger(__name__)

_backend_lock = threading.Lock()
_backend_ready = False


@dataclass(frozen=True)
class ContextSettings:
    """How the shared context is built (see the handler's options)."""

    #: KV-cache cells, split evenly between the sequences (``llama-server -c``)
    n_ctx: int = 8192
    #: sequences decoded together (slots)
    n_seq: int = 4
    #: tokens per ``llama_decode`` at most (long prompts are prefilled in chunks)
    n_batch: int = 512
    #: threads for one-token decodes (one stream generating); default: every core or every
    #: core but one, whichever decodes faster at the time (measured as it runs)
    n_threads: int | None = None
    #: threads for decodes of several tokens (sequences together, prompts); default:
    #: ``n_threads`` when that is given, else chosen as for ``n_threads``
    n_threads_batch: int | None = None
    n_gpu_layers: int = 0
    main_gpu: int = 0
    #: ``None``: llama.cpp decides, as llama-server does by default: on wherever the
    #: device has the kernel (CPUs do). On 2 cores it decoded SmolLM2 12-20 % faster with
    #: one stream and 7-15 % with four (docs/benchmarks.md); llama-cpp-python's ``Llama``
    #: turns it off, so its greedy output can differ in the last digits
    flash_attn: bool | None = None
    #: host memory for the cells of conversations whose slot went to another (MiB; 0: off)
    prompt_cache_mib: int = 256


def default_threads() -> int:
    """Every core this process may use: decoding one small model is compute-bound."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def thread_counts(settings: ContextSettings, cores: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Candidate thread counts for one-token and for several-token decodes, the one to start
    on first: a count the settings fix, else every core but one (safe under load) and
    every core (faster on a quiet machine)."""
    measured = (cores - 1, cores) if cores > 1 else (1,)
    one = (settings.n_threads,) if settings.n_threads else measured
    fixed_batch = settings.n_threads_batch or settings.n_threads
    return one, (fixed_batch,) if fixed_batch else measured


def _init_backend() -> Any:
    """Import llama_cpp once, quiet its logging, and initialise the ggml backend."""
    global _backend_ready
    try:
        import llama_cpp
    except ImportError as exc:
        raise ConfigurationError(
            "llama-cpp-python is not installed: `pip install llama-cpp-python` "
            "(it compiles llama.cpp, a few minutes)"
        ) from exc
    with _backend_lock:
        if not _backend_ready:
            # llama.cpp logs through this logger; at its default level every line is printed
            logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
            llama_cpp.llama_backend_init()
            _backend_ready = True
    return llama_cpp


def gpu_offload_supported() -> bool:
    """Whether this llama-cpp-python build can put layers on a GPU (built with CUDA, Metal,
    Vulkan...): a CPU-only build ignores ``n_gpu_layers`` without a word."""
    return bool(_init_backend().llama_supports_gpu_offload())


class GgufModel:
    """Weights, vocabulary and one multi-sequence context. Use from one thread at a time."""

    def __init__(self, path: Path, settings: ContextSettings) -> None:
        self.lib = lib = _init_backend()
        self.path = path
        self.settings = settings
        model_params = lib.llama_model_default_params()
        model_params.n_gpu_layers = settings.n_gpu_layers
        model_params.main_gpu = settings.main_gpu
        self.model = lib.llama_model_load_from_file(str(path).encode(), model_params)
        if not self.model:
            raise ConfigurationError(f"llama.cpp could not load {path}")
        self.vocab = lib.llama_model_get_vocab(self.model)
        self.n_vocab = int(lib.llama_vocab_n_tokens(self.vocab))
        self.n_ctx_train = int(lib.llama_model_n_ctx_train(self.model))

        #: candidate thread counts of one-token and of several-token decodes (see threads.py)
        self.thread_counts = thread_counts(settings, default_threads())
        threads, threads_batch = self.thread_counts[0][0], self.thread_counts[1][0]
        params = lib.llama_context_default_params()
        params.n_ctx = settings.n_ctx
        params.n_batch = settings.n_batch
        params.n_ubatch = settings.n_batch
        params.n_seq_max = settings.n_seq
        params.n_threads = threads
        params.n_threads_batch = threads_batch
        params.kv_unified = False  # a stream per sequence (see the module's docstring)
        params.no_perf = True
        if settings.flash_attn is not None:
            params.flash_attn_type = (
                lib.LLAMA_FLASH_ATTN_TYPE_ENABLED
                if settings.flash_attn
                else lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
            )
        self.ctx = lib.llama_init_from_model(self.model, params)
        if not self.ctx:
            lib.llama_model_free(self.model)
            raise ConfigurationError(
                f"llama.cpp could not create a context of {settings.n_ctx} tokens for {path}"
            )
        self.n_ctx = int(lib.llama_n_ctx(self.ctx))
        #: the cells of one sequence: the longest prompt + completion
        self.n_ctx_seq = int(lib.llama_n_ctx_seq(self.ctx))
        self.memory = lib.llama_get_memory(self.ctx)
        self.eog_ids = frozenset(
            token for token in range(self.n_vocab) if lib.llama_vocab_is_eog(self.vocab, token)
        )
        logger.info(
            "loaded %s: %d sequences of up to %d tokens, threads %s (%s for batches)",
            path.name,
            settings.n_seq,
            self.n_ctx_seq,
            " or ".join(map(str, self.thread_counts[0])),
            " or ".join(map(str, self.thread_counts[1])),
        )

    # -- vocabulary --------------------------------------------------------------------------

    @property
    def add_bos(self) -> bool:
        return bool(self.lib.llama_vocab_get_add_bos(self.vocab))

    def bos_id(self) -> int:
        return int(self.lib.llama_vocab_bos(self.vocab))

    def eos_id(self) -> int:
        return int(self.lib.llama_vocab_eos(self.vocab))

    def chat_template(self) -> str | None:
        raw = self.lib.llama_model_chat_template(self.model, None)
        return raw.decode("utf-8") if raw else None

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 2
        tokens = (self.lib.llama_token * capacity)()
        count = self.lib.llama_tokenize(
            self.vocab, data, len(data), tokens, capacity, add_special, parse_special
        )
        if count < 0:
            capacity = -count
            tokens = (self.lib.llama_token * capacity)()
            count = self.lib.llama_tokenize(
                self.vocab, data, len(data), tokens, capacity, add_special, parse_special
            )
        if count < 0:
            raise InvalidRequest("the prompt could not be tokenized", param="messages")
        return list(tokens[:count])

    def detokenize(self, ids: Sequence[int], *, special: bool = False) -> str:
        """Token ids to text; special tokens are rendered only when ``special``."""
        if not ids:
            return ""
        tokens = (self.lib.llama_token * len(ids))(*ids)
        buffer = ctypes.create_string_buffer(16 * len(ids) + 64)  # per call: any thread
        size = self.lib.llama_detokenize(
            self.vocab, tokens, len(ids), buffer, len(buffer), False, special
        )
        if size < 0:
            buffer = ctypes.create_string_buffer(-size)
            size = self.lib.llama_detokenize(
                self.vocab, tokens, len(ids), buffer, len(buffer), False, special
            )
        return buffer.raw[:size].decode("utf-8", "replace")

    def token_text(self, token: int) -> str:
        """A special token's text (``<|im_end|>``), for chat templates; ``""`` for none."""
        return self.detokenize([token], special=True) if token >= 0 else ""

    def close(self) -> None:
        if self.ctx:
            self.lib.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            self.lib.llama_model_free(self.model)
            self.model = None
