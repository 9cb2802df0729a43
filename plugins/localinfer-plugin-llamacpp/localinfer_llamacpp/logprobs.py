"""Logprobs for the sequences that ask: their row, log-softmaxed, and its best tokens.

Only a request that asks for logprobs has its row read
(:class:`~localinfer_llamacpp.sampling.SamplerChain` loads it into
:class:`~localinfer_llamacpp.candidates.Candidates`, applies the grammar, calls
:func:`record_step`, then applies the rest of its chain); the others sample in C with no
logits reaching Python. The sampled token is the one the chain picks without logprobs.

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

from typing import Any

import numpy as np

from localinfer.handlers.generation.logprobs import LogprobRecorder


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


def record_step(recorder: LogprobRecorder, logits: np.ndarray[Any, Any]) -> None:
    """Hand one step's log-probabilities and best tokens to ``recorder``."""
    logprobs = log_softmax(logits)
    recorder.keep(logprobs, best_tokens(logprobs, recorder.top))
