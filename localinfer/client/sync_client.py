"""``localinfer.SyncClient``: the blocking twin of :class:`~localinfer.Client`, for scripts.

Same methods, same results, same errors: every decision lives in
:class:`~localinfer.client._base.BaseClient`; this module only sends, blocking.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Literal, TypeVar, Unpack, overload

import httpx

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
from localinfer.client.streams import SyncChatStream, SyncTranscriptStream
from localinfer.client.structured import is_model_class, parse_reply

M = TypeVar("M")


class SyncClient(BaseClient):
    """A blocking client of a localinfer server (``LOCALINFER_URL``, default 127.0.0.1:8000)."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = core.DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ):
        super().__init__(base_url, api_key, timeout)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=self.headers,
            timeout=self.timeout,
            transport=transport,
            event_hooks={"request": [self._refuse_to_deadlock]},
        )
        #: the event loop serving ``base_url`` when that server runs in this process
        #: (``Server.sync_client()``): blocking that loop's thread would wait forever
        self.server_loop: object | None = None

    def _refuse_to_deadlock(self, request: httpx.Request) -> None:
        try:
            running: object | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None and running is self.server_loop:
            raise RuntimeError(
                "this SyncClient would block the event loop its server runs in and wait "
                "forever: in a notebook or async code use server.client() and await it"
            )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- sending ---------------------------------------------------------------------------

    def _send(self, send: Send) -> httpx.Response:
        with core.transport_errors(self.base_url):
            response = self._http.request(send.method, send.path, **send.options)  # type: ignore[arg-type]
        core.check(response)
        return response

    def _run(self, flow: Flow[T]) -> T:
        """Send each request ``flow`` yields, until it returns its result."""
        try:
            send = next(flow)
            while True:
                send = flow.send(self._send(send))
        except StopIteration as stop:
            result: T = stop.value
            return result

    @contextmanager
    def _streamed(self, send: Send) -> Iterator[httpx.Response]:
        """A response read as it comes; an error status raised first."""
        with (
            core.transport_errors(self.base_url),
            self._http.stream(send.method, send.path, **send.options) as reply,  # type: ignore[arg-type]
        ):
            if reply.is_error:
                reply.read()
                core.check(reply)
            yield reply

    # -- operations ------------------------------------------------------------------------

    def models(self) -> ModelList:
        """The models the server serves, with their tasks."""
        return self._run(self._models_flow())

    def stats(self) -> Stats:
        """Per-model counters: submitted, cancelled, in flight, queue depth, latency."""
        return self._run(self._stats_flow())

    def ready(self) -> bool:
        with core.transport_errors(self.base_url):
            return self._http.get("/ready").status_code == 200

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Wait until every model has loaded (a server that is still starting is waited for)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if self.ready():
                    return
            except e.LocalInferError as exc:
                if exc.code != CONNECTION_ERROR:
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.base_url} was not ready within {timeout_s:g} s")
            time.sleep(0.05)

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
    ) -> M: ...
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
    ) -> ChatResult: ...
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
    ) -> SyncChatStream: ...
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
    ) -> ChatResult | SyncChatStream | Any:
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

    # -- embeddings and audio --------------------------------------------------------------

    def embed(
        self, texts: str | Sequence[str], *, model: str | None = None, dimensions: int | None = None
    ) -> Embeddings:
        """One normalised vector per text (``result.similarity()`` compares them)."""
        return self._run(self._embed_flow(texts, model, dimensions))

    def rerank(
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
        return self._run(self._rerank_flow(query, documents, model, top_n, return_documents))

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
    ) -> Transcription: ...
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
    ) -> SyncTranscriptStream: ...
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
    ) -> Transcription | SyncTranscriptStream:
        """Speech to text from a path, the file's bytes, or samples (``sample_rate`` Hz);
        ``stream=True`` for the text as segments are decoded."""
        name = self._run(self._model_for(core.TRANSCRIPTION, model))
        if stream:
            form = core.transcription_form(
                name, language=language, prompt=prompt, temperature=temperature
            )
            form = {**form, "response_format": "json", "stream": "true"}
            route = "/v1/audio/translations" if translate else "/v1/audio/transcriptions"
            files = {"file": audio_upload(audio, sample_rate)}
            return SyncTranscriptStream(self._transcript_stream(route, form, files))
        flow = self._transcribe_flow(
            name,
            audio_upload(audio, sample_rate),
            language=language,
            prompt=prompt,
            temperature=temperature,
            translate=translate,
        )
        return self._run(flow)

    def _transcript_stream(
        self, route: str, form: dict[str, str], files: dict[str, tuple[str, bytes, str]]
    ) -> Generator[str, None, None]:
        with (
            core.transport_errors(self.base_url),
            self._http.stream("POST", route, data=form, files=files) as reply,
        ):
            if reply.is_error:
                reply.read()
                core.check(reply)
            decoder = core.SSEDecoder()
            for line in reply.iter_lines():
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
    ) -> Speech: ...
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
    ) -> Iterator[bytes]: ...
    def speech(
        self,
        text: str,
        *,
        model: str | None = None,
        voice: str | None = None,
        response_format: str = "wav",
        speed: float | None = None,
        stream: bool = False,
    ) -> Speech | Iterator[bytes]:
        """Text to speech: the audio file, or with ``stream=True`` its bytes as made."""
        body = self._speech_body(text, model, voice, response_format, speed)
        if stream:
            return self._speech_stream(self._run(body))
        return self._run(self._speech_flow(body, response_format))

    def _speech_stream(self, payload: dict[str, object]) -> Generator[bytes, None, None]:
        with self._streamed(self._speech_send(payload)) as reply:
            yield from reply.iter_bytes()

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
                decoder = core.SSEDecoder()
                for line in reply.iter_lines():
                    data = decoder.feed(line)
                    if data == "[DONE]":
                        return
                    if data is not None:
                        yield core.event_payload(data)
            elif reply.headers.get("content-type", "").startswith("application/json"):
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
