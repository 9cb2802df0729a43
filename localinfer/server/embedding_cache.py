"""An LRU cache of embeddings, per model: repeated inputs (RAG re-indexing) skip the model."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any


@dataclass
class EmbeddingCache:
    """``(text, dimensions) -> (vector, tokens)``, bounded to ``capacity`` entries."""

    capacity: int
    hits: int = 0
    misses: int = 0
    _entries: OrderedDict[tuple[str, int | None], tuple[Any, int]] = field(
        default_factory=OrderedDict
    )

    def get(self, text: str, dimensions: int | None) -> tuple[Any, int] | None:
        if self.capacity <= 0:
            return None
        key = (text, dimensions)
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def put(self, text: str, dimensions: int | None, vector: Any, tokens: int) -> None:
        if self.capacity <= 0:
            return
        self._entries[(text, dimensions)] = (vector, tokens)
        self._entries.move_to_end((text, dimensions))
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def snapshot(self) -> dict[str, int]:
        return {
            "size": len(self),
            "capacity": self.capacity,
            "hits": self.hits,
            "misses": self.misses,
        }
