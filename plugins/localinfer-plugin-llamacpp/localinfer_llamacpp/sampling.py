"""One request's sampling as a llama.cpp sampler chain: it runs in C, on the logits in place.

Each sequence of the batch gets its own chain (its own temperature, top-p, seed) and its
own grammar; ``llama_sampler_sample`` reads that sequence's row of the last decode's
logits and picks a token, so no logits are copied into Python (greedy scans the row in
place: below). Only a request that asks for logprobs has its row copied
(:mod:`localinfer_llamacpp.logprobs`).

The grammar (``response_format``, forced tool calls) is kept beside the chain, not in it,
and applied as llama.cpp's own ``common_sampler`` (behind ``llama-server``) does: the chain
picks a token from the whole row, the grammar checks that one token, and only when it is
refused is the grammar applied to the whole vocabulary and the token picked again from
what it allows. Checking one token instead of 49 152 is what keeps a constrained stream
near the speed of a free one (``docs/benchmarks.md``). Greedy picks the same token either
way; temperature alone draws from the same distribution (a refused draw is redrawn from
the allowed tokens renormalised); with top-p the nucleus of a first draw is the model's,
not the grammar's, as in llama-server.

Greedy reads its row in place instead: numpy's ``argmax`` over a view of the logits (no
copy) takes 16 us for SmolLM2's 49 152 tokens, ``llama_sampler_sample`` 125 us, because it
first copies the row into as many candidates (measured on the 2-core machine; at four
streams that is 0.4 ms of every ~38 ms step). Both take the first of equal maxima. The
view of a row is kept by its address (a sequence's row is the same buffer step after
step): right after a decode has streamed the weights through the caches, making a new
view each token took 50-80 us of the engine thread's ~150, reusing one 2-5 us.
"""

from __future__ import annotations

import ctypes
import random
from typing import Any

import numpy as np

from localinfer.errors import HandlerFailed, InvalidRequest
from localinfer.handlers.generation.logprobs import LogprobRecorder
from localinfer.handlers.tasks import GenerationRequest
from localinfer_llamacpp.candidates import Candidates
from localinfer_llamacpp.logprobs import record_step

#: views a sequence keeps (its row moves as sequences join and leave the batch)
MAX_ROW_VIEWS = 16


class SamplerChain:
    """A sampler chain and grammar owned by one sequence; free them once it ends."""

    def __init__(
        self, lib: Any, request: GenerationRequest, n_vocab: int, grammar: Any = None
    ) -> None:
        self._lib = lib
        self._n_vocab = n_vocab
        #: the output constraint, beside the chain (see the module's docstring)
        self.grammar = grammar
        #: the whole row, read only when the grammar refuses a token or logprobs are asked
        self._candidates: Candidates | None = None
        self._recorder: LogprobRecorder | None = None
        self._one = lib.llama_token_data_array(
            data=(lib.llama_token_data * 1)(), size=1, selected=-1, sorted=False
        )
        self._one_pointer = ctypes.byref(self._one)
        #: numpy views of logits rows, by address (see the module's docstring)
        self._views: dict[int, np.ndarray] = {}
        params = lib.llama_sampler_chain_default_params()
        params.no_perf = True
        self.handle = lib.llama_sampler_chain_init(params)
        #: picks the most likely token: read in place (see the module's docstring)
        self.greedy = request.temperature <= 0
        if self.greedy:
            lib.llama_sampler_chain_add(self.handle, lib.llama_sampler_init_greedy())
            return
        # OpenAI's order: temperature first, then the nucleus of the tempered distribution
        lib.llama_sampler_chain_add(self.handle, lib.llama_sampler_init_temp(request.temperature))
        if request.top_p < 1.0:
            lib.llama_sampler_chain_add(self.handle, lib.llama_sampler_init_top_p(request.top_p, 1))
        seed = request.seed if request.seed is not None else random.getrandbits(32)
        lib.llama_sampler_chain_add(self.handle, lib.llama_sampler_init_dist(seed & 0xFFFFFFFF))

    def record_logprobs(self, recorder: LogprobRecorder) -> None:
        """Report each step's logprobs to ``recorder`` (this sequence alone pays for it)."""
        self._row()
        self._recorder = recorder

    def sample(self, ctx: Any, index: int) -> int:
        """Pick (and accept) the next token from row ``index`` of the last decode's logits."""
        lib = self._lib
        if self._recorder is None:
            if self.greedy:
                token = self.most_likely(ctx, index)
            else:
                token = int(lib.llama_sampler_sample(self.handle, ctx, index))
            if self.grammar is None:
                return token
            if self._allows(token):
                lib.llama_sampler_accept(self.grammar, token)
                return token
        # the whole row: the grammar's mask, the logprobs of the result, then the chain
        candidates = self._row()
        candidates.load(ctx, index)
        if self.grammar is not None:
            candidates.apply(self.grammar)
        if self._recorder is not None:
            record_step(self._recorder, candidates.logits())
        candidates.apply(self.handle)
        token = candidates.selected()
        if self.grammar is not None:
            lib.llama_sampler_accept(self.grammar, token)
        lib.llama_sampler_accept(self.handle, token)
        return token

    def most_likely(self, ctx: Any, index: int) -> int:
        """The token with the highest logit in row ``index``, read where llama.cpp left it."""
        row = ctypes.cast(self._lib.llama_get_logits_ith(ctx, index), ctypes.c_void_p).value
        if not row:
            raise HandlerFailed(f"llama.cpp has no logits for row {index} of the last decode")
        view = self._views.get(row)
        if view is None:
            if len(self._views) >= MAX_ROW_VIEWS:
                self._views.clear()
            floats = (ctypes.c_float * self._n_vocab).from_address(row)
            view = self._views[row] = np.frombuffer(memoryview(floats), dtype=np.float32)
        return int(view.argmax())

    def _allows(self, token: int) -> bool:
        """Whether the grammar accepts ``token`` next (checked alone, not over the vocabulary)."""
        one = self._one
        cell = one.data[0]
        cell.id, cell.logit, cell.p = token, 1.0, 0.0
        one.size, one.selected, one.sorted = 1, -1, False
        self._lib.llama_sampler_apply(self.grammar, self._one_pointer)
        return bool(one.data[0].logit != float("-inf"))

    def _row(self) -> Candidates:
        if self._candidates is None:
            self._candidates = Candidates(self._lib, self._n_vocab)
        return self._candidates

    def close(self) -> None:
        self._views.clear()  # they point into the context's memory, which may go next
        if self.handle:
            self._lib.llama_sampler_free(self.handle)
            self.handle = None
        if self.grammar:
            self._lib.llama_sampler_free(self.grammar)
            self.grammar = None


def grammar_sampler(lib: Any, vocab: Any, gbnf: str) -> Any:
    """A grammar sampler for ``gbnf`` (root rule ``root``), or ``InvalidRequest``."""
    handle = lib.llama_sampler_init_grammar(vocab, gbnf.encode("utf-8"), b"root")
    if not handle:
        raise InvalidRequest(
            "the output constraint could not be compiled into a llama.cpp grammar",
            param="response_format",
        )
    return handle
