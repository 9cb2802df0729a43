"""What :class:`~localinfer.Client` and :class:`~localinfer.SyncClient` share: every
decision, none of the sending (httpx's ``BaseClient`` pattern).

An operation is a generator (a *flow*) that yields the HTTP requests it needs, as
:class:`Send` descriptions, receives each response, and returns the result: choosing a
default model (which may need ``/v1/models`` first), building bodies, parsing answers and
raising the server's errors all happen here. The two clients only run flows — one with
``await``, one blocking — and read streamed lines, handing each to a reader from here.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias, TypeVar

import httpx

from localinfer.calls.options import (
    DEFAULT_SAMPLE_RATE,
    DEFAULT_SPEECH_FORMAT,
    ChatCallOptions,
    ChatOptions,
    EmbedOptions,
    RerankOptions,
    SpeechOptions,
    TranscribeOptions,
)
from localinfer.client import _core as core
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

T = TypeVar("T")


@dataclass(frozen=True)
class Send:
    """One request an operation needs: what to send, not how."""

    method: str
    path: str
    options: Mapping[str, object] = field(default_factory=dict)


#: an operation: yields the requests it needs, gets their responses, returns its result
Flow: TypeAlias = Generator[Send, httpx.Response, T]


class BaseClient:
    """Configuration and every decision of a localinfer client."""

    def __init__(self, base_url: str | None, api_key: str | None, timeout: float):
        self.base_url = (base_url or core.default_base_url()).rstrip("/")
        self.api_key = api_key if api_key is not None else core.default_api_key()
        self.timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self.headers = core.auth_headers(self.api_key)
        #: the served models, as last read (for choosing a default model)
        self._models: ModelList | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"

    # -- model choice ----------------------------------------------------------------------

    def _model_for(self, task: str, model: str | None) -> Flow[str]:
        """``model``, else the only model serving ``task`` (the list is read again once
        when it does not say)."""
        if model is not None:
            return model
        for refresh in (False, True):
            if refresh or self._models is None:
                yield from self._models_flow()
            assert self._models is not None
            chosen = core.pick_model(self._models, task, None)
            if chosen is not None:
                return chosen
        assert self._models is not None
        raise core.no_default_model(self._models, task)

    # -- operations ------------------------------------------------------------------------

    def _models_flow(self) -> Flow[ModelList]:
        self._models = core.model_list((yield Send("GET", "/v1/models")).json())
        return self._models

    def _stats_flow(self) -> Flow[Stats]:
        return core.stats_result((yield Send("GET", "/v1/stats")).json())

    def _chat_body(
        self,
        messages: core.Messages,
        model: str | None,
        stream: bool,
        options: ChatOptions,
        extra_body: Mapping[str, object] | None,
    ) -> Flow[dict[str, object]]:
        return core.chat_body(
            (yield from self._model_for(core.CHAT, model)),
            core.chat_messages(messages, options.get("system")),
            stream=stream,
            max_tokens=options.get("max_tokens"),
            temperature=options.get("temperature"),
            top_p=options.get("top_p"),
            stop=options.get("stop"),
            seed=options.get("seed"),
            params=extra_body or {},
        )

    @staticmethod
    def _structured(
        response_format: object,
        options: ChatCallOptions,
        extra_body: Mapping[str, object] | None,
    ) -> dict[str, object]:
        """The structured-output and tool fields, beside the caller's ``extra_body``
        (``core.chat_body`` turns pydantic classes into their JSON schemas)."""
        fields: dict[str, object] = dict(extra_body or {})
        if response_format is not None:
            fields["response_format"] = response_format
        tools = options.get("tools")
        if tools:
            fields["tools"] = list(tools)
        for name in ("tool_choice", "parallel_tool_calls"):
            if options.get(name) is not None:
                fields[name] = options.get(name)
        return fields

    def _chat_flow(self, body: Flow[dict[str, object]]) -> Flow[ChatResult]:
        payload = yield from body
        started = time.perf_counter()
        response = yield Send("POST", "/v1/chat/completions", {"json": payload})
        return core.chat_result(response.json(), started)

    @staticmethod
    def _chat_stream_send(payload: dict[str, object]) -> Send:
        return Send("POST", "/v1/chat/completions", {"json": payload})

    def _embed_flow(self, texts: str | Sequence[str], options: EmbedOptions) -> Flow[Embeddings]:
        listed = core.as_texts(texts)
        name = yield from self._model_for(core.EMBEDDINGS, options.get("model"))
        body = core.embed_body(name, listed, options.get("dimensions"))
        response = yield Send("POST", "/v1/embeddings", {"json": body})
        return core.embeddings_result(response.json(), listed)

    def _transcription_model(self, options: TranscribeOptions) -> Flow[str]:
        return (yield from self._model_for(core.TRANSCRIPTION, options.get("model")))

    @staticmethod
    def _sample_rate(options: TranscribeOptions) -> int:
        return options.get("sample_rate", DEFAULT_SAMPLE_RATE)

    @staticmethod
    def _transcription_send(
        name: str, upload: object, options: TranscribeOptions, stream: bool
    ) -> Send:
        """The upload of one transcription: whole, or as events while segments decode."""
        form = core.transcription_form(
            name,
            language=options.get("language"),
            prompt=options.get("prompt"),
            temperature=options.get("temperature"),
        )
        if stream:
            form = {**form, "response_format": "json", "stream": "true"}
        translate = options.get("translate", False)
        route = "/v1/audio/translations" if translate else "/v1/audio/transcriptions"
        return Send("POST", route, {"data": form, "files": {"file": upload}})

    def _transcribe_flow(
        self, name: str, upload: object, options: TranscribeOptions
    ) -> Flow[Transcription]:
        response = yield self._transcription_send(name, upload, options, stream=False)
        return core.transcription_result(response.json(), name)

    def _rerank_flow(
        self, query: str, documents: Sequence[str], options: RerankOptions
    ) -> Flow[Reranking]:
        """Rank with ``model``; unnamed, the only reranker, else the only embeddings model."""
        name = options.get("model")
        for refresh in (False, True):
            if name is not None:
                break
            if refresh or self._models is None:
                yield from self._models_flow()
            assert self._models is not None
            name = core.pick_reranker(self._models)
        if name is None:
            assert self._models is not None
            raise core.no_default_model(self._models, core.RERANK)
        body = core.rerank_body(
            name, query, documents, options.get("top_n"), options.get("return_documents", False)
        )
        response = yield Send("POST", "/v1/rerank", {"json": body})
        return core.reranking_result(response.json())

    def _speech_body(self, text: str, options: SpeechOptions) -> Flow[dict[str, object]]:
        name = yield from self._model_for(core.SPEECH, options.get("model"))
        return core.speech_body(
            name,
            text,
            voice=options.get("voice"),
            response_format=options.get("response_format", DEFAULT_SPEECH_FORMAT),
            speed=options.get("speed"),
        )

    def _speech_flow(self, body: Flow[dict[str, object]], options: SpeechOptions) -> Flow[Speech]:
        payload = yield from body
        response = yield self._speech_send(payload)
        return Speech(response.content, options.get("response_format", DEFAULT_SPEECH_FORMAT))

    @staticmethod
    def _speech_send(payload: dict[str, object]) -> Send:
        return Send("POST", "/v1/audio/speech", {"json": payload})

    @staticmethod
    def _infer_send(model: str, body: object) -> Send:
        return Send("POST", f"/v1/infer/{core.model_path(model)}", {"json": body})

    def _infer_flow(self, model: str, body: object) -> Flow[object]:
        return core.infer_value((yield self._infer_send(model, body)))

    def _load_flow(self, model: str, device: str | None, workers: int | None) -> Flow[ModelInfo]:
        body = core.load_body(device, workers)
        path = f"/v1/models/{core.model_path(model)}/load"
        response = yield Send("POST", path, {"json": body})
        self._models = None
        return core.model_info({"id": model, **response.json()})

    def _unload_flow(self, model: str) -> Flow[None]:
        yield Send("DELETE", f"/v1/models/{core.model_path(model)}")
        self._models = None

    def _catalog_flow(self) -> Flow[tuple[CatalogEntry, ...]]:
        return core.catalog_result((yield Send("GET", "/v1/catalog")).json())

    def _cached_models_flow(self) -> Flow[tuple[CachedModel, ...]]:
        return core.cached_models_result((yield Send("GET", "/v1/cache")).json())

    def _downloads_flow(self) -> Flow[tuple[Download, ...]]:
        return core.downloads_result((yield Send("GET", "/v1/downloads")).json())

    def _cancel_download_flow(self, download_id: str) -> Flow[Download]:
        path = f"/v1/downloads/{core.model_path(download_id)}"
        return core.download_from((yield Send("DELETE", path)).json())

    def _start_download_flow(self, model: str) -> Flow[Download]:
        response = yield Send("POST", "/v1/downloads", {"json": {"model": model}})
        return core.download_from(response.json(), model)

    @staticmethod
    def _download_events_send(download: Download) -> Send:
        path = f"/v1/downloads/{core.model_path(download.id)}/events"
        return Send("GET", path, {"timeout": None})


class DownloadFollower:
    """Reads a download's SSE events, line by line, into its latest state."""

    def __init__(self, download: Download):
        self.download = download
        #: the stream has nothing more to say
        self.done = False
        self._decoder = core.SSEDecoder()

    def feed_line(self, line: str) -> bool:
        """Take one line; True when the download changed (``self.download``)."""
        data = self._decoder.feed(line)
        if data is None or data == "[DONE]":
            self.done = data == "[DONE]"
            return False
        self.download = core.download_from(core.event_payload(data), self.download.model)
        self.done = core.download_finished(self.download) or core.download_failed(self.download)
        return True


class TranscriptReader:
    """Reads a streamed transcription's SSE lines into text deltas."""

    def __init__(self) -> None:
        self._decoder = core.SSEDecoder()

    def feed_line(self, line: str) -> str | None:
        """Take one line; the text it adds, if any."""
        data = self._decoder.feed(line)
        return (core.transcript_delta(data) or None) if data is not None else None


class InferReader:
    """Reads a streamed ``/v1/infer`` reply's SSE lines into its items."""

    def __init__(self) -> None:
        self._decoder = core.SSEDecoder()
        #: the stream said ``[DONE]``
        self.done = False

    def feed_line(self, line: str) -> tuple[object] | None:
        """Take one line; the item it carries (as a 1-tuple: items may be None), if any."""
        data = self._decoder.feed(line)
        if data == "[DONE]":
            self.done = True
            return None
        return None if data is None else (core.event_payload(data),)


def is_json(response: httpx.Response) -> bool:
    media: str = response.headers.get("content-type", "")
    return media.startswith("application/json")


def finished(download: Download) -> bool:
    """Nothing more to wait for: the download succeeded or failed."""
    return core.download_finished(download) or core.download_failed(download)


def raise_if_failed(download: Download) -> Download:
    if core.download_failed(download):
        raise core.download_error(download)
    return download
