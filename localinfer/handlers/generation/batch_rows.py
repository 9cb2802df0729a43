"""Per-row output constraints and logprobs inside transformers' continuous batching.

The manager builds its logits processors once, for every request; per-request behaviour
goes through ``ContinuousBatchingLogitsProcessor`` s, which read one tensor argument per
batch row from each request's ``logit_processor_kwargs``. :class:`RowGrammars` is such a
processor: a request with a grammar or logprobs carries a slot number
(``localinfer_slot``); for each row with a slot, it brings that request's matcher up to
date with the tokens the request has generated, fills its row of one shared bitmask, applies
the whole batch's mask in one ``apply_token_bitmask_inplace`` call, and records the row's
log-probabilities. It runs first, so temperature / top-k / top-p see the masked logits.

It needs the batch's Python-side bookkeeping to be current when it runs, and to run at
every step: synchronous batching, no CUDA graphs, no torch.compile of the step
(:func:`rows_supported`, read from the manager's resolved config); otherwise such requests
run alone, beside the paused batch, through the sequential path.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from localinfer.handlers.generation.grammar import ConstrainedSequence
from localinfer.handlers.generation.logprobs import LogprobRecorder

if TYPE_CHECKING:
    import torch

#: the request keyword argument that carries a row's slot
SLOT_KEY = "localinfer_slot"


@dataclass(slots=True)
class _Row:
    grammar: ConstrainedSequence | None
    logprobs: LogprobRecorder | None
    state: Any = None  # the manager's RequestState, seen at batch preparation


def rows_supported(manager: Any) -> bool:
    """True when the manager runs the Python processors at every step, in step order."""
    config = getattr(manager, "continuous_batching_config", None)
    if config is None:
        return False
    graphs = getattr(config, "use_cuda_graph", False)
    if isinstance(graphs, tuple):
        graphs = any(graphs)
    compiled = any(
        getattr(config, name, None) is not None
        for name in ("varlen_compile_config", "decode_compile_config")
    )
    return not graphs and not compiled and not getattr(config, "use_async_batching", False)


def install(manager: Any, vocab_size: int) -> RowGrammars:
    """Put a :class:`RowGrammars` first among the manager's processors (before it starts)."""
    from transformers.generation.continuous_batching.cb_logits_processors import (
        ContinuousBatchingLogitsProcessor,
    )

    # the manager passes per-row arguments only to subclasses of its base class
    batch_class = type("BatchRowGrammars", (RowGrammars, ContinuousBatchingLogitsProcessor), {})
    processors = manager.logit_processor
    rows: RowGrammars = batch_class(vocab_size)
    processors.logits_processor.insert(0, rows)
    processors.tensors_required += 1
    processors.supported_keys[SLOT_KEY] = int
    processors.do_processing = True
    return rows


class RowGrammars:
    """A continuous-batching logits processor: each slotted row's grammar mask and logprobs."""

    supported_kwargs: ClassVar[dict[str, type]] = {SLOT_KEY: int}
    ignored_kwargs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, vocab_size: int) -> None:
        self._vocab_size = vocab_size
        self._rows: dict[int, _Row] = {}
        self._slots = itertools.count()
        self._lock = threading.Lock()
        self._bitmask: torch.Tensor | None = None

    def add(self, grammar: ConstrainedSequence | None, logprobs: LogprobRecorder | None) -> int:
        slot = next(self._slots) % 2**31
        with self._lock:
            self._rows[slot] = _Row(grammar, logprobs)
        return slot

    def remove(self, slot: int) -> None:
        with self._lock:
            self._rows.pop(slot, None)

    # ContinuousBatchingLogitsProcessor's interface --------------------------------------

    def fill_defaults(self, int32_tensor: torch.Tensor) -> None:
        int32_tensor.fill_(-1)

    def prepare_tensor_args(self, requests_with_new_token: list[Any]) -> torch.Tensor:
        import torch

        slots = []
        for request in requests_with_new_token:
            slot = int(request.state.logit_processor_kwargs.get(SLOT_KEY, -1))
            slots.append(slot)
            if slot >= 0:
                with self._lock:
                    row = self._rows.get(slot)
                if row is not None:
                    row.state = request.state
        return torch.tensor(slots, dtype=torch.int32, device="cpu")

    def __call__(self, scores: torch.Tensor, tensor_arg: torch.Tensor) -> torch.Tensor:
        import xgrammar as xgr

        slots = tensor_arg[: scores.size(0)].tolist()
        if all(slot < 0 for slot in slots):
            return scores
        with self._lock:
            rows = [(i, self._rows.get(slot)) for i, slot in enumerate(slots) if slot >= 0]
        masked: list[int] = []
        for i, row in rows:
            if row is None or row.grammar is None:
                continue
            generated = row.state.generated_tokens if row.state is not None else []
            while row.grammar.accepted < len(generated):
                row.grammar.accept(int(generated[row.grammar.accepted]))
            if self._bitmask is None or self._bitmask.shape[0] < scores.size(0):
                self._bitmask = xgr.allocate_token_bitmask(scores.size(0), self._vocab_size)
            row.grammar.fill(self._bitmask, i)
            masked.append(i)
        if masked:
            assert self._bitmask is not None
            bitmask = self._bitmask[: scores.size(0)].to(scores.device)
            xgr.apply_token_bitmask_inplace(scores, bitmask, indices=masked)
        for i, row in rows:
            if row is not None and row.logprobs is not None:
                row.logprobs.record(scores[i])
        return scores
