"""``localinfer.Client``: the async client for notebooks and async code.

``await client.chat("Hi")`` returns a :class:`ChatResult`; ``client.chat(..., stream=True)``
a :class:`ChatStream` of text deltas. Errors are the server's own classes
(``ModelNotFound``, ``QueueFull``, ...). Every decision lives in
:class:`~localinfer.client._base.BaseClient`; this module only sends, with ``await``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Literal, TypeVar, Unpack, overload

import anyio
import httpx
from anyio import to_thread

from localinfer import errors as e
from localinfer.calls.options import ChatOptions, check_options
from localinfer.client import _core as core
from localinfer.client._base import (
    BaseClient,
    DownloadFollower,
    Flow,
    Send,
    T,
    finished,
    raise_if_failed,
)
from localinfer.client.audio import AudioInput, audio_upload
from localinfer.client.errors import CONNECTION_ERROR
from localinfer.client.progress import Progress, reporter_for
from localinfer.client.results import (
    CachedModel,
    CatalogEntry,
    ChatResult,
    Download,
    Embeddings,
    ModelInfo,
    ModelList,
    Reranking,
    Speech,
    Stats,
    Transcription,
)
from localinfer.client.streams import ChatStream, TranscriptStream
from localinfer.client.structured import is_model_class, parse_reply

M = TypeVar("M")


class Client(BaseClient):
    """An async client of a localinfer server (``LOCALINFER_URL``, default 127.0.0.1:8000)."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = core.DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        super().__init__(base_url, api_key, timeout)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers, timeout=self.timeout, transport=transport
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- sending ---------------------------------------------------------------------------

    async def _send(self, send: Send) -> httpx.Response:
        with core.transport_errors(self.base_url):
            response = await self._http.request(send.method, send.path, **send.options)  # type: ignore[arg-type]
        core.check(response)
        return response

    async def _run(self, flow: Flow[T]) -> T:
        """Send each request ``flow`` yields, until it returns its result."""
        try:
            send = next(flow)
            while True:
                send = flow.send(await self._send(send))
        except StopIteration as stop:
            result: T = stop.value
            return result

    @asynccontextmanager
    async def _streamed(self, send: Send) -> AsyncIterator[httpx.Response]:
        """A response read as it comes; an error status raised first."""
        with core.transport_errors(self.base_url):
            async with self._http.stream(send.method, send.path, **send.options) as reply:  # type: ignore[arg-type]
                if reply.is_error:
                    await reply.aread()
                    core.check(reply)
                yield reply

    # -- operations ------------------------------------------------------------------------

    async def models(self) -> ModelList:
        """The models the server serves, with their tasks."""
        return await self._run(self._models_flow())

    async def stats(self) -> Stats:
        """Per-model counters: submitted, cancelled, in flight, queue depth, latency."""
        return await self._run(self._stats_flow())

    async def ready(self) -> bool:
        with core.transport_errors(self.base_url):
            response = await self._http.get("/ready")
        return response.status_code == 200

    async def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Wait until every model has loaded (a server that is still starting is waited for)."""
        with anyio.fail_after(timeout_s):
            while True:
                try:
                    if await self.ready():
                        return
                except e.LocalInferError as exc:
                    if exc.code != CONNECTION_ERROR:
                        raise
                await anyio.sleep(0.05)

    # -- chat ------------------------------------------------------------------------------

    @overload
    def chat(
        self,
        messages: core.Messages,
        *,
        response_format: type[M],
        model: str | None = ...,
        stream: Literal[False] = ...,
        tools: Sequence[object] | None = ...,
        tool_choice: str | None = ...,
        parallel_tool_calls: bool | None = ...,
        extra_body: Mapping[str, object] | None = ...,
        **options: Unpack[ChatOptions],
    ) -> Awaitable[M]: ...
    @overload
    def chat(
        self,
        messages: core.Messages,
        *,
        model: str | None = ...,
        stream: Literal[False] = ...,
        response_format: Mapping[str, object] | None = ...,
        tools: Sequence[object] | None = ...,
        tool_choice: str | None = ...,
        parallel_tool_calls: bool | None = ...,
        extra_body: Mapping[str, object] | None = ...,
        **options: Unpack[ChatOptions],
    ) -> Awaitable[ChatResult]: ...
    @overload
    def chat(
        self,
        messages: core.Messages,
        *,
        model: str | None = ...,
        stream: Literal[True],
        response_format: object = ...,
        tools: Sequence[object] | None = ...,
        tool_choice: str | None = ...,
        parallel_tool_calls: bool | None = ...,
        extra_body: Mapping[str, object] | None = ...,
        **options: Unpack[ChatOptions],
    ) -> ChatStream: ...
    def chat(
        self,
        messages: core.Messages,
        *,
        model: str | None = None,
        stream: bool = False,
        response_format: object = None,
        tools: Sequence[object] | None = None,
        tool_choice: str | None = None,
        parallel_tool_calls: bool | None = None,
        extra_body: Mapping[str, object] | None = None,
        **options: Unpack[ChatOptions],
    ) -> Awaitable[ChatResult] | Awaitable[Any] | ChatStream:
        """A reply to a prompt or to messages; ``stream=True`` for its text as it comes.

        ``response_format=SomePydanticModel`` returns the parsed object (enforced by the
        server's constrained decoding); ``tools`` may be pydantic classes or OpenAI dicts,
        and the result's ``tool_calls`` are typed (:class:`ToolCallResult`); ``tool_choice``
        is ``auto``, ``none``, ``required`` or a tool's name. ``model`` may be left out when
        the server serves a single chat model; ``extra_body`` fields go into the request
        body as they are.
        """
        check_options(options)
        extra = self._structured(
            response_format, tools, tool_choice, parallel_tool_calls, extra_body
        )
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

    # -- embeddings and audio --------------------------------------------------------------

    async def embed(
        self, texts: str | Sequence[str], *, model: str | None = None, dimensions: int | None = None
    ) -> Embeddings:
        """One normalised vector per text (``result.similarity()`` compares them)."""
        return await self._run(self._embed_flow(texts, model, dimensions))

    async def rerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        model: str | None = None,
        top_n: int | None = None,
        return_documents: bool = False,
    ) -> Reranking:
        """``documents`` best first by relevance to ``query`` (a reranker, or an embeddings
        model's cosine similarity)."""
        return await self._run(self._rerank_flow(query, documents, model, top_n, return_documents))

    @overload
    def transcribe(
        self,
        audio: AudioInput,
        *,
        model: str | None = ...,
        language: str | None = ...,
        prompt: str | None = ...,
        temperature: float | None = ...,
        translate: bool = ...,
        sample_rate: int = ...,
        stream: Literal[False] = ...,
    ) -> Awaitable[Transcription]: ...
    @overload
    def transcribe(
        self,
        audio: AudioInput,
        *,
        model: str | None = ...,
        language: str | None = ...,
        prompt: str | None = ...,
        temperature: float | None = ...,
        translate: bool = ...,
        sample_rate: int = ...,
        stream: Literal[True],
    ) -> TranscriptStream: ...
    def transcribe(
        self,
        audio: AudioInput,
        *,
        model: str | None = None,
        language: str | None = None,
        prompt: str | None = None,
        temperature: float | None = None,
        translate: bool = False,
        sample_rate: int = 16_000,
        stream: bool = False,
    ) -> Awaitable[Transcription] | TranscriptStream:
        """Speech to text from a path, the file's bytes, or samples (``sample_rate`` Hz);
        ``stream=True`` for the text as segments are decoded."""
        route = "/v1/audio/translations" if translate else "/v1/audio/transcriptions"

        async def request() -> tuple[str, dict[str, str], tuple[str, bytes, str]]:
            name = await self._run(self._model_for(core.TRANSCRIPTION, model))
            upload = await to_thread.run_sync(audio_upload, audio, sample_rate)
            form = core.transcription_form(
                name, language=language, prompt=prompt, temperature=temperature
            )
            return name, form, upload

        if stream:
            return TranscriptStream(self._transcript_stream(route, request))
        return self._transcribe(model, audio, language, prompt, temperature, translate, sample_rate)

    async def _transcribe(
        self,
        model: str | None,
        audio: AudioInput,
        language: str | None,
        prompt: str | None,
        temperature: float | None,
        translate: bool,
        sample_rate: int,
    ) -> Transcription:
        name = await self._run(self._model_for(core.TRANSCRIPTION, model))
        upload = await to_thread.run_sync(audio_upload, audio, sample_rate)
        flow = self._transcribe_flow(
            name,
            upload,
            language=language,
            prompt=prompt,
            temperature=temperature,
            translate=translate,
        )
        return await self._run(flow)

    async def _transcript_stream(
        self,
        route: str,
        request: Callable[[], Awaitable[tuple[str, dict[str, str], tuple[str, bytes, str]]]],
    ) -> AsyncGenerator[str, None]:
        _, form, upload = await request()
        form = {**form, "response_format": "json", "stream": "true"}
        with core.transport_errors(self.base_url):
            async with self._http.stream("POST", route, data=form, files={"file": upload}) as reply:
                if reply.is_error:
                    await reply.aread()
                    core.check(reply)
                decoder = core.SSEDecoder()
                async for line in reply.aiter_lines():
                    data = decoder.feed(line)
                    if data is not None and (delta := core.transcript_delta(data)):
                        yield delta

    @overload
    def speech(
        self,
        text: str,
        *,
        model: str | None = ...,
        voice: str | None = ...,
        response_format: str = ...,
        speed: float | None = ...,
        stream: Literal[False] = ...,
    ) -> Awaitable[Speech]: ...
    @overload
    def speech(
        self,
        text: str,
        *,
        model: str | None = ...,
        voice: str | None = ...,
        response_format: str = ...,
        speed: float | None = ...,
        stream: Literal[True],
    ) -> AsyncIterator[bytes]: ...
    def speech(
        self,
        text: str,
        *,
        model: str | None = None,
        voice: str | None = None,
        response_format: str = "wav",
        speed: float | None = None,
        stream: bool = False,
    ) -> Awaitable[Speech] | AsyncIterator[bytes]:
        """Text to speech: the audio file (which plays in a notebook), or with
        ``stream=True`` its bytes as they are made (a sentence at a time)."""

        body = self._speech_body(text, model, voice, response_format, speed)
        if stream:
            return self._speech_stream(body)
        return self._run(self._speech_flow(body, response_format))

    async def _speech_stream(self, body: Flow[dict[str, object]]) -> AsyncGenerator[bytes, None]:
        payload = await self._run(body)
        async with self._streamed(self._speech_send(payload)) as reply:
            async for chunk in reply.aiter_bytes():
                yield chunk

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
                decoder = core.SSEDecoder()
                async for line in reply.aiter_lines():
                    data = decoder.feed(line)
                    if data == "[DONE]":
                        return
                    if data is not None:
                        yield core.event_payload(data)
            elif reply.headers.get("content-type", "").startswith("application/json"):
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
