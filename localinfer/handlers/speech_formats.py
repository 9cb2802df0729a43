"""Synthesised speech (16-bit PCM pieces) to the bytes of OpenAI's ``response_format`` s.

``pcm`` (raw 16-bit little-endian samples) and ``wav`` (a streaming header, then those
samples) are written in process. ``mp3``, ``opus`` (in Ogg), ``aac`` (ADTS) and ``flac``
go through one ffmpeg process per response, fed as pieces arrive and read as it writes:
audio keeps streaming, and the encoding runs in that process, off the event loop. That
process was started ahead, while the previous response of its format was encoding.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncGenerator, AsyncIterable
from typing import Literal, get_args

import anyio

from localinfer.audio import ffmpeg_path
from localinfer.audio.encoder import SPARES, EncoderProcess
from localinfer.errors import InvalidRequest
from localinfer.handlers.tasks import SpeechAudio

SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
FORMATS: tuple[str, ...] = get_args(SpeechFormat)

MEDIA_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}

#: ffmpeg output arguments per format
_FFMPEG_OUTPUT: dict[str, tuple[str, ...]] = {
    "mp3": ("-c:a", "libmp3lame", "-b:a", "64k", "-f", "mp3"),
    # an Ogg page every 100 ms, not every second: audio leaves as it is encoded
    "opus": ("-c:a", "libopus", "-b:a", "32k", "-page_duration", "100000", "-f", "ogg"),
    "aac": ("-c:a", "aac", "-b:a", "64k", "-f", "adts"),
    "flac": ("-c:a", "flac", "-f", "flac"),
}


def check_format(fmt: str) -> None:
    """400 for a format we cannot write here (unknown, or ffmpeg missing)."""
    if fmt not in FORMATS:
        raise InvalidRequest(
            f"unknown response_format {fmt!r}; use one of {', '.join(FORMATS)}",
            param="response_format",
        )
    if fmt in _FFMPEG_OUTPUT and ffmpeg_path() is None:
        raise InvalidRequest(
            f"response_format {fmt!r} needs ffmpeg, which this server lacks; use wav or pcm",
            param="response_format",
        )


def wav_header(sample_rate: int) -> bytes:
    """A mono 16-bit WAV header whose sizes say "unknown" (0xFFFFFFFF), for streaming."""
    unknown = 0xFFFFFFFF
    return (
        b"RIFF"
        + struct.pack("<I", unknown)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", unknown)
    )


def wav_file(pcm: bytes, sample_rate: int) -> bytes:
    """A whole mono 16-bit WAV file, with its true sizes."""
    header = (
        b"RIFF"
        + struct.pack("<I", 36 + len(pcm))
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", len(pcm))
    )
    return header + pcm


async def encode(
    first: SpeechAudio, rest: AsyncIterable[SpeechAudio], fmt: str
) -> AsyncGenerator[bytes, None]:
    """The encoded bytes of ``first`` and then ``rest``, yielded as they are made."""
    check_format(fmt)
    if fmt == "pcm":
        yield first.pcm
        async for piece in rest:
            yield piece.pcm
        return
    if fmt == "wav":
        yield wav_header(first.sample_rate) + first.pcm
        async for piece in rest:
            yield piece.pcm
        return
    async for data in _ffmpeg(first, rest, fmt):
        yield data


def _ffmpeg_command(fmt: str, sample_rate: int) -> list[str]:
    ffmpeg = ffmpeg_path()
    if ffmpeg is None:
        raise InvalidRequest(f"response_format {fmt!r} needs ffmpeg", param="response_format")
    return [
        ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-threads", "1",
        # no probing: the input's format is known, and probing would hold back the first
        # sentence until ffmpeg had read seconds more of audio
        "-probesize", "32", "-analyzeduration", "0", "-fflags", "+nobuffer",
        "-f", "s16le", "-ar", str(sample_rate), "-ac", "1", "-i", "pipe:0",
        *_FFMPEG_OUTPUT[fmt], "-flush_packets", "1", "pipe:1",
    ]  # fmt: skip


async def _ffmpeg(
    first: SpeechAudio, rest: AsyncIterable[SpeechAudio], fmt: str
) -> AsyncGenerator[bytes, None]:
    """ffmpeg fed by one task while this generator reads its output (pipes never fill up).

    The process is a spare started ahead (see :mod:`localinfer.audio.encoder`): the first
    encoded bytes wait for the first sentence, not for ffmpeg to start.
    """
    encoder = SPARES.take(_ffmpeg_command(fmt, first.sample_rate))
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_feed, encoder, first, rest)
            async for data in encoder.output():
                yield data
        code = await encoder.wait()
        if code != 0:
            raise RuntimeError(f"ffmpeg failed encoding {fmt} ({code}): {encoder.stderr_tail()!r}")
    finally:
        encoder.kill()


async def _feed(
    encoder: EncoderProcess, first: SpeechAudio, rest: AsyncIterable[SpeechAudio]
) -> None:
    try:
        await encoder.send(first.pcm)
        async for piece in rest:
            if piece.sample_rate != first.sample_rate:
                raise RuntimeError("a speech stream changed its sample rate")
            await encoder.send(piece.pcm)
    finally:
        encoder.close_stdin()
