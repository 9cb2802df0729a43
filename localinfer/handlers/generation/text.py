"""Token ids to streamed text: incremental detokenisation and stop strings.

Both are engine-neutral: an engine hands in a ``decode`` function for its tokenizer
(:func:`hf_decode` for a transformers tokenizer; the llama.cpp plugin passes its own).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

#: token ids -> text, special tokens skipped
Decode = Callable[[Sequence[int]], str]


def hf_decode(tokenizer: PreTrainedTokenizerBase) -> Decode:
    """A transformers tokenizer's ``decode``, special tokens skipped, spaces left as they are."""

    def decode(ids: Sequence[int]) -> str:
        return str(
            tokenizer.decode(
                list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False
            )
        )

    return decode


class IncrementalDecoder:
    """Token ids in, text out, releasing only text that later tokens cannot change.

    Decodes a short window (the tokens since the last release plus the ones before them,
    so tokenizers that strip a leading space at a sequence start behave) and holds back
    while the window ends in an incomplete UTF-8 sequence. Cost per token is constant.
    """

    def __init__(self, decode: Decode) -> None:
        self._decode_ids = decode
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
        return self._decode_ids(ids) if ids else ""


class StopStringFilter:
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
