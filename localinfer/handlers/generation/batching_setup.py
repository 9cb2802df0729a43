"""How a continuous-batching manager is set up: its generation config and its KV cache size.

Kept apart from the engine (:mod:`localinfer.handlers.generation.continuous_batching`),
which only runs the manager and watches it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import GenerationConfig, PreTrainedModel

#: KV-cache budget of a continuous-batching engine on CPU (see ``size_cache``)
_CPU_KV_CACHE_GIB = 1.0
#: tokens per forward pass on CPU (long prompts are prefilled in chunks of this size)
_CPU_MAX_BATCH_TOKENS = 1024
#: the cache is sized for requests up to this long, however long the model's context
_MAX_CACHED_CONTEXT = 32_768


def engine_generation_config(
    model: PreTrainedModel, eos_token_ids: frozenset[int]
) -> GenerationConfig:
    """The model's defaults, with the sampling warpers every request then overrides.

    The manager only builds a per-request temperature / top-k / top-p processor when the
    config sets a non-default value for it, hence the placeholders.
    """
    import copy

    config = copy.deepcopy(model.generation_config)
    config.update(  # type: ignore[no-untyped-call]
        do_sample=True,
        temperature=0.7,
        top_k=50,
        top_p=0.9,
        min_p=None,
        typical_p=None,
        epsilon_cutoff=None,
        eta_cutoff=None,
        num_beams=1,
        num_return_sequences=1,
        eos_token_id=sorted(eos_token_ids) or None,
    )
    return config


def size_cache(
    settings: dict[str, Any], model: PreTrainedModel, max_in_flight: int, context: int | None
) -> None:
    """Size the engine's KV cache for ``max_in_flight`` full-context requests, within a budget.

    Left to itself the library takes 90 % of the free GPU memory (60 % of RAM on CPU),
    which starves every other model sharing the device. The budget is ``kv_cache_gib``
    from the settings, else 1 GiB on CPU and half the free memory on CUDA.
    """
    budget_gib = settings.pop("kv_cache_gib", None)
    page_size = int(settings.setdefault("page_size", 256))
    if model.device.type == "cpu":
        settings.setdefault("max_batch_tokens", _CPU_MAX_BATCH_TOKENS)
    if settings.get("num_blocks") is not None:
        return
    if budget_gib is not None:
        budget = int(float(budget_gib) * 2**30)
    elif model.device.type == "cuda":
        import torch

        budget = torch.cuda.mem_get_info(model.device)[0] // 2
    else:
        budget = int(_CPU_KV_CACHE_GIB * 2**30)
    config = model.config.get_text_config()
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    bytes_per_token = 2 * int(config.num_hidden_layers) * kv_heads * head_dim
    bytes_per_block = bytes_per_token * page_size * model.dtype.itemsize
    per_request = math.ceil(min(context or 4096, _MAX_CACHED_CONTEXT) / page_size) + 1
    fits = budget // bytes_per_block
    settings["num_blocks"] = max(per_request, min(per_request * max_in_flight, fits))
