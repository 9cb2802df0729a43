"""Decoding through an ``ffmpeg`` subprocess, for every container the in-process decoders
cannot read: the command line, its output as samples, and temporary files for MP4.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from localinfer.audio.samples import Audio, check_duration
from localinfer.errors import InvalidRequest

_STDERR_TAIL = 300


def ffmpeg_path() -> str | None:
    return shutil.which("ffmpeg")


# --- ffmpeg -------------------------------------------------------------------------------


def ffmpeg_command(source: str, max_seconds: float, sample_rate: int) -> list[str]:
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


def needs_file(container: str) -> bool:
    """MP4/M4A usually keep their index (``moov``) after the samples: ffmpeg cannot seek
    back in a pipe and decodes nothing, so those are handed over as a temporary file."""
    return container == "mp4"


def ffmpeg_output(
    returncode: int, stdout: bytes, stderr: bytes, max_seconds: float, sample_rate: int
) -> Audio:
    message = stderr.decode(errors="replace").strip()[-_STDERR_TAIL:]
    if returncode != 0 or not stdout:
        if "matches no streams" in message:
            raise InvalidRequest("the file has no audio stream", param="file")
        detail = f": {message}" if message else ""
        raise InvalidRequest(f"cannot decode the audio file{detail}", param="file")
    samples = np.frombuffer(stdout[: len(stdout) // 2 * 2], "<i2")
    check_duration(samples.size / sample_rate, max_seconds)
    return samples.astype(np.float32) / 32768.0


def write_temporary(data: bytes) -> str:
    fd, path = tempfile.mkstemp(prefix="localinfer-audio-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


@contextmanager
def temporary_copy(data: bytes) -> Iterator[str]:
    """The bytes as a file for as long as the ``with`` block runs."""
    path = write_temporary(data)
    try:
        yield path
    finally:
        remove(path)
