"""Per-token log probabilities: recorded from a step's logits, matched to the sampled token.

An engine calls :meth:`LogprobRecorder.record` with a row of logits (after any output
constraint's mask, before temperature / top-p) and :meth:`LogprobRecorder.take` with the
token sampled from that row; steps are matched first-in first-out, so an engine whose
logits step runs ahead of its output reader (continuous batching) works too. An engine
without torch (llama.cpp) computes the row itself and hands it to
:meth:`LogprobRecorder.keep`.
"""

from __future__ import annotations

import collections
import math
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, SupportsFloat

from localinfer.handlers.generation.text import Decode
from localinfer.handlers.tasks import TokenLogprob, TopLogprob

if TYPE_CHECKING:
    import torch

#: the most alternatives a request may ask for (OpenAI's ``top_logprobs`` limit)
MAX_TOP_LOGPROBS = 20


class LogprobRow(Protocol):
    """One step's log-probabilities, indexed by token id (a torch or numpy vector)."""

    def __getitem__(self, token_id: int, /) -> SupportsFloat: ...


class LogprobRecorder:
    """Log-softmax rows waiting for their sampled token, and the token texts for them."""

    def __init__(self, top: int, decode: Decode) -> None:
        self.top = max(0, min(top, MAX_TOP_LOGPROBS))
        self._decode = decode
        self._steps: collections.deque[tuple[LogprobRow, list[tuple[int, float]]]] = (
            collections.deque()
        )
        self._lock = threading.Lock()

    def record(self, scores: torch.Tensor) -> None:
        """Keep one step's log-probabilities (``scores``: one row of logits)."""
        import torch

        logprobs = torch.log_softmax(scores.float(), dim=-1).cpu()
        best: list[tuple[int, float]] = []
        if self.top:
            values, ids = torch.topk(logprobs, self.top)
            best = list(zip(ids.tolist(), values.tolist(), strict=True))
        self.keep(logprobs, best)

    def keep(self, logprobs: LogprobRow, best: Sequence[tuple[int, float]]) -> None:
        """Keep one step computed by the engine: its log-softmax row and its ``top`` best
        ``(token id, logprob)`` pairs, most likely first."""
        with self._lock:
            self._steps.append((logprobs, list(best)))

    def take(self, token_id: int) -> TokenLogprob | None:
        """The sampled token's entry, from the oldest recorded step (None if none recorded)."""
        with self._lock:
            if not self._steps:
                return None
            logprobs, best = self._steps.popleft()
        return TokenLogprob(
            *self._entry(token_id, float(logprobs[token_id])),
            top=tuple(TopLogprob(*self._entry(i, v)) for i, v in best),
        )

    def _entry(self, token_id: int, logprob: float) -> tuple[str, float, tuple[int, ...]]:
        text = self._decode([token_id])
        # a token the constraint forbade has -inf: JSON has no infinity, OpenAI uses -9999
        value = logprob if math.isfinite(logprob) else -9999.0
        return text, value, tuple(text.encode())


class RecordLogprobs:
    """A generate() logits processor that records each step for a :class:`LogprobRecorder`."""

    def __init__(self, recorder: LogprobRecorder) -> None:
        self._recorder = recorder

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self._recorder.record(scores[0])
        return scores
