"""The decoders that need no subprocess: integer PCM WAV through the stdlib :mod:`wave`,
and FLAC, Ogg, MP3 and float WAV through the optional ``soundfile`` package.
"""

from __future__ import annotations

import io
import wave
from functools import lru_cache

import numpy as np

from localinfer.audio.samples import Audio, check_duration, resample
from localinfer.errors import InvalidRequest

# --- WAV (stdlib) ---------------------------------------------------------------------


def is_pcm_wav(data: bytes) -> bool:
    """True when :mod:`wave` can read the header (integer PCM; not float or compressed)."""
    try:
        with wave.open(io.BytesIO(data)) as reader:
            return reader.getsampwidth() in (1, 2, 3, 4) and reader.getnchannels() > 0
    except (wave.Error, EOFError, ValueError, OSError):
        return False


def decode_wav(data: bytes, max_seconds: float, sample_rate: int) -> Audio:
    try:
        with wave.open(io.BytesIO(data)) as reader:
            channels = reader.getnchannels()
            width = reader.getsampwidth()
            rate = reader.getframerate()
            declared = reader.getnframes()
            frame_bytes = channels * width
            # streaming writers leave the data size at 0 or 0xFFFFFFFF: take what is there
            unknown_length = declared in (0, 0xFFFFFFFF // frame_bytes)
            if rate <= 0:
                raise InvalidRequest(f"invalid WAV sample rate {rate}", param="file")
            if unknown_length:
                raw = wav_data_after_header(data)
            else:
                check_duration(declared / rate, max_seconds)
                raw = reader.readframes(declared)
    except (wave.Error, EOFError, ValueError) as exc:
        raise InvalidRequest(f"corrupt WAV file: {exc}", param="file") from None
    got = len(raw) // frame_bytes
    if not unknown_length and got < declared:
        raise InvalidRequest(
            f"truncated WAV file: the header declares {declared} frames, the file holds {got}",
            param="file",
        )
    if got == 0:
        raise InvalidRequest("the WAV file holds no audio samples", param="file")
    check_duration(got / rate, max_seconds)
    samples = pcm_to_float(raw[: got * frame_bytes], width)
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1, dtype=np.float32)
    return resample(samples, rate, sample_rate)


def wav_data_after_header(data: bytes) -> bytes:
    """Everything after the ``data`` chunk header, walking the RIFF chunks to find it."""
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if chunk_id == b"data":
            return data[pos + 8 :]
        pos += 8 + size + (size & 1)
    return b""


def pcm_to_float(raw: bytes, width: int) -> Audio:
    """Little-endian integer PCM (8-bit unsigned, 16/24/32-bit signed) to [-1, 1) floats."""
    if width == 1:
        return (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    if width == 2:
        return np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    if width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        return value.astype(np.float32) / float(1 << 23)
    if width == 4:
        return (np.frombuffer(raw, "<i4").astype(np.float64) / float(1 << 31)).astype(np.float32)
    raise InvalidRequest(f"unsupported WAV sample width: {8 * width} bits", param="file")


# --- soundfile (FLAC, Ogg, MP3, float WAV without ffmpeg) -----------------------------


@lru_cache(maxsize=1)
def have_soundfile() -> bool:
    try:
        import soundfile  # noqa: F401
    except (ImportError, OSError):  # OSError: the bundled libsndfile failed to load
        return False
    return True


def decode_soundfile(data: bytes, max_seconds: float, sample_rate: int) -> Audio:
    import soundfile

    try:
        with soundfile.SoundFile(io.BytesIO(data)) as f:
            rate = f.samplerate
            if f.frames > 0:
                check_duration(f.frames / rate, max_seconds)
            limit = int(max_seconds * rate) + 1
            samples = f.read(frames=limit, dtype="float32", always_2d=True)
    except soundfile.LibsndfileError as exc:
        raise InvalidRequest(
            f"cannot decode the audio file: {exc.error_string}", param="file"
        ) from None
    except (RuntimeError, ValueError, EOFError) as exc:
        raise InvalidRequest(f"cannot decode the audio file: {exc}", param="file") from None
    if samples.shape[0] == 0:
        raise InvalidRequest("the audio file holds no audio samples", param="file")
    check_duration(samples.shape[0] / rate, max_seconds)
    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    return resample(mono, rate, sample_rate)
