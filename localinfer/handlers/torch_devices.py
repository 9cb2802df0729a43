"""Torch device habits shared by the transformers handlers: dtypes, CUDA attention, OOM."""

from __future__ import annotations

import logging
from typing import Any

from localinfer.errors import ConfigurationError

logger = logging.getLogger(__name__)


def resolve_dtype(option: object, device: str) -> Any:
    import torch

    if option is None:
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if isinstance(option, torch.dtype) or option == "auto":
        return option
    dtype = getattr(torch, str(option), None)
    if not isinstance(dtype, torch.dtype):
        raise ConfigurationError(f"unknown dtype {option!r} (try float32, bfloat16, float16, auto)")
    return dtype


def avoid_cudnn_attention() -> None:
    """Keep SDPA off its cuDNN backend, which builds a plan for every new shape.

    Generation changes the attention shape at every token (and continuous batching at
    every step): on an H200 with torch 2.11 each new shape cost ~45 ms, making decoding
    10x slower than with the flash / memory-efficient backends. The switch is process
    wide; ``cudnn_attention: true`` keeps cuDNN for models that prefer it.
    """
    import torch

    if torch.backends.cuda.cudnn_sdp_enabled():  # type: ignore[no-untyped-call]
        logger.info("turning off cuDNN SDPA: it re-plans for every new sequence length")
        torch.backends.cuda.enable_cudnn_sdp(False)


def release_cuda_memory_after(exc: BaseException, device: str) -> None:
    """After an out-of-memory error, hand the cached blocks back so the next request can fit."""
    if device.startswith("cuda") and type(exc).__name__ == "OutOfMemoryError":
        import torch

        torch.cuda.empty_cache()
