"""Host-memory prompt cache: the KV cells of conversations whose slot went to another one.

With more conversations than slots, every new prompt takes a slot that held another
conversation's cells; without a cache, that conversation's next turn (or a repeated
prompt) is prefilled again from its first token. As llama-server does (``--cache-ram``),
the engine copies a slot's cells to host memory (``llama_state_seq_get_data``) before
giving the slot to a prompt that keeps less than half of them, and puts them back
(``llama_state_seq_set_data``) for a later prompt that shares more with them than with
any slot. Bounded in bytes, oldest first out; an entry goes back to a slot when taken
(the slot holds it now, and is saved again when it is given away).

As with any reuse of cached cells (a slot's own included), a repeated prompt's logits may
differ in the last digits from its cold prefill's; llama.cpp's own ``Llama`` does the same.
This module keeps the entries; the engine makes the llama.cpp calls.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from localinfer.handlers.base import CacheUsage

#: an entry is taken only when it spares at least this share of its own tokens: as
#: llama-server, a long saved conversation is not spent on a prompt that needs little of it
MIN_KEEP = 0.25


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    size = min(len(a), len(b))
    if a[:size] == b[:size]:
        return size
    low, high = 0, size  # a[:low] == b[:low]; a[:high] != b[:high]
    while high - low > 1:
        middle = (low + high) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle
    return low


@dataclass(eq=False)
class Entry:
    """The tokens whose cells one sequence held (position = index), and those cells."""

    tokens: list[int]
    state: bytearray

    @property
    def size(self) -> int:
        return len(self.state)


class PromptCache:
    """Saved sequences, at most ``limit_bytes`` of them in all (0: none kept)."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = max(0, limit_bytes)
        self._entries: collections.deque[Entry] = collections.deque()
        self.size_bytes = 0
        #: entries taken back into a slot, over the cache's life
        self.restored = 0

    def __len__(self) -> int:
        return len(self._entries)

    def usage(self) -> CacheUsage:
        """Bytes held, the bound and the entries (``/v1/stats``); plain reads, safe from
        the event loop while the engine thread adds and drops entries."""
        return CacheUsage(
            bytes=self.size_bytes, limit_bytes=self.limit_bytes, entries=len(self._entries)
        )

    def holds(self, tokens: list[int]) -> bool:
        """Whether an entry already holds these tokens' cells (they need no saving)."""
        return any(common_prefix(entry.tokens, tokens) == len(tokens) for entry in self._entries)

    def put(self, tokens: list[int], state: bytearray) -> bool:
        """Keep a sequence's cells; entries that are a prefix of it go (it holds theirs),
        then the oldest until it fits. Whether it was kept (not when larger than the
        whole cache)."""
        if not tokens or len(state) > self.limit_bytes:
            return False
        for entry in [e for e in self._entries if common_prefix(e.tokens, tokens) == len(e.tokens)]:
            self._remove(entry)
        while self._entries and self.size_bytes + len(state) > self.limit_bytes:
            self._remove(self._entries[0])
        self._entries.append(Entry(list(tokens), state))
        self.size_bytes += len(state)
        return True

    def take(self, prompt: list[int], better_than: int) -> tuple[Entry, int] | None:
        """The entry sharing the longest prefix with ``prompt``, if longer than
        ``better_than`` (what a slot gives already), out of the cache; with that length."""
        best: tuple[Entry, int] | None = None
        for entry in self._entries:
            length = common_prefix(entry.tokens, prompt)
            if length <= (best[1] if best else better_than):
                continue
            if length < MIN_KEEP * len(entry.tokens):
                continue
            best = (entry, length)
        if best is not None:
            self._remove(best[0])
            self.restored += 1
        return best

    def _remove(self, entry: Entry) -> None:
        self._entries.remove(entry)
        self.size_bytes -= entry.size
