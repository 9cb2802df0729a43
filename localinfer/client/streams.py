"""Chat streams: text deltas as they are generated, then the whole reply's usage and timing.

The source is a generator that yields ``str`` deltas and, last, the :class:`ChatResult`.
Closing the stream closes the source, which cancels the generation (the HTTP source
drops its connection, the Engine's releases its job). Leaving ``async for`` with
``break`` closes it too once the stream is garbage-collected (at once in CPython); use
``async with`` (or ``with``) to close it at a known point.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from types import TracebackType

from localinfer.client.results import ChatResult


class ChatStream:
    """``async for delta in stream``; ``stream.result`` once it has ended."""

    def __init__(self, source: AsyncGenerator[str | ChatResult, None]):
        self._source = source
        self._parts: list[str] = []
        self.result: ChatResult | None = None

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self._parts)

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> str:
        if self.result is not None:
            raise StopAsyncIteration
        item = await self._source.__anext__()
        if isinstance(item, ChatResult):
            self.result = item
            await self._source.aclose()
            raise StopAsyncIteration
        self._parts.append(item)
        return item

    async def collect(self) -> ChatResult:
        """Read the rest of the stream; the whole reply."""
        async for _ in self:
            pass
        if self.result is None:  # pragma: no cover - sources always end with a result
            raise RuntimeError("the stream ended without a result")
        return self.result

    async def aclose(self) -> None:
        """Stop reading: the generation is cancelled if it is still running."""
        await self._source.aclose()

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class SyncChatStream:
    """``for delta in stream``; ``stream.result`` once it has ended."""

    def __init__(self, source: Generator[str | ChatResult, None, None]):
        self._source = source
        self._parts: list[str] = []
        self.result: ChatResult | None = None

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def __iter__(self) -> SyncChatStream:
        return self

    def __next__(self) -> str:
        if self.result is not None:
            raise StopIteration
        item = next(self._source)
        if isinstance(item, ChatResult):
            self.result = item
            self._source.close()
            raise StopIteration
        self._parts.append(item)
        return item

    def collect(self) -> ChatResult:
        for _ in self:
            pass
        if self.result is None:  # pragma: no cover - sources always end with a result
            raise RuntimeError("the stream ended without a result")
        return self.result

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> SyncChatStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class TranscriptStream:
    """``async for delta in stream``: a transcript's text as segments are decoded;
    ``stream.text`` so far, the whole text once it has ended."""

    def __init__(self, source: AsyncGenerator[str, None]):
        self._source = source
        self._parts: list[str] = []

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def __aiter__(self) -> TranscriptStream:
        return self

    async def __anext__(self) -> str:
        item = await self._source.__anext__()
        self._parts.append(item)
        return item

    async def collect(self) -> str:
        """Read the rest; the whole text."""
        async for _ in self:
            pass
        return self.text

    async def aclose(self) -> None:
        """Stop reading: the transcription is cancelled if it is still running."""
        await self._source.aclose()

    async def __aenter__(self) -> TranscriptStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class SyncTranscriptStream:
    """``for delta in stream``: the blocking twin of :class:`TranscriptStream`."""

    def __init__(self, source: Generator[str, None, None]):
        self._source = source
        self._parts: list[str] = []

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def __iter__(self) -> SyncTranscriptStream:
        return self

    def __next__(self) -> str:
        item = next(self._source)
        self._parts.append(item)
        return item

    def collect(self) -> str:
        for _ in self:
            pass
        return self.text

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> SyncTranscriptStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
