"""One sequence's row of logits as a ``llama_token_data_array`` that Python can read.

What ``llama_sampler_sample`` builds in C for each call, kept in a numpy buffer instead,
so the samplers can be applied one at a time with the row read between them (logprobs
after the grammar), or the grammar applied to the whole row only when it is needed.
Only sequences that need it allocate one (16 bytes per token of the vocabulary).
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

#: ``llama_token_data``: token id, logit, probability (12 bytes, no padding)
TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


class Candidates:
    """A reusable ``llama_token_data_array`` over the whole vocabulary."""

    def __init__(self, lib: Any, n_vocab: int) -> None:
        if ctypes.sizeof(lib.llama_token_data) != TOKEN_DATA.itemsize:
            raise RuntimeError("llama_token_data changed layout; its rows cannot be read")
        self._lib = lib
        self._ids = np.arange(n_vocab, dtype=np.int32)
        self.cells = np.zeros(n_vocab, dtype=TOKEN_DATA)
        self._by_id = np.empty(n_vocab, dtype=np.float32)
        self.array = lib.llama_token_data_array(
            data=ctypes.cast(self.cells.ctypes.data, ctypes.POINTER(lib.llama_token_data)),
            size=n_vocab,
            selected=-1,
            sorted=False,
        )
        self._pointer = ctypes.byref(self.array)

    def load(self, ctx: Any, index: int) -> None:
        """Row ``index`` of the last decode's logits (``llama_get_logits_ith``), unsampled."""
        n_vocab = len(self._ids)
        row = np.ctypeslib.as_array(self._lib.llama_get_logits_ith(ctx, index), shape=(n_vocab,))
        cells = self.cells
        cells["id"] = self._ids
        cells["logit"] = row
        cells["p"] = 0.0
        array = self.array
        array.size, array.selected, array.sorted = n_vocab, -1, False

    def apply(self, sampler: Any) -> None:
        self._lib.llama_sampler_apply(sampler, self._pointer)

    def logits(self) -> np.ndarray[Any, np.dtype[np.float32]]:
        """The logits as the samplers applied so far left them, by token id (a token a
        sampler cut away reads ``-inf``)."""
        by_id = self._by_id
        by_id.fill(-np.inf)
        kept = int(self.array.size)
        by_id[self.cells["id"][:kept]] = self.cells["logit"][:kept]
        return by_id

    def selected(self) -> int:
        """The token the last sampler selected."""
        selected = int(self.array.selected)
        if not 0 <= selected < int(self.array.size):
            raise RuntimeError(f"the sampler chain selected no token ({selected})")
        return int(self.cells["id"][selected])
