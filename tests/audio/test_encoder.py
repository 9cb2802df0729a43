"""Encoder processes started ahead: taken by the next response, bounded, killed at close."""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator

import anyio
import numpy as np
import pytest

from localinfer.audio.encoder import EncoderProcess, SparePool
from localinfer.handlers.speech_formats import encode
from localinfer.handlers.tasks import SpeechAudio

#: a stand-in encoder: upper-cases its input, writing as it reads
UPPER = [
    sys.executable,
    "-c",
    "import sys\nfor line in sys.stdin.buffer: sys.stdout.buffer.write(line.upper()); "
    "sys.stdout.buffer.flush()",
]


async def _round_trip(process: EncoderProcess, data: bytes) -> bytes:
    async def feed() -> None:
        await process.send(data)
        process.close_stdin()

    out = b""
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(feed)
        async for chunk in process.output():
            out += chunk
    assert await process.wait() == 0
    return out


def test_a_taken_spare_is_the_one_started_before() -> None:
    pool = SparePool()
    try:
        pool.take(UPPER).kill()
        (spare,) = pool._spares.values()
        taken = pool.take(UPPER)
        assert taken is spare
        taken.kill()
    finally:
        pool.close()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_one_spare_serves_event_loops_other_than_its_starters(backend: str) -> None:
    pool = SparePool()
    try:
        for _ in range(2):  # each anyio.run is a new event loop
            process = pool.take(UPPER)
            assert anyio.run(_round_trip, process, b"abc\ndef\n", backend=backend) == b"ABC\nDEF\n"
            process.kill()
    finally:
        pool.close()


def test_the_pool_is_bounded_and_close_kills_every_spare() -> None:
    pool = SparePool(max_commands=2)
    commands = [[*UPPER, str(n)] for n in range(3)]
    for command in commands:
        pool.take(command).kill()
    assert len(pool) == 2
    spares = list(pool._spares.values())
    pool.close()
    assert len(pool) == 0
    assert all(spare.process.poll() is not None for spare in spares)


def test_a_spare_that_died_is_replaced() -> None:
    pool = SparePool()
    try:
        pool.take(UPPER).kill()
        (spare,) = pool._spares.values()
        spare.kill()
        fresh = pool.take(UPPER)
        assert fresh is not spare and fresh.process.poll() is None
        fresh.kill()
    finally:
        pool.close()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac"])
def test_encoded_bytes_leave_before_the_next_sentence_is_made(fmt: str) -> None:
    """The rest is held back until bytes of the first sentence arrive: no deadlock means
    the encoder sends its first frames without waiting for more input."""
    tone = (np.sin(np.arange(48_000) * 0.05) * 8000).astype("<i2").tobytes()
    first = SpeechAudio(tone, 24_000)

    async def main() -> int:
        arrived = anyio.Event()

        async def rest() -> AsyncIterator[SpeechAudio]:
            await arrived.wait()
            yield SpeechAudio(tone, 24_000)

        size = 0
        with anyio.fail_after(20):
            async for data in encode(first, rest(), fmt):
                size += len(data)
                if size > 600:  # past any header: audio frames
                    arrived.set()
        return size

    assert anyio.run(main) > 1000
