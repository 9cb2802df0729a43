"""What a loaded transformers model says about itself: its context limit, its end-of-turn ids.

Shared by every transformers handler (text chat, vision chat), so each reads them alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

#: tokenizers without a known limit report this (transformers' VERY_LARGE_INTEGER)
_NO_LIMIT = 10**29


def context_length(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, options: Mapping[str, Any]
) -> int | None:
    """The smallest meaningful limit among the model's positions and the tokenizer's maximum."""
    if options.get("context_length"):
        return int(options["context_length"])
    limits = []
    config = model.config.get_text_config()
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            limits.append(value)
            break
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < _NO_LIMIT:
        limits.append(value)
    return min(limits) if limits else None


def eos_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    """Every id that ends a turn: the generation config's list, else the tokenizer's EOS."""
    configured = model.generation_config.eos_token_id
    if configured is None:
        configured = tokenizer.eos_token_id
    if configured is None:
        return frozenset()
    ids = [configured] if isinstance(configured, int) else list(configured)
    return frozenset(int(i) for i in ids if int(i) >= 0)
