"""The notebook face: HTTP clients of a localinfer server, and their typed results.

``Client`` (async) and ``SyncClient`` (blocking) share one core, so a request is built and
a reply parsed the same way by both; the in-process :class:`~localinfer.Engine` returns
the same result types. Imported lazily: ``localinfer.client.results`` does not pull in
httpx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from localinfer.client.async_client import Client
    from localinfer.client.images import image_part, user_message
    from localinfer.client.results import (
        CachedModel,
        CatalogEntry,
        ChatResult,
        DeviceStatistics,
        Download,
        Embeddings,
        ModelInfo,
        ModelList,
        ModelStatistics,
        RankedDocument,
        Reranking,
        Similarity,
        Speech,
        Stats,
        Timing,
        Transcription,
        TranscriptSegment,
        Usage,
    )
    from localinfer.client.streams import (
        ChatStream,
        SyncChatStream,
        SyncTranscriptStream,
        TranscriptStream,
    )
    from localinfer.client.sync_client import SyncClient

_WHERE = {
    "Client": "async_client",
    "image_part": "images",
    "user_message": "images",
    "SyncClient": "sync_client",
    "ChatStream": "streams",
    "SyncChatStream": "streams",
    "TranscriptStream": "streams",
    "SyncTranscriptStream": "streams",
    **{
        name: "results"
        for name in (
            "CachedModel",
            "CatalogEntry",
            "ChatResult",
            "DeviceStatistics",
            "Download",
            "Embeddings",
            "ModelInfo",
            "ModelList",
            "ModelStatistics",
            "RankedDocument",
            "Reranking",
            "Similarity",
            "Speech",
            "Stats",
            "Timing",
            "TranscriptSegment",
            "Transcription",
            "Usage",
        )
    },
}

__all__ = [
    "CachedModel",
    "CatalogEntry",
    "ChatResult",
    "ChatStream",
    "Client",
    "DeviceStatistics",
    "Download",
    "Embeddings",
    "ModelInfo",
    "ModelList",
    "ModelStatistics",
    "RankedDocument",
    "Reranking",
    "Similarity",
    "Speech",
    "Stats",
    "SyncChatStream",
    "SyncClient",
    "SyncTranscriptStream",
    "Timing",
    "TranscriptSegment",
    "TranscriptStream",
    "Transcription",
    "Usage",
    "image_part",
    "user_message",
]


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'localinfer.client' has no attribute {name!r}")
    return getattr(importlib.import_module(f"localinfer.client.{module}"), name)
