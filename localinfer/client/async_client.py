"""``localinfer.Client``: the async client for notebooks and async code.

``await client.chat("Hi")`` returns a :class:`ChatResult`; ``client.chat(..., stream=True)``
a :class:`ChatStream` of text deltas. Errors are the server's own classes
(``ModelNotFound``, ``QueueFull``, ...). Requests, parsing and errors live in ``_core``;
this module only sends.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Literal, TypeAlias, TypeVar, overload

import anyio
import httpx
from anyio import to_thread

from localinfer import errors as e
from localinfer.client import _core as core
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
    Stats,
    Transcription,
)
from localinfer.client.streams import ChatStream
from localinfer.client.structured import is_model_class, parse_reply

#: builds a request body once the default model is known (that may need a request)
M = TypeVar("M")
BodyFactory: TypeAlias = Callable[[], Awaitable[dict[str, object]]]


class Client:
    """An async client of a localinfer server (``LOCALINFER_URL``, default 127.0.0.1:8000)."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = core.DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.base_url = (base_url or core.default_base_url()).rstrip("/")
        self.api_key = api_key if api_key is not None else core.default_api_key()
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=core.auth_headers(self.api_key),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
        )
        self._models: ModelList | None = None

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"

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

    # -- plumbing --------------------------------------------------------------------------

    async def _request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        with core.transport_errors(self.base_url):
            response = await self._http.request(method, path, **kwargs)  # type: ignore[arg-type]
        core.check(response)
        return response

    async def _model_for(self, task: str, model: str | None) -> str:
        if model is not None:
            return model
        for refresh in (False, True):
            if refresh or self._models is None:
                self._models = await self.models()
            chosen = core.pick_model(self._models, task, None)
            if chosen is not None:
                return chosen
        assert self._models is not None
        raise core.no_default_model(self._models, task)

    # -- operations ------------------------------------------------------------------------

    async def models(self) -> ModelList:
        """The models the server serves, with their tasks."""
        self._models = core.model_list((await self._request("GET", "/v1/models")).json())
        return self._models

    async def stats(self) -> Stats:
        """Per-model counters: submitted, cancelled, in flight, queue depth, latency."""
        return core.stats_result((await self._request("GET", "/v1/stats")).json())

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
    def chat(  # type: ignore[overload-overlap]
        self,
        messages: core.Messages,
        *,
        response_format: type[M],
        model: str | None = ...,
        stream: Literal[False] = ...,
        max_tokens: int | None = ...,
        temperature: float | None = ...,
        top_p: float | None = ...,
        stop: str | Sequence[str] | None = ...,
        seed: int | None = ...,
        system: str | None = ...,
        **params: object,
    ) -> Awaitable[M]: ...
    @overload
    def chat(
        self,
        messages: core.Messages,
        *,
        model: str | None = ...,
        stream: Literal[False] = ...,
        max_tokens: int | None = ...,
        temperature: float | None = ...,
        top_p: float | None = ...,
        stop: str | Sequence[str] | None = ...,
        seed: int | None = ...,
        system: str | None = ...,
        **params: object,
    ) -> Awaitable[ChatResult]: ...
    @overload
    def chat(
        self,
        messages: core.Messages,
        *,
        model: str | None = ...,
        stream: Literal[True],
        max_tokens: int | None = ...,
        temperature: float | None = ...,
        top_p: float | None = ...,
        stop: str | Sequence[str] | None = ...,
        seed: int | None = ...,
        system: str | None = ...,
        **params: object,
    ) -> ChatStream: ...
    def chat(
        self,
        messages: core.Messages,
        *,
        model: str | None = None,
        stream: bool = False,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        system: str | None = None,
        **params: object,
    ) -> Awaitable[ChatResult] | Awaitable[Any] | ChatStream:
        """A reply to a prompt or to messages; ``stream=True`` for its text as it comes.

        ``response_format=SomePydanticModel`` returns the parsed object (enforced by the
        server's constrained decoding); ``tools`` may be pydantic classes or OpenAI dicts,
        and the result's ``tool_calls`` are typed (:class:`ToolCallResult`).

        ``model`` may be left out when the server serves a single chat model; extra
        ``params`` go into the request body as they are.
        """
        listed = core.chat_messages(messages, system)

        async def body() -> dict[str, object]:
            return core.chat_body(
                await self._model_for(core.CHAT, model),
                listed,
                stream=stream,
                max_tokens=max_tokens,
                temperature=temperature,
                top_p=top_p,
                stop=stop,
                seed=seed,
                params=params,
            )

        if stream:
            return ChatStream(self._chat_stream(body))
        parse_as = params.get("response_format")
        if is_model_class(parse_as):
            return self._chat_parsed(body, parse_as)
        return self._chat(body)

    async def _chat_parsed(self, body: BodyFactory, parse_as: object) -> Any:
        """The reply parsed into the pydantic class that ``response_format`` named."""
        return parse_reply(parse_as, (await self._chat(body)).text)

    async def _chat(self, body: BodyFactory) -> ChatResult:
        payload = await body()
        started = time.perf_counter()
        response = await self._request("POST", "/v1/chat/completions", json=payload)
        return core.chat_result(response.json(), started)

    async def _chat_stream(self, body: BodyFactory) -> AsyncGenerator[str | ChatResult, None]:
        payload = await body()
        accumulator = core.ChatAccumulator(str(payload["model"]), time.perf_counter())
        with core.transport_errors(self.base_url):
            async with self._http.stream("POST", "/v1/chat/completions", json=payload) as reply:
                if reply.is_error:
                    await reply.aread()
                    core.check(reply)
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
        listed = core.as_texts(texts)
        name = await self._model_for(core.EMBEDDINGS, model)
        response = await self._request(
            "POST", "/v1/embeddings", json=core.embed_body(name, listed, dimensions)
        )
        return core.embeddings_result(response.json(), listed)

    async def transcribe(
        self,
        audio: AudioInput,
        *,
        model: str | None = None,
        language: str | None = None,
        prompt: str | None = None,
        temperature: float | None = None,
        translate: bool = False,
        sample_rate: int = 16_000,
    ) -> Transcription:
        """Speech to text from a path, the file's bytes, or samples (``sample_rate`` Hz)."""
        name = await self._model_for(core.TRANSCRIPTION, model)
        upload = await to_thread.run_sync(audio_upload, audio, sample_rate)
        form = core.transcription_form(
            name, language=language, prompt=prompt, temperature=temperature
        )
        route = "/v1/audio/translations" if translate else "/v1/audio/transcriptions"
        response = await self._request("POST", route, data=form, files={"file": upload})
        return core.transcription_result(response.json(), name)

    # -- user code -------------------------------------------------------------------------

    async def infer(self, model: str, *args: object, **kwargs: object) -> object:
        """Call ``infer(*args, **kwargs)`` of a served object; a generator's items joined."""
        response = await self._request(
            "POST",
            f"/v1/infer/{core.model_path(model)}",
            json=core.infer_body(args, kwargs, stream=False),
        )
        return core.infer_value(response)

    def infer_stream(self, model: str, *args: object, **kwargs: object) -> AsyncIterator[object]:
        """The items a served generator yields, as they come (bytes for binary streams)."""
        return self._stream(model, core.infer_body(args, kwargs, stream=True))

    async def predict(self, model: str, request: object) -> object:
        """Send ``request`` as the body, unchanged (LitAPI-style models take their own JSON)."""
        response = await self._request("POST", f"/v1/infer/{core.model_path(model)}", json=request)
        return core.infer_value(response)

    async def _stream(self, model: str, body: object) -> AsyncGenerator[object, None]:
        with core.transport_errors(self.base_url):
            path = f"/v1/infer/{core.model_path(model)}"
            async with self._http.stream("POST", path, json=body) as reply:
                if reply.is_error:
                    await reply.aread()
                    core.check(reply)
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

    # -- model management (issue #4 routes) ------------------------------------------------

    async def load(
        self, model: str, *, device: str | None = None, workers: int | None = None
    ) -> ModelInfo:
        """Start serving ``model`` (catalog alias, cached repo id or path on the server)."""
        body = core.load_body(device, workers)
        response = await self._request(
            "POST", f"/v1/models/{core.model_path(model)}/load", json=body
        )
        self._models = None
        return core.model_info({"id": model, **response.json()})

    async def unload(self, model: str) -> None:
        """Stop serving ``model`` and free its memory."""
        await self._request("DELETE", f"/v1/models/{core.model_path(model)}")
        self._models = None

    async def catalog(self) -> tuple[CatalogEntry, ...]:
        """The models the server knows by alias, each with whether it is cached and loaded."""
        return core.catalog_result((await self._request("GET", "/v1/catalog")).json())

    async def cached_models(self) -> tuple[CachedModel, ...]:
        """The models in the server's Hugging Face cache, with their size on disk."""
        return core.cached_models_result((await self._request("GET", "/v1/cache")).json())

    async def downloads(self) -> tuple[Download, ...]:
        """The server's downloads: running ones and those that finished recently."""
        return core.downloads_result((await self._request("GET", "/v1/downloads")).json())

    async def cancel_download(self, download_id: str) -> Download:
        """Stop a download (a ``pull`` following it then raises ``DownloadCancelled``)."""
        path = f"/v1/downloads/{core.model_path(download_id)}"
        return core.download_from((await self._request("DELETE", path)).json())

    async def pull(self, model: str, *, progress: Progress = True) -> Download:
        """Download ``model`` into the server's cache, showing progress (a bar in Jupyter)."""
        response = await self._request("POST", "/v1/downloads", json={"model": model})
        download = core.download_from(response.json(), model)
        reporter = reporter_for(progress)
        try:
            if not (core.download_finished(download) or core.download_failed(download)):
                reporter.update(download)
                download = await self._follow(download, reporter.update)
        finally:
            reporter.close(download)
        if core.download_failed(download):
            raise core.download_error(download)
        return download

    async def _follow(self, download: Download, update: Callable[[Download], None]) -> Download:
        decoder = core.SSEDecoder()
        with core.transport_errors(self.base_url):
            path = f"/v1/downloads/{core.model_path(download.id)}/events"
            async with self._http.stream("GET", path, timeout=None) as reply:
                if reply.is_error:
                    await reply.aread()
                    core.check(reply)
                async for line in reply.aiter_lines():
                    data = decoder.feed(line)
                    if data is None:
                        continue
                    if data == "[DONE]":
                        break
                    download = core.download_from(core.event_payload(data), download.model)
                    update(download)
                    if core.download_finished(download) or core.download_failed(download):
                        break
        return download
