"""What each route takes and gives: the table :mod:`localinfer.server.openapi` documents.

One :class:`Operation` per method and path, naming the pydantic models of its body and
answers (the KServe ones live in :mod:`localinfer.server.protocol.kserve`, as the
OpenAI ones in the rest of the protocol package).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel

from localinfer.handlers.speech_formats import MEDIA_TYPES
from localinfer.server import protocol as p
from localinfer.server.protocol.kserve import (
    InferenceRequest,
    InferenceResponse,
    KServeReadiness,
    Liveness,
    ModelMetadata,
    ModelReadiness,
    ServerMetadata,
)
from localinfer.server.resources import (
    CachedModels,
    Catalog,
    Download,
    DownloadList,
    Health,
    ModelInfo,
    ModelState,
    Readiness,
    Stats,
    UnloadReport,
)
from localinfer.server.routes.management import DownloadRequest, LoadModelRequest
from localinfer.server.routes.workers import ScaleRequest

# -- what each route takes and gives ---------------------------------------------------------

Schema = type[BaseModel] | None  # None: any JSON value


@dataclass(frozen=True)
class Answer:
    """One status's body: JSON of ``model`` (``None``: any JSON) and other media types."""

    model: Schema = None
    description: str = "OK"
    json: bool = True
    media: Sequence[str] = ()
    #: server-sent events: each event's data is this model as JSON (or an error), then
    #: ``[DONE]``; ``None`` with ``sse``: any data
    events: Schema = None
    sse: bool = False


@dataclass(frozen=True)
class Operation:
    summary: str
    tag: str
    answers: Mapping[int, Answer] = field(default_factory=lambda: {200: Answer()})
    #: the JSON body's model; ``None`` with ``any_body``: any JSON value
    body: Schema = None
    any_body: bool = False
    body_required: bool = True
    #: a multipart form: these fields and a ``file`` part
    form: Schema = None
    kserve_errors: bool = False


OPERATIONS: dict[tuple[str, str], Operation] = {
    # OpenAI
    ("POST", "/v1/chat/completions"): Operation(
        "Chat completion; with stream: true, server-sent chat.completion.chunk events",
        "openai",
        {200: Answer(p.ChatCompletion, events=p.ChatCompletionChunk, sse=True)},
        body=p.ChatCompletionRequest,
    ),
    ("POST", "/v1/completions"): Operation(
        "Text completion; with stream: true, server-sent text_completion events",
        "openai",
        {200: Answer(p.Completion, events=p.Completion, sse=True)},
        body=p.CompletionRequest,
    ),
    ("POST", "/v1/embeddings"): Operation(
        "Embeddings of one text or a list of texts",
        "openai",
        {200: Answer(p.EmbeddingList)},
        body=p.EmbeddingRequest,
    ),
    **{
        ("POST", path): Operation(
            "Documents ordered by relevance to a query (Cohere/Jina shape), by a "
            "cross-encoder or by an embeddings model's cosine similarity",
            "rerank",
            {200: Answer(p.RerankResponse)},
            body=p.RerankRequest,
            # every route under /v2 answers errors in KServe's shape (server/errors.py)
            kserve_errors=path.startswith("/v2/"),
        )
        for path in ("/v1/rerank", "/rerank", "/v2/rerank")
    },
    ("POST", "/v1/audio/transcriptions"): Operation(
        "Transcribe an audio file (json, text, srt, vtt or verbose_json); with stream: "
        "true, transcript.text.delta events as segments are decoded, then "
        "transcript.text.done",
        "openai",
        {
            200: Answer(
                p.Transcription,
                media=("text/plain", "text/vtt"),
                events=p.TranscriptStreamEvent,
                sse=True,
            )
        },
        form=p.TranscriptionForm,
    ),
    ("POST", "/v1/audio/translations"): Operation(
        "Translate an audio file into English text",
        "openai",
        {200: Answer(p.Transcription, media=("text/plain", "text/vtt"))},
        form=p.TranscriptionForm,
    ),
    ("POST", "/v1/audio/speech"): Operation(
        "Say a text: audio (mp3, opus, aac, flac, wav or pcm) streamed as it is made; with "
        "stream_format: sse, speech.audio.delta events then speech.audio.done",
        "openai",
        {
            200: Answer(
                json=False,
                media=tuple(MEDIA_TYPES.values()),
                events=p.SpeechStreamEvent,
                sse=True,
            )
        },
        body=p.SpeechRequest,
    ),
    ("GET", "/v1/audio/voices"): Operation(
        "The voices of the served speech models (?model= for one)",
        "openai",
        {200: Answer(p.VoiceList)},
    ),
    ("GET", "/v1/models"): Operation("Served models", "openai", {200: Answer(p.ModelList)}),
    ("GET", "/v1/models/{model:path}"): Operation(
        "One served model: its card and health", "openai", {200: Answer(ModelInfo)}
    ),
    # generic
    ("POST", "/v1/infer/{model}"): Operation(
        "Call a model's own code: {args, kwargs, stream} for infer objects, any JSON for "
        "LitAPI objects; a generator streams as SSE (text) or chunked bytes",
        "generic",
        {200: Answer(None, media=("application/octet-stream", "*/*"), sse=True)},
        any_body=True,
    ),
    # management
    ("POST", "/v1/models/{model:path}/workers"): Operation(
        "Change how many worker threads a model runs",
        "management",
        {200: Answer(ModelState)},
        body=ScaleRequest,
    ),
    ("POST", "/v1/models/{model:path}/load"): Operation(
        "Load a catalog model (202 while loading, 200 once ready)",
        "management",
        {200: Answer(ModelState), 202: Answer(ModelState, "Loading")},
        body=LoadModelRequest,
        body_required=False,
    ),
    ("DELETE", "/v1/models/{model:path}"): Operation(
        "Unload a model", "management", {200: Answer(UnloadReport)}
    ),
    ("GET", "/v1/downloads"): Operation("Downloads", "management", {200: Answer(DownloadList)}),
    ("POST", "/v1/downloads"): Operation(
        "Start downloading a model (202), or the download already under way (200)",
        "management",
        {200: Answer(Download), 202: Answer(Download, "Started")},
        body=DownloadRequest,
    ),
    ("GET", "/v1/downloads/{id}"): Operation("One download", "management", {200: Answer(Download)}),
    ("DELETE", "/v1/downloads/{id}"): Operation(
        "Cancel a download",
        "management",
        {200: Answer(Download), 202: Answer(Download, "Cancelling")},
    ),
    ("GET", "/v1/downloads/{id}/events"): Operation(
        "A download's progress as server-sent events",
        "management",
        {200: Answer(json=False, events=Download, sse=True)},
    ),
    ("GET", "/v1/catalog"): Operation(
        "Catalog entries, each with whether it is cached and loaded",
        "management",
        {200: Answer(Catalog)},
    ),
    ("GET", "/v1/cache"): Operation(
        "Models in the server's Hugging Face cache, with size and loaded state",
        "management",
        {200: Answer(CachedModels)},
    ),
    # operations
    ("GET", "/health"): Operation(
        "Liveness and every worker's state", "operations", {200: Answer(Health)}
    ),
    ("GET", "/ready"): Operation(
        "Whether every model has loaded",
        "operations",
        {200: Answer(Readiness), 503: Answer(Readiness, "Not ready")},
    ),
    ("GET", "/v1/stats"): Operation(
        "Per-model queue, throughput and latency", "operations", {200: Answer(Stats)}
    ),
    ("GET", "/metrics"): Operation(
        "Prometheus metrics", "operations", {200: Answer(json=False, media=("text/plain",))}
    ),
    ("GET", "/openapi.json"): Operation("This document", "operations", {200: Answer()}),
    # KServe v2
    ("GET", "/v2"): Operation(
        "Server metadata", "kserve", {200: Answer(ServerMetadata)}, kserve_errors=True
    ),
    ("GET", "/v2/health/live"): Operation(
        "Server liveness", "kserve", {200: Answer(Liveness)}, kserve_errors=True
    ),
    ("GET", "/v2/health/ready"): Operation(
        "Server readiness",
        "kserve",
        {200: Answer(KServeReadiness), 503: Answer(KServeReadiness, "Not ready")},
        kserve_errors=True,
    ),
    ("GET", "/v2/models/{name:path}/ready"): Operation(
        "Model readiness",
        "kserve",
        {200: Answer(ModelReadiness), 503: Answer(ModelReadiness, "Not ready")},
        kserve_errors=True,
    ),
    ("POST", "/v2/models/{name:path}/infer"): Operation(
        "Inference with JSON tensors",
        "kserve",
        {200: Answer(InferenceResponse)},
        body=InferenceRequest,
        kserve_errors=True,
    ),
    ("GET", "/v2/models/{name:path}"): Operation(
        "Model metadata: inputs, outputs, task",
        "kserve",
        {200: Answer(ModelMetadata)},
        kserve_errors=True,
    ),
}
