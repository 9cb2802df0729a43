"""One request's sampling as a llama.cpp sampler chain: it runs in C, on the logits in place.

Each sequence of the batch gets its own chain (its own temperature, top-p, seed and
grammar); ``llama_sampler_sample`` reads that sequence's row of the last decode's logits
and accepts the token it picks, so no logits ever reach Python.
"""

from __future__ import annotations

import random
from typing import Any

from localinfer.errors import InvalidRequest
from localinfer.handlers.generation.logprobs import LogprobRecorder
from localinfer.handlers.tasks import GenerationRequest
from localinfer_llamacpp.logprobs import LogprobSampling


class SamplerChain:
    """A sampler chain owned by one sequence; free it once the sequence ends."""

    def __init__(self, lib: Any, request: GenerationRequest, grammar: Any = None) -> None:
        self._lib = lib
        params = lib.llama_sampler_chain_default_params()
        params.no_perf = True
        self.handle = lib.llama_sampler_chain_init(params)
        self._constrained = 0
        self._logprobs: LogprobSampling | None = None
        if grammar is not None:  # first: the rest only sees tokens the grammar allows
            lib.llama_sampler_chain_add(self.handle, grammar)
            self._constrained = 1
        if request.temperature <= 0:
            lib.llama_sampler_chain_add(self.handle, lib.llama_sampler_init_greedy())
            return
        # OpenAI's order: temperature first, then the nucleus of the tempered distribution
        lib.llama_sampler_chain_add(self.handle, lib.llama_sampler_init_temp(request.temperature))
        if request.top_p < 1.0:
            lib.llama_sampler_chain_add(self.handle, lib.llama_sampler_init_top_p(request.top_p, 1))
        seed = request.seed if request.seed is not None else random.getrandbits(32)
        lib.llama_sampler_chain_add(self.handle, lib.llama_sampler_init_dist(seed & 0xFFFFFFFF))

    def record_logprobs(self, recorder: LogprobRecorder, n_vocab: int) -> None:
        """Report each step's logprobs to ``recorder`` (this sequence alone pays for it)."""
        self._logprobs = LogprobSampling(
            self._lib, self.handle, self._constrained, n_vocab, recorder
        )

    def sample(self, ctx: Any, index: int) -> int:
        """Pick (and accept) the next token from row ``index`` of the last decode's logits."""
        if self._logprobs is not None:
            return self._logprobs.sample(ctx, index)
        return int(self._lib.llama_sampler_sample(self.handle, ctx, index))

    def close(self) -> None:
        if self.handle:
            self._lib.llama_sampler_free(self.handle)
            self.handle = None


def grammar_sampler(lib: Any, vocab: Any, gbnf: str) -> Any:
    """A grammar sampler for ``gbnf`` (root rule ``root``), or ``InvalidRequest``."""
    handle = lib.llama_sampler_init_grammar(vocab, gbnf.encode("utf-8"), b"root")
    if not handle:
        raise InvalidRequest(
            "the output constraint could not be compiled into a llama.cpp grammar",
            param="response_format",
        )
    return handle
