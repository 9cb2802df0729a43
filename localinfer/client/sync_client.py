"""``localinfer.SyncClient``: the blocking twin of :class:`~localinfer.Client`, for scripts.

Same methods, same results, same errors; it differs only in how it sends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

import httpx

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
from localinfer.client.streams import SyncChatStream
from localinfer.client.structured import is_model_class, parse_reply

M = TypeVar("M")


class SyncClient:
    """A blocking client of a localinfer server (``LOCALINFER_URL``, default 127.0.0.1:8000)."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = core.DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ):
        self.base_url = (base_url or core.default_base_url()).rstrip("/")
        self.api_key = api_key if api_key is not None else core.default_api_key()
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=core.auth_headers(self.api_key),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
            event_hooks={"request": [self._refuse_to_deadlock]},
        )
        self._models: ModelList | None = None
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

    def __repr__(self) -> str:
        return f"SyncClient({self.base_url!r})"

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

    # -- plumbing --------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        with core.transport_errors(self.base_url):
            response = self._http.request(method, path, **kwargs)  # type: ignore[arg-type]
        core.check(response)
        return response

    def _model_for(self, task: str, model: str | None) -> str:
        if model is not None:
            return model
        for refresh in (False, True):
            if refresh or self._models is None:
                self._models = self.models()
            chosen = core.pick_model(self._models, task, None)
            if chosen is not None:
                return chosen
        assert self._models is not None
        raise core.no_default_model(self._models, task)

    # -- operations ------------------------------------------------------------------------

    def models(self) -> ModelList:
        self._models = core.model_list(self._request("GET", "/v1/models").json())
        return self._models

    def stats(self) -> Stats:
        return core.stats_result(self._request("GET", "/v1/stats").json())

    def ready(self) -> bool:
        with core.transport_errors(self.base_url):
            return self._http.get("/ready").status_code == 200

    def wait_ready(self, timeout_s: float = 120.0) -> None:
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
    ) -> M: ...
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
    ) -> ChatResult: ...
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
    ) -> SyncChatStream: ...
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
    ) -> ChatResult | SyncChatStream | Any:
        """A reply to a prompt or to messages; ``stream=True`` for its text as it comes."""
        body = core.chat_body(
            self._model_for(core.CHAT, model),
            core.chat_messages(messages, system),
            stream=stream,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            seed=seed,
            params=params,
        )
        if stream:
            return SyncChatStream(self._chat_stream(body))
        started = time.perf_counter()
        result = core.chat_result(
            self._request("POST", "/v1/chat/completions", json=body).json(), started
        )
        parse_as = params.get("response_format")
        return parse_reply(parse_as, result.text) if is_model_class(parse_as) else result

    def _chat_stream(self, body: dict[str, object]) -> Generator[str | ChatResult, None, None]:
        accumulator = core.ChatAccumulator(str(body["model"]), time.perf_counter())
        with (
            core.transport_errors(self.base_url),
            self._http.stream("POST", "/v1/chat/completions", json=body) as reply,
        ):
            if reply.is_error:
                reply.read()
                core.check(reply)
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
        listed = core.as_texts(texts)
        name = self._model_for(core.EMBEDDINGS, model)
        body = core.embed_body(name, listed, dimensions)
        reply = self._request("POST", "/v1/embeddings", json=body)
        return core.embeddings_result(reply.json(), listed)

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
    ) -> Transcription:
        name = self._model_for(core.TRANSCRIPTION, model)
        form = core.transcription_form(
            name, language=language, prompt=prompt, temperature=temperature
        )
        route = "/v1/audio/translations" if translate else "/v1/audio/transcriptions"
        files = {"file": audio_upload(audio, sample_rate)}
        return core.transcription_result(
            self._request("POST", route, data=form, files=files).json(), name
        )

    # -- user code -------------------------------------------------------------------------

    def infer(self, model: str, *args: object, **kwargs: object) -> object:
        body = core.infer_body(args, kwargs, stream=False)
        return core.infer_value(
            self._request("POST", f"/v1/infer/{core.model_path(model)}", json=body)
        )

    def infer_stream(self, model: str, *args: object, **kwargs: object) -> Iterator[object]:
        return self._stream(model, core.infer_body(args, kwargs, stream=True))

    def predict(self, model: str, request: object) -> object:
        return core.infer_value(
            self._request("POST", f"/v1/infer/{core.model_path(model)}", json=request)
        )

    def _stream(self, model: str, body: object) -> Generator[object, None, None]:
        path = f"/v1/infer/{core.model_path(model)}"
        with (
            core.transport_errors(self.base_url),
            self._http.stream("POST", path, json=body) as reply,
        ):
            if reply.is_error:
                reply.read()
                core.check(reply)
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

    # -- model management (issue #4 routes) ------------------------------------------------

    def load(
        self, model: str, *, device: str | None = None, workers: int | None = None
    ) -> ModelInfo:
        body = core.load_body(device, workers)
        response = self._request("POST", f"/v1/models/{core.model_path(model)}/load", json=body)
        self._models = None
        return core.model_info({"id": model, **response.json()})

    def unload(self, model: str) -> None:
        self._request("DELETE", f"/v1/models/{core.model_path(model)}")
        self._models = None

    def catalog(self) -> tuple[CatalogEntry, ...]:
        """The models the server knows by alias, each with whether it is cached and loaded."""
        return core.catalog_result((self._request("GET", "/v1/catalog")).json())

    def cached_models(self) -> tuple[CachedModel, ...]:
        """The models in the server's Hugging Face cache, with their size on disk."""
        return core.cached_models_result((self._request("GET", "/v1/cache")).json())

    def downloads(self) -> tuple[Download, ...]:
        """The server's downloads: running ones and those that finished recently."""
        return core.downloads_result((self._request("GET", "/v1/downloads")).json())

    def cancel_download(self, download_id: str) -> Download:
        """Stop a download (a ``pull`` following it then raises ``DownloadCancelled``)."""
        path = f"/v1/downloads/{core.model_path(download_id)}"
        return core.download_from((self._request("DELETE", path)).json())

    def pull(self, model: str, *, progress: Progress = True) -> Download:
        download = core.download_from(
            self._request("POST", "/v1/downloads", json={"model": model}).json(), model
        )
        reporter = reporter_for(progress)
        try:
            if not (core.download_finished(download) or core.download_failed(download)):
                reporter.update(download)
                download = self._follow(download, reporter.update)
        finally:
            reporter.close(download)
        if core.download_failed(download):
            raise core.download_error(download)
        return download

    def _follow(self, download: Download, update: Callable[[Download], None]) -> Download:
        decoder = core.SSEDecoder()
        path = f"/v1/downloads/{core.model_path(download.id)}/events"
        with (
            core.transport_errors(self.base_url),
            self._http.stream("GET", path, timeout=None) as reply,
        ):
            if reply.is_error:
                reply.read()
                core.check(reply)
            for line in reply.iter_lines():
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
