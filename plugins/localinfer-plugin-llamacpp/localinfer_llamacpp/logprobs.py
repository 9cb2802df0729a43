"""Logprobs for one sequence: its sampler chain run step by step on a row it can read.

Only a request that asks for logprobs comes here; the others keep
``llama_sampler_sample``, with no logits ever reaching Python. For one that asks, this
does what ``llama_sampler_sample`` does (the row of ``llama_get_logits_ith`` as a
``llama_token_data_array``, the chain applied, the selected token accepted), except that
the chain's samplers are applied one at a time, so the row can be read between the
output constraint (the grammar, first in the chain) and the rest. The sampled token is
the same, the seeded ones included.

Which distribution is reported: the log-softmax of the model's logits after the grammar's
mask and before temperature / top-p (the ``TokenLogprob`` contract, the same as the
transformers engines). That is the distribution the chain actually draws from, up to the
request's own reshaping of it: a token the grammar forbids gets no probability (so a
constrained answer's chosen token is never reported as improbable because of a token it
could not emit), while temperature and top-p, which the client chose, do not rewrite the
model's belief, as OpenAI's logprobs do not change with temperature. vLLM's default
(``raw_logprobs``) is the same; llama-server's ``n_probs`` reads the row before its
grammar, or, with ``post_sampling_probs``, after the whole chain, where a greedy chain
has computed no probabilities and top-p has cut the alternatives away.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from localinfer.handlers.generation.logprobs import LogprobRecorder

#: ``llama_token_data``: token id, logit, probability (12 bytes, no padding)
TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


def log_softmax(logits: np.ndarray[Any, np.dtype[np.float32]]) -> np.ndarray[Any, Any]:
    """``logits`` as log-probabilities; ``-inf`` (a masked token) stays ``-inf``."""
    peak = float(logits.max())
    shifted = logits - peak
    return shifted - np.float32(np.log(np.exp(shifted).sum(dtype=np.float64)))


def best_tokens(logprobs: np.ndarray[Any, Any], top: int) -> list[tuple[int, float]]:
    """The ``top`` most likely ``(token id, logprob)`` pairs, most likely first."""
    if top <= 0:
        return []
    ids = np.argpartition(logprobs, -top)[-top:]
    ids = ids[np.argsort(-logprobs[ids], kind="stable")]
    return [(int(i), float(logprobs[i])) for i in ids]


class LogprobSampling:
    """Samples for one sequence's chain and records each step's logprobs."""

    def __init__(
        self, lib: Any, chain: Any, constrained: int, n_vocab: int, recorder: LogprobRecorder
    ) -> None:
        if ctypes.sizeof(lib.llama_token_data) != TOKEN_DATA.itemsize:
            raise RuntimeError("llama_token_data changed layout; logprobs cannot read it")
        self._lib = lib
        self._chain = chain
        #: the leading samplers of the chain that form the output constraint (0 or 1)
        self._constrained = constrained
        self._recorder = recorder
        self._ids = np.arange(n_vocab, dtype=np.int32)
        self._cells = np.zeros(n_vocab, dtype=TOKEN_DATA)
        self._logits = np.empty(n_vocab, dtype=np.float32)
        self._array = lib.llama_token_data_array(
            data=ctypes.cast(self._cells.ctypes.data, ctypes.POINTER(lib.llama_token_data)),
            size=n_vocab,
            selected=-1,
            sorted=False,
        )

    def sample(self, ctx: Any, index: int) -> int:
        """Pick (and accept) the next token from row ``index``; record its step first."""
        lib, cells, array = self._lib, self._cells, self._array
        n_vocab = len(self._ids)
        row = np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx, index), shape=(n_vocab,))
        cells["id"] = self._ids
        cells["logit"] = row
        cells["p"] = 0.0
        array.size, array.selected, array.sorted = n_vocab, -1, False
        pointer = ctypes.byref(array)
        for position in range(self._constrained):
            lib.llama_sampler_apply(lib.llama_sampler_chain_get(self._chain, position), pointer)
        # the row as the constraint left it, by token id (a sampler may reorder or cut it)
        logits = self._logits
        logits.fill(-np.inf)
        kept = int(array.size)
        logits[cells["id"][:kept]] = cells["logit"][:kept]
        logprobs = log_softmax(logits)
        self._recorder.keep(logprobs, best_tokens(logprobs, self._recorder.top))
        for position in range(self._constrained, int(lib.llama_sampler_chain_n(self._chain))):
            lib.llama_sampler_apply(lib.llama_sampler_chain_get(self._chain, position), pointer)
        selected = int(array.selected)
        if not 0 <= selected < int(array.size):
            raise RuntimeError(f"the sampler chain selected no token ({selected})")
        token = int(cells["id"][selected])
        lib.llama_sampler_accept(self._chain, token)
        return token
