"""The async and blocking streams read their sources the same way (one state machine)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator

import pytest

from localinfer.client.results import ChatResult, Timing, Usage
from localinfer.client.streams import (
    ChatStream,
    StreamState,
    SyncChatStream,
    SyncTranscriptStream,
    TranscriptStream,
)

pytestmark = pytest.mark.anyio

RESULT = ChatResult("Hello", "m", "stop", Usage(1, 2, 3), Timing(0.0, 0.0, 0.0, 0.0, 0.0))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_the_state_hands_on_deltas_until_the_result() -> None:
    state = StreamState()
    assert [state.take("He"), state.take("llo"), state.take(RESULT)] == ["He", "llo", None]
    assert (state.text, state.result, state.chat_result()) == ("Hello", RESULT, RESULT)


async def test_async_and_blocking_chat_streams_agree() -> None:
    closed: list[str] = []

    async def source() -> AsyncGenerator[str | ChatResult, None]:
        try:
            yield "He"
            yield "llo"
            yield RESULT
            yield "never read"
        finally:
            closed.append("async")

    def sync_source() -> Generator[str | ChatResult, None, None]:
        try:
            yield "He"
            yield "llo"
            yield RESULT
            yield "never read"
        finally:
            closed.append("sync")

    stream = ChatStream(source())
    assert [d async for d in stream] == ["He", "llo"]
    assert (stream.text, stream.result, await stream.collect()) == ("Hello", RESULT, RESULT)
    blocking = SyncChatStream(sync_source())
    assert list(blocking) == ["He", "llo"]
    assert (blocking.text, blocking.collect()) == ("Hello", RESULT)
    assert closed == ["async", "sync"]  # the result closes the source


async def test_transcript_streams_collect_their_text() -> None:
    async def source() -> AsyncGenerator[str, None]:
        for part in ("one ", "two"):
            yield part

    assert await TranscriptStream(source()).collect() == "one two"
    with SyncTranscriptStream(iter_parts()) as blocking:
        assert next(blocking) == "a"
        assert blocking.collect() == "ab"
        assert blocking.result is None


def iter_parts() -> Generator[str, None, None]:
    yield "a"
    yield "b"
