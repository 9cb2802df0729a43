"""Uploaded audio bytes to the mono float32 16 kHz samples speech models take.

Two decoders, chosen per file:

- **In process**, no subprocess to start: PCM WAV (8/16/24/32-bit) through the stdlib
  :mod:`wave` module, resampled with numpy; FLAC, Ogg and MP3 through ``soundfile`` (a
  wheel bundling libsndfile) when that optional package is installed.
- **ffmpeg** (``shutil.which("ffmpeg")``) for everything else (m4a/mp4, webm, ...) and
  for what soundfile cannot read: piped in and out as ``-f s16le -ac 1 -ar 16000``,
  exactly as openai-whisper loads audio.

In-process decoding goes first: a short clip decodes in a third of the time it takes to
start ffmpeg, and the WAV reader notices a file cut short, which ffmpeg decodes without
complaint. Every failure is an :class:`~localinfer.errors.InvalidRequest`
that says what is wrong with the file; audio longer than ``max_seconds`` is a
:class:`~localinfer.errors.RequestTooLarge`, found from the header where possible, before
decoding.

:func:`decode_audio_async` never blocks the event loop: ffmpeg runs through
``anyio.run_process`` and the in-process decoders in worker threads, at most
:data:`PYTHON_DECODE_CONCURRENCY` at a time.
"""

from __future__ import annotations

from localinfer.audio.decode import (
    PYTHON_DECODE_CONCURRENCY,
    Backend,
    decode_audio,
    decode_audio_async,
    decode_limiter,
    sniff_container,
)
from localinfer.audio.ffmpeg import ffmpeg_path
from localinfer.audio.samples import SAMPLE_RATE, Audio, resample

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
