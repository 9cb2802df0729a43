"""Where plugins written before :mod:`localinfer.audio` import the audio codec from.

The codec is no handler: it lives in :mod:`localinfer.audio`; this module re-exports it.
"""

from __future__ import annotations

from localinfer.audio import (
    PYTHON_DECODE_CONCURRENCY,
    SAMPLE_RATE,
    Audio,
    Backend,
    decode_audio,
    decode_audio_async,
    decode_limiter,
    ffmpeg_path,
    resample,
    sniff_container,
)

__all__ = [
    "PYTHON_DECODE_CONCURRENCY",
    "SAMPLE_RATE",
    "Audio",
    "Backend",
    "decode_audio",
    "decode_audio_async",
    "decode_limiter",
    "ffmpeg_path",
    "resample",
    "sniff_container",
]
