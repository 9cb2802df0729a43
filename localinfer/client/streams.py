"""Chat and transcript streams: text deltas as they come, then (chat) the whole reply's
usage and timing.

A source is a generator that yields ``str`` deltas and, for chat, last the
:class:`ChatResult`. One state machine (:class:`StreamState`) reads what a source yields;
the async and blocking streams only pull from their source and hand each item to it.
Closing a stream closes its source, which cancels the work (the HTTP source drops its
connection, the Engine's releases its job). Leaving ``async for`` with ``break`` closes it
too once the stream is garbage-collected (at once in CPython); use ``async with`` (or
``with``) to close it at a known point.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from typing import Generic, Self, TypeVar

from localinfer.client.closing import AsyncClosing, Closing
from localinfer.client.results import ChatResult

#: what a stream hands back once read to its end: the ChatResult, or the transcript's text
R = TypeVar("R")


class StreamState:
    """The text a stream has given so far, and its result once the source said it."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self.result: ChatResult | None = None

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self._parts)

    def take(self, item: str | ChatResult) -> str | None:
        """One item from the source: the delta to hand on, or None once the result came
        (the stream has ended)."""
        if isinstance(item, ChatResult):
            self.result = item
            return None
        self._parts.append(item)
        return item

    def chat_result(self) -> ChatResult:
        if self.result is None:  # pragma: no cover - chat sources always end with a result
            raise RuntimeError("the stream ended without a result")
        return self.result


class _Stream(Generic[R]):
    """What both kinds of stream show: the text so far, the result, what ``collect`` gives."""

    def __init__(self) -> None:
        self._state = StreamState()

    @property
    def text(self) -> str:
        """The text received so far."""
        return self._state.text

    @property
    def result(self) -> ChatResult | None:
        """The whole reply, once a chat stream has ended."""
        return self._state.result

    def _collected(self) -> R:
        raise NotImplementedError


class _AsyncStream(AsyncClosing, _Stream[R]):
    """``async for delta in stream``; ``await stream.collect()`` for the rest."""

    def __init__(self, source: AsyncGenerator[str, None] | AsyncGenerator[str | ChatResult, None]):
        super().__init__()
        self._source = source

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str:
        if self._state.result is not None:
            raise StopAsyncIteration
        delta = self._state.take(await self._source.__anext__())
        if delta is None:
            await self._source.aclose()
            raise StopAsyncIteration
        return delta

    async def collect(self) -> R:
        """Read the rest of the stream; the whole of it."""
        async for _ in self:
            pass
        return self._collected()

    async def aclose(self) -> None:
        """Stop reading: the work is cancelled if it is still running."""
        await self._source.aclose()


class _SyncStream(Closing, _Stream[R]):
    """``for delta in stream``; ``stream.collect()`` for the rest."""

    def __init__(
        self, source: Generator[str, None, None] | Generator[str | ChatResult, None, None]
    ):
        super().__init__()
        self._source = source

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> str:
        if self._state.result is not None:
            raise StopIteration
        delta = self._state.take(next(self._source))
        if delta is None:
            self._source.close()
            raise StopIteration
        return delta

    def collect(self) -> R:
        """Read the rest of the stream; the whole of it."""
        for _ in self:
            pass
        return self._collected()

    def close(self) -> None:
        """Stop reading: the work is cancelled if it is still running."""
        self._source.close()


class ChatStream(_AsyncStream[ChatResult]):
    """``async for delta in stream``; ``stream.result`` once it has ended."""

    def __init__(self, source: AsyncGenerator[str | ChatResult, None]):
        super().__init__(source)

    def _collected(self) -> ChatResult:
        return self._state.chat_result()


class SyncChatStream(_SyncStream[ChatResult]):
    """``for delta in stream``; ``stream.result`` once it has ended."""

    def __init__(self, source: Generator[str | ChatResult, None, None]):
        super().__init__(source)

    def _collected(self) -> ChatResult:
        return self._state.chat_result()


class TranscriptStream(_AsyncStream[str]):
    """``async for delta in stream``: a transcript's text as segments are decoded;
    ``stream.text`` so far, the whole text once it has ended."""

    def __init__(self, source: AsyncGenerator[str, None]):
        super().__init__(source)

    def _collected(self) -> str:
        return self._state.text


class SyncTranscriptStream(_SyncStream[str]):
    """``for delta in stream``: the blocking twin of :class:`TranscriptStream`."""

    def __init__(self, source: Generator[str, None, None]):
        super().__init__(source)

    def _collected(self) -> str:
        return self._state.text
