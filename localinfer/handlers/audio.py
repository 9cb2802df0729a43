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

import io
import math
import os
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Literal

import anyio
import anyio.to_thread
import numpy as np
import numpy.typing as npt
from anyio.lowlevel import RunVar

from localinfer.errors import InvalidRequest, RequestTooLarge

SAMPLE_RATE = 16_000
#: in-process decodes running at once per event loop (they hold the GIL part of the time)
PYTHON_DECODE_CONCURRENCY = 2

Backend = Literal["auto", "ffmpeg", "python"]
Audio = npt.NDArray[np.float32]

_STDERR_TAIL = 300

_decode_limiter: RunVar[anyio.CapacityLimiter] = RunVar("localinfer_audio_decode_limiter")


def decode_limiter() -> anyio.CapacityLimiter:
    """The limiter for in-process decodes: one per event loop, made on first use.

    A ``RunVar`` rather than a plain module global, because an anyio limiter belongs to
    the event loop (and backend, asyncio or trio) that first used it.
    """
    try:
        return _decode_limiter.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(PYTHON_DECODE_CONCURRENCY)
        _decode_limiter.set(limiter)
        return limiter


def ffmpeg_path() -> str | None:
    return shutil.which("ffmpeg")


def sniff_container(data: bytes) -> str:
    """A short name for the container in ``data`` (``"unknown"`` when nothing matches)."""
    head = data[:16]
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "mp3" if head[1] & 0x06 else "aac"
    return "unknown"


# --- public API ---------------------------------------------------------------------


def decode_audio(
    data: bytes,
    *,
    max_seconds: float,
    sample_rate: int = SAMPLE_RATE,
    backend: Backend = "auto",
) -> Audio:
    """Decode an audio file to mono float32 samples at ``sample_rate``, blocking.

    ``backend`` forces a decoder: ``"python"`` (stdlib WAV, soundfile) or ``"ffmpeg"``.
    """
    container = _check_input(data, max_seconds)
    decoder, use_ffmpeg = _choose_decoder(data, container, backend)
    if decoder is not None:
        try:
            return decoder(data, max_seconds, sample_rate)
        except RequestTooLarge:
            raise
        except InvalidRequest:
            if not use_ffmpeg:
                raise
    if _needs_file(container):
        with _temporary_copy(data) as path:
            command = _ffmpeg_command(f"file:{path}", max_seconds, sample_rate)
            result = subprocess.run(command, capture_output=True, check=False)
    else:
        command = _ffmpeg_command("pipe:0", max_seconds, sample_rate)
        result = subprocess.run(command, input=data, capture_output=True, check=False)
    return _ffmpeg_output(result.returncode, result.stdout, result.stderr, max_seconds, sample_rate)


async def decode_audio_async(
    data: bytes,
    *,
    max_seconds: float,
    sample_rate: int = SAMPLE_RATE,
    backend: Backend = "auto",
) -> Audio:
    """:func:`decode_audio` for the event loop: work runs in a subprocess or a thread."""
    container = _check_input(data, max_seconds)
    decoder, use_ffmpeg = _choose_decoder(data, container, backend)
    limiter = decode_limiter()
    if decoder is not None:
        try:
            return await anyio.to_thread.run_sync(
                decoder, data, max_seconds, sample_rate, limiter=limiter
            )
        except RequestTooLarge:
            raise
        except InvalidRequest:
            if not use_ffmpeg:
                raise
    if _needs_file(container):
        path = await anyio.to_thread.run_sync(_write_temporary, data, limiter=limiter)
        try:
            command = _ffmpeg_command(f"file:{path}", max_seconds, sample_rate)
            result = await anyio.run_process(command, check=False)
        finally:
            await anyio.to_thread.run_sync(_remove, path, limiter=limiter)
    else:
        command = _ffmpeg_command("pipe:0", max_seconds, sample_rate)
        result = await anyio.run_process(command, input=data, check=False)
    # the int16 -> float32 pass over an hour of audio takes tens of ms: not on the loop
    return await anyio.to_thread.run_sync(
        _ffmpeg_output,
        result.returncode,
        result.stdout,
        result.stderr,
        max_seconds,
        sample_rate,
        limiter=limiter,
    )


def resample(audio: npt.NDArray[np.floating], orig_rate: int, new_rate: int) -> Audio:
    """Band-limited resampling (windowed-sinc polyphase filter), numpy only.

    Every output sample is a dot product of the nearest input samples with one of
    ``new_rate / gcd`` precomputed filter phases; the cut-off sits just under the lower
    Nyquist frequency, so downsampling does not alias.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if orig_rate == new_rate or audio.size == 0:
        return audio
    if orig_rate <= 0 or new_rate <= 0:
        raise InvalidRequest(f"invalid sample rate {orig_rate} -> {new_rate}")
    g = math.gcd(orig_rate, new_rate)
    up, down = new_rate // g, orig_rate // g
    bank, half = _filter_bank(up, down)
    taps = 2 * half
    n_out = -(-audio.size * up // down)  # ceil
    padded = np.concatenate([np.zeros(half, np.float32), audio, np.zeros(half + taps, np.float32)])
    out = np.empty(n_out, dtype=np.float32)
    offsets = np.arange(taps)
    chunk = max(1, 2_000_000 // taps)  # bound the gathered window matrix to ~8 MB
    for start in range(0, n_out, chunk):
        n = np.arange(start, min(n_out, start + chunk), dtype=np.int64)
        base, phase = np.divmod(n * down, up)
        # input sample k = base - half + 1 + j sits at padded[base + 1 + j]
        windows = padded[(base + 1)[:, None] + offsets[None, :]]
        out[start : start + n.size] = np.einsum("ij,ij->i", windows, bank[phase])
    return out


# --- input checks and dispatch ----------------------------------------------------


def _check_input(data: bytes, max_seconds: float) -> str:
    if not data:
        raise InvalidRequest("the audio file is empty", param="file")
    if max_seconds <= 0:
        raise ValueError("max_seconds must be positive")
    return sniff_container(data)


_PythonDecoder = Callable[[bytes, float, int], Audio]
_SOUNDFILE_CONTAINERS = ("wav", "flac", "ogg", "mp3")


def _choose_decoder(
    data: bytes, container: str, backend: Backend
) -> tuple[_PythonDecoder | None, bool]:
    """The in-process decoder to try first (None: none), and whether ffmpeg may be used.

    In-process decoding comes first because it costs no process start (a short clip
    decodes in a third of the time); ffmpeg takes what it cannot read, or rejects.
    """
    have_ffmpeg = ffmpeg_path() is not None
    if backend == "ffmpeg":
        if not have_ffmpeg:
            raise InvalidRequest("ffmpeg is not installed on the server", param="file")
        return None, True
    if container == "wav" and _is_pcm_wav(data):
        return _decode_wav, False  # its verdict is final: ffmpeg would accept a cut-off file
    use_ffmpeg = backend == "auto" and have_ffmpeg
    if container in _SOUNDFILE_CONTAINERS and _have_soundfile():
        return _decode_soundfile, use_ffmpeg
    if use_ffmpeg:
        return None, True
    if container == "unknown":
        raise InvalidRequest(
            "unrecognised audio format; send wav, flac, mp3, ogg or m4a", param="file"
        )
    hint = " or soundfile" if container in _SOUNDFILE_CONTAINERS else ""
    raise InvalidRequest(
        f"cannot decode {container} audio on this server (install ffmpeg{hint})", param="file"
    )


# --- WAV (stdlib) ---------------------------------------------------------------------


def _is_pcm_wav(data: bytes) -> bool:
    """True when :mod:`wave` can read the header (integer PCM; not float or compressed)."""
    try:
        with wave.open(io.BytesIO(data)) as reader:
            return reader.getsampwidth() in (1, 2, 3, 4) and reader.getnchannels() > 0
    except (wave.Error, EOFError, ValueError, OSError):
        return False


def _decode_wav(data: bytes, max_seconds: float, sample_rate: int) -> Audio:
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
                raw = _wav_data_after_header(data)
            else:
                _check_duration(declared / rate, max_seconds)
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
    _check_duration(got / rate, max_seconds)
    samples = _pcm_to_float(raw[: got * frame_bytes], width)
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1, dtype=np.float32)
    return resample(samples, rate, sample_rate)


def _wav_data_after_header(data: bytes) -> bytes:
    """Everything after the ``data`` chunk header, walking the RIFF chunks to find it."""
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if chunk_id == b"data":
            return data[pos + 8 :]
        pos += 8 + size + (size & 1)
    return b""


def _pcm_to_float(raw: bytes, width: int) -> Audio:
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
def _have_soundfile() -> bool:
    try:
        import soundfile  # noqa: F401
    except (ImportError, OSError):  # OSError: the bundled libsndfile failed to load
        return False
    return True


def _decode_soundfile(data: bytes, max_seconds: float, sample_rate: int) -> Audio:
    import soundfile

    try:
        with soundfile.SoundFile(io.BytesIO(data)) as f:
            rate = f.samplerate
            if f.frames > 0:
                _check_duration(f.frames / rate, max_seconds)
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
    _check_duration(samples.shape[0] / rate, max_seconds)
    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    return resample(mono, rate, sample_rate)


# --- ffmpeg -------------------------------------------------------------------------------


def _ffmpeg_command(source: str, max_seconds: float, sample_rate: int) -> list[str]:
    ffmpeg = ffmpeg_path()
    if ffmpeg is None:
        raise InvalidRequest("ffmpeg is not installed on the server", param="file")
    return [
        ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-threads", "0",
        "-i", source,
        # stop just past the limit, so an over-long upload costs little to reject
        "-t", f"{max_seconds + 1.0 / sample_rate:.6f}",
        "-map", "0:a:0", "-ac", "1", "-ar", str(sample_rate),
        "-f", "s16le", "-acodec", "pcm_s16le", "pipe:1",
    ]  # fmt: skip


def _needs_file(container: str) -> bool:
    """MP4/M4A usually keep their index (``moov``) after the samples: ffmpeg cannot seek
    back in a pipe and decodes nothing, so those are handed over as a temporary file."""
    return container == "mp4"


def _ffmpeg_output(
    returncode: int, stdout: bytes, stderr: bytes, max_seconds: float, sample_rate: int
) -> Audio:
    message = stderr.decode(errors="replace").strip()[-_STDERR_TAIL:]
    if returncode != 0 or not stdout:
        if "matches no streams" in message:
            raise InvalidRequest("the file has no audio stream", param="file")
        detail = f": {message}" if message else ""
        raise InvalidRequest(f"cannot decode the audio file{detail}", param="file")
    samples = np.frombuffer(stdout[: len(stdout) // 2 * 2], "<i2")
    _check_duration(samples.size / sample_rate, max_seconds)
    return samples.astype(np.float32) / 32768.0


def _write_temporary(data: bytes) -> str:
    fd, path = tempfile.mkstemp(prefix="localinfer-audio-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


@contextmanager
def _temporary_copy(data: bytes) -> Iterator[str]:
    """The bytes as a file for as long as the ``with`` block runs."""
    path = _write_temporary(data)
    try:
        yield path
    finally:
        _remove(path)


# --- shared ---------------------------------------------------------------------------


def _check_duration(seconds: float, max_seconds: float) -> None:
    if seconds > max_seconds + 1e-9:
        raise RequestTooLarge(
            f"the audio is {seconds:.1f} s long; this server accepts at most {max_seconds:g} s",
            param="file",
        )


@lru_cache(maxsize=32)
def _filter_bank(up: int, down: int) -> tuple[npt.NDArray[np.float32], int]:
    """``up`` phases of a Kaiser-windowed sinc low-pass filter, ``2 * half`` taps each.

    Row ``p`` serves output samples that fall ``p / up`` of the way past an input sample;
    its tap ``j`` weighs the input sample ``half - 1 - j`` positions before that one.
    """
    zero_crossings, rolloff, beta = 16, 0.945, 8.6
    # cut-off as a fraction of the input Nyquist frequency: the lower of the two rates
    cutoff = min(1.0, up / down) * rolloff
    half = math.ceil(zero_crossings / cutoff)
    tau = (np.arange(up, dtype=np.float64) / up)[:, None] + (
        half - 1 - np.arange(2 * half, dtype=np.float64)
    )[None, :]
    x = np.clip(tau / half, -1.0, 1.0)
    window = np.i0(beta * np.sqrt(1.0 - x * x)) / np.i0(beta)
    bank = cutoff * np.sinc(cutoff * tau) * window
    return bank.astype(np.float32), half
