"""``localinfer.Client``: the async client for notebooks and async code.

``await client.chat("Hi")`` returns a :class:`ChatResult`; ``client.chat(..., stream=True)``
a :class:`ChatStream` of text deltas. Errors are the server's own classes
(``ModelNotFound``, ``QueueFull``, ...). Every decision lives in
:class:`~localinfer.client._base.BaseClient`; the sending is
:mod:`.async_sender`'s, the media calls :mod:`.async_media`'s.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Mapping
from typing import Any, Literal, TypeVar, Unpack, overload

from localinfer.calls.options import ChatCallOptions, check_options
from localinfer.client import _core as core
from localinfer.client._base import (
    DownloadFollower,
    Flow,
    InferReader,
    Send,
    finished,
    is_json,
    raise_if_failed,
)
from localinfer.client.async_media import AsyncMedia
from localinfer.client.progress import Progress, reporter_for
from localinfer.client.results import (
    CachedModel,
    CatalogEntry,
    ChatResult,
    Download,
    ModelInfo,
    ModelList,
    Stats,
)
from localinfer.client.streams import ChatStream
from localinfer.client.structured import is_model_class, parse_reply

M = TypeVar("M")


class Client(AsyncMedia):
    """An async client of a localinfer server (``LOCALINFER_URL``, default 127.0.0.1:8000)."""

    # -- operations ------------------------------------------------------------------------

    async def models(self) -> ModelList:
        """The models the server serves, with their tasks."""
        return await self._run(self._models_flow())

    async def stats(self) -> Stats:
        """Per-model counters: submitted, cancelled, in flight, queue depth, latency."""
        return await self._run(self._stats_flow())

    # -- chat ------------------------------------------------------------------------------

    @overload
    def chat(
        self,
        messages: core.Messages,
        *,
        response_format: type[M],
        model: str | None = ...,
        stream: Literal[False] = ...,
        extra_body: Mapping[str, object] | None = ...,
        **options: Unpack[ChatCallOptions],
    ) -> Awaitable[M]: ...
    @overload
    def chat(
        self,
        messages: core.Messages,
        *,
        model: str | None = ...,
        stream: Literal[False] = ...,
        response_format: Mapping[str, object] | None = ...,
        extra_body: Mapping[str, object] | None = ...,
        **options: Unpack[ChatCallOptions],
    ) -> Awaitable[ChatResult]: ...
    @overload
    def chat(
        self,
        messages: core.Messages,
        *,
        model: str | None = ...,
        stream: Literal[True],
        response_format: object = ...,
        extra_body: Mapping[str, object] | None = ...,
        **options: Unpack[ChatCallOptions],
    ) -> ChatStream: ...
    def chat(
        self,
        messages: core.Messages,
        *,
        model: str | None = None,
        stream: bool = False,
        response_format: object = None,
        extra_body: Mapping[str, object] | None = None,
        **options: Unpack[ChatCallOptions],
    ) -> Awaitable[ChatResult] | Awaitable[Any] | ChatStream:
        """A reply to a prompt or to messages; ``stream=True`` for its text as it comes.

        ``response_format=SomePydanticModel`` returns the parsed object (enforced by the
        server's constrained decoding); ``tools`` may be pydantic classes or OpenAI dicts,
        and the result's ``tool_calls`` are typed (:class:`ToolCallResult`); ``tool_choice``
        is ``auto``, ``none``, ``required`` or a tool's name. ``model`` may be left out when
        the server serves a single chat model; ``extra_body`` fields go into the request
        body as they are.
        """
        check_options(options, ChatCallOptions)
        extra = self._structured(response_format, options, extra_body)
        body = self._chat_body(messages, model, stream, options, extra)
        if stream:
            return ChatStream(self._chat_stream(body))
        if is_model_class(response_format):
            return self._chat_parsed(body, response_format)
        return self._run(self._chat_flow(body))

    async def _chat_parsed(self, body: Flow[dict[str, object]], parse_as: object) -> Any:
        """The reply parsed into the pydantic class that ``response_format`` named."""
        return parse_reply(parse_as, (await self._run(self._chat_flow(body))).text)

    async def _chat_stream(
        self, body: Flow[dict[str, object]]
    ) -> AsyncGenerator[str | ChatResult, None]:
        payload = await self._run(body)
        accumulator = core.ChatAccumulator(str(payload["model"]), time.perf_counter())
        async with self._streamed(self._chat_stream_send(payload)) as reply:
            async for line in reply.aiter_lines():
                delta = accumulator.feed_line(line)
                if delta is not None:
                    yield delta
                elif accumulator.done:
                    break
        yield accumulator.result()

    # -- user code -------------------------------------------------------------------------

    async def infer(self, model: str, *args: object, **kwargs: object) -> object:
        """Call ``infer(*args, **kwargs)`` of a served object; a generator's items joined."""
        return await self._run(self._infer_flow(model, core.infer_body(args, kwargs, False)))

    def infer_stream(self, model: str, *args: object, **kwargs: object) -> AsyncIterator[object]:
        """The items a served generator yields, as they come (bytes for binary streams)."""
        return self._stream(self._infer_send(model, core.infer_body(args, kwargs, stream=True)))

    async def predict(self, model: str, request: object) -> object:
        """Send ``request`` as the body, unchanged (LitAPI-style models take their own JSON)."""
        return await self._run(self._infer_flow(model, request))

    async def _stream(self, send: Send) -> AsyncGenerator[object, None]:
        async with self._streamed(send) as reply:
            if core.is_sse(reply):
                reader = InferReader()
                async for line in reply.aiter_lines():
                    item = reader.feed_line(line)
                    if reader.done:
                        return
                    if item is not None:
                        yield item[0]
            elif is_json(reply):
                await reply.aread()
                yield reply.json()
            else:
                async for chunk in reply.aiter_bytes():
                    yield chunk

    # -- model management ------------------------------------------------------------------

    async def load(
        self, model: str, *, device: str | None = None, workers: int | None = None
    ) -> ModelInfo:
        """Start serving ``model`` (catalog alias, cached repo id or path on the server)."""
        return await self._run(self._load_flow(model, device, workers))

    async def unload(self, model: str) -> None:
        """Stop serving ``model`` and free its memory."""
        await self._run(self._unload_flow(model))

    async def catalog(self) -> tuple[CatalogEntry, ...]:
        """The models the server knows by alias, each with whether it is cached and loaded."""
        return await self._run(self._catalog_flow())

    async def cached_models(self) -> tuple[CachedModel, ...]:
        """The models in the server's Hugging Face cache, with their size on disk."""
        return await self._run(self._cached_models_flow())

    async def downloads(self) -> tuple[Download, ...]:
        """The server's downloads: running ones and those that finished recently."""
        return await self._run(self._downloads_flow())

    async def cancel_download(self, download_id: str) -> Download:
        """Stop a download (a ``pull`` following it then raises ``DownloadCancelled``)."""
        return await self._run(self._cancel_download_flow(download_id))

    async def pull(self, model: str, *, progress: Progress = True) -> Download:
        """Download ``model`` into the server's cache, showing progress (a bar in Jupyter)."""
        download = await self._run(self._start_download_flow(model))
        reporter = reporter_for(progress)
        try:
            if not finished(download):
                reporter.update(download)
                follower = DownloadFollower(download)
                async with self._streamed(self._download_events_send(download)) as reply:
                    async for line in reply.aiter_lines():
                        if follower.feed_line(line):
                            reporter.update(follower.download)
                        if follower.done:
                            break
                download = follower.download
        finally:
            reporter.close(download)
        return raise_if_failed(download)
