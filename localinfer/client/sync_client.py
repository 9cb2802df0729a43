"""``localinfer.SyncClient``: the blocking twin of :class:`~localinfer.Client`, for scripts.

Same methods, same results, same errors: every decision lives in
:class:`~localinfer.client._base.BaseClient`; the sending is
:mod:`.sync_sender`'s, the media calls :mod:`.sync_media`'s.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator, Mapping
from typing import Any, Literal, TypeVar, Unpack, overload

from localinfer.calls.options import ChatCallOptions, check_options
from localinfer.client import _core as core
from localinfer.client._base import (
    DownloadFollower,
    InferReader,
    Send,
    finished,
    is_json,
    raise_if_failed,
)
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
from localinfer.client.streams import SyncChatStream
from localinfer.client.structured import is_model_class, parse_reply
from localinfer.client.sync_media import SyncMedia

M = TypeVar("M")


class SyncClient(SyncMedia):
    """A blocking client of a localinfer server (``LOCALINFER_URL``, default 127.0.0.1:8000)."""

    # -- operations ------------------------------------------------------------------------

    def models(self) -> ModelList:
        """The models the server serves, with their tasks."""
        return self._run(self._models_flow())

    def stats(self) -> Stats:
        """Per-model counters: submitted, cancelled, in flight, queue depth, latency."""
        return self._run(self._stats_flow())

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
    ) -> M: ...
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
    ) -> ChatResult: ...
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
    ) -> SyncChatStream: ...
    def chat(
        self,
        messages: core.Messages,
        *,
        model: str | None = None,
        stream: bool = False,
        response_format: object = None,
        extra_body: Mapping[str, object] | None = None,
        **options: Unpack[ChatCallOptions],
    ) -> ChatResult | SyncChatStream | Any:
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
        if stream:  # the model is chosen now, not at the first read
            return SyncChatStream(self._chat_stream(self._run(body)))
        result = self._run(self._chat_flow(body))
        return (
            parse_reply(response_format, result.text) if is_model_class(response_format) else result
        )

    def _chat_stream(self, payload: dict[str, object]) -> Generator[str | ChatResult, None, None]:
        accumulator = core.ChatAccumulator(str(payload["model"]), time.perf_counter())
        with self._streamed(self._chat_stream_send(payload)) as reply:
            for line in reply.iter_lines():
                delta = accumulator.feed_line(line)
                if delta is not None:
                    yield delta
                elif accumulator.done:
                    break
        yield accumulator.result()

    # -- user code -------------------------------------------------------------------------

    def infer(self, model: str, *args: object, **kwargs: object) -> object:
        """Call ``infer(*args, **kwargs)`` of a served object; a generator's items joined."""
        return self._run(self._infer_flow(model, core.infer_body(args, kwargs, False)))

    def infer_stream(self, model: str, *args: object, **kwargs: object) -> Iterator[object]:
        """The items a served generator yields, as they come (bytes for binary streams)."""
        return self._stream(self._infer_send(model, core.infer_body(args, kwargs, stream=True)))

    def predict(self, model: str, request: object) -> object:
        """Send ``request`` as the body, unchanged (LitAPI-style models take their own JSON)."""
        return self._run(self._infer_flow(model, request))

    def _stream(self, send: Send) -> Generator[object, None, None]:
        with self._streamed(send) as reply:
            if core.is_sse(reply):
                reader = InferReader()
                for line in reply.iter_lines():
                    item = reader.feed_line(line)
                    if reader.done:
                        return
                    if item is not None:
                        yield item[0]
            elif is_json(reply):
                reply.read()
                yield reply.json()
            else:
                yield from reply.iter_bytes()

    # -- model management ------------------------------------------------------------------

    def load(
        self, model: str, *, device: str | None = None, workers: int | None = None
    ) -> ModelInfo:
        """Start serving ``model`` (catalog alias, cached repo id or path on the server)."""
        return self._run(self._load_flow(model, device, workers))

    def unload(self, model: str) -> None:
        """Stop serving ``model`` and free its memory."""
        self._run(self._unload_flow(model))

    def catalog(self) -> tuple[CatalogEntry, ...]:
        """The models the server knows by alias, each with whether it is cached and loaded."""
        return self._run(self._catalog_flow())

    def cached_models(self) -> tuple[CachedModel, ...]:
        """The models in the server's Hugging Face cache, with their size on disk."""
        return self._run(self._cached_models_flow())

    def downloads(self) -> tuple[Download, ...]:
        """The server's downloads: running ones and those that finished recently."""
        return self._run(self._downloads_flow())

    def cancel_download(self, download_id: str) -> Download:
        """Stop a download (a ``pull`` following it then raises ``DownloadCancelled``)."""
        return self._run(self._cancel_download_flow(download_id))

    def pull(self, model: str, *, progress: Progress = True) -> Download:
        """Download ``model`` into the server's cache, showing progress."""
        download = self._run(self._start_download_flow(model))
        reporter = reporter_for(progress)
        try:
            if not finished(download):
                reporter.update(download)
                follower = DownloadFollower(download)
                with self._streamed(self._download_events_send(download)) as reply:
                    for line in reply.iter_lines():
                        if follower.feed_line(line):
                            reporter.update(follower.download)
                        if follower.done:
                            break
                download = follower.download
        finally:
            reporter.close(download)
        return raise_if_failed(download)
