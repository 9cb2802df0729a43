"""Audio given as a path, bytes or a numpy array, as the file part of an upload.

A numpy array is written as 16-bit PCM WAV in memory: the server decodes WAV in process,
without starting ffmpeg, and 16-bit keeps the upload small and lossless enough for
speech models.
"""

from __future__ import annotations

import io
import os
import wave
from pathlib import Path
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

#: what ``transcribe`` accepts: a file path, the file's bytes, or mono/stereo samples
AudioInput: TypeAlias = "str | os.PathLike[str] | bytes | bytearray | npt.ArrayLike"


def wav_bytes(samples: npt.ArrayLike, sample_rate: int) -> bytes:
    """Float samples in [-1, 1] (or int16), shaped ``(n,)`` or ``(n, channels)``, as WAV."""
    array = np.asarray(samples)
    if array.ndim == 2 and array.shape[0] < array.shape[1] and array.shape[0] <= 8:
        array = array.T  # (channels, n) as librosa and torchaudio lay it out
    if array.ndim not in (1, 2) or array.size == 0:
        raise ValueError(f"expected samples shaped (n,) or (n, channels), got {array.shape}")
    if array.dtype != np.int16:
        floats = np.clip(np.nan_to_num(array.astype(np.float32)), -1.0, 1.0)
        array = (floats * 32767.0).round().astype("<i2")
    channels = 1 if array.ndim == 1 else int(array.shape[1])
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(int(sample_rate))
        wav.writeframes(np.ascontiguousarray(array).astype("<i2").tobytes())
    return buffer.getvalue()


def audio_upload(audio: AudioInput, sample_rate: int = 16_000) -> tuple[str, bytes, str]:
    """``(filename, content, content type)`` of the multipart file part for ``audio``."""
    if isinstance(audio, str | os.PathLike):
        path = Path(audio)
        return path.name, path.read_bytes(), "application/octet-stream"
    if isinstance(audio, bytes | bytearray):
        return "audio", bytes(audio), "application/octet-stream"
    return "audio.wav", wav_bytes(audio, sample_rate), "audio/wav"
