"""Choosing a decoder for an upload and running it, blocking or on the event loop."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Literal

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar

from localinfer.audio.ffmpeg import (
    ffmpeg_command,
    ffmpeg_output,
    ffmpeg_path,
    needs_file,
    remove,
    temporary_copy,
    write_temporary,
)
from localinfer.audio.in_process import decode_soundfile, decode_wav, have_soundfile, is_pcm_wav
from localinfer.audio.samples import SAMPLE_RATE, Audio
from localinfer.errors import InvalidRequest, RequestTooLarge

PYTHON_DECODE_CONCURRENCY = 2

Backend = Literal["auto", "ffmpeg", "python"]


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
    if needs_file(container):
        with temporary_copy(data) as path:
            command = ffmpeg_command(f"file:{path}", max_seconds, sample_rate)
            result = subprocess.run(command, capture_output=True, check=False)
    else:
        command = ffmpeg_command("pipe:0", max_seconds, sample_rate)
        result = subprocess.run(command, input=data, capture_output=True, check=False)
    return ffmpeg_output(result.returncode, result.stdout, result.stderr, max_seconds, sample_rate)


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
    if needs_file(container):
        path = await anyio.to_thread.run_sync(write_temporary, data, limiter=limiter)
        try:
            command = ffmpeg_command(f"file:{path}", max_seconds, sample_rate)
            result = await anyio.run_process(command, check=False)
        finally:
            await anyio.to_thread.run_sync(remove, path, limiter=limiter)
    else:
        command = ffmpeg_command("pipe:0", max_seconds, sample_rate)
        result = await anyio.run_process(command, input=data, check=False)
    # the int16 -> float32 pass over an hour of audio takes tens of ms: not on the loop
    return await anyio.to_thread.run_sync(
        ffmpeg_output,
        result.returncode,
        result.stdout,
        result.stderr,
        max_seconds,
        sample_rate,
        limiter=limiter,
    )


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
    if container == "wav" and is_pcm_wav(data):
        return decode_wav, False  # its verdict is final: ffmpeg would accept a cut-off file
    use_ffmpeg = backend == "auto" and have_ffmpeg
    if container in _SOUNDFILE_CONTAINERS and have_soundfile():
        return decode_soundfile, use_ffmpeg
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
