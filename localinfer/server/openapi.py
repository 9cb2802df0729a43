"""``GET /openapi.json``: an OpenAPI 3.1 document built from the routes and the protocol models.

The app's route table gives the paths, methods and path parameters; :data:`OPERATIONS`
says, per route, which pydantic model its body is and which its answer is. Schemas come
from the models themselves (``models_json_schema``), so a field added to a model shows
up here with nothing else to edit. A route missing from :data:`OPERATIONS` is still
listed, with any JSON in and out (``tests/server/test_security.py`` fails on one).

The document is built on the first request and kept for the app's lifetime.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from localinfer._version import __version__
from localinfer.handlers.speech_formats import MEDIA_TYPES
from localinfer.server import protocol as p
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
from localinfer.server.tensors import InferenceRequest

OPENAPI_VERSION = "3.1.0"
_REF = "#/components/schemas/{model}"

# -- KServe answers (built as plain JSON by routes/kserve.py; documentation only) ------------


class _Open(BaseModel):
    """An object whose listed fields are there; others may be too."""

    model_config = ConfigDict(extra="allow")


class KServeError(BaseModel):
    error: str


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class Liveness(BaseModel):
    live: bool


class KServeReadiness(BaseModel):
    ready: bool


class ModelReadiness(BaseModel):
    name: str
    ready: bool


class TensorMetadata(_Open):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any]


class OutputTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[Any]


class InferenceResponse(BaseModel):
    model_name: str
    id: str
    outputs: list[OutputTensor]


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

_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


def _documented_methods(route: Route) -> list[str]:
    return sorted(m for m in route.methods or () if m != "HEAD")


def undocumented(routes: Sequence[BaseRoute]) -> list[tuple[str, str]]:
    """Routes of the app that :data:`OPERATIONS` says nothing about."""
    return [
        (method, route.path)
        for route in routes
        if isinstance(route, Route)
        for method in _documented_methods(route)
        if (method, route.path) not in OPERATIONS
    ]


class _Schemas:
    """Component schemas for every model used, named once, referenced by ``$ref``."""

    def __init__(self, operations: Sequence[Operation]):
        wanted: set[tuple[type[BaseModel], JsonSchemaMode]] = {
            (p.ErrorResponse, "serialization"),
            (KServeError, "serialization"),
        }
        for op in operations:
            if op.body is not None:
                wanted.add((op.body, "validation"))
            for answer in op.answers.values():
                for model in (answer.model, answer.events):
                    if model is not None:
                        wanted.add((model, "serialization"))
        ordered = sorted(wanted, key=lambda pair: (pair[0].__name__, pair[1]))
        refs, definitions = models_json_schema(ordered, ref_template=_REF)
        self.refs: dict[tuple[type[Any], JsonSchemaMode], dict[str, Any]] = dict(refs)
        self.components: dict[str, Any] = definitions.get("$defs", {})

    def ref(self, model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, Any]:
        return self.refs[(model, mode)]


def _not_null(field: dict[str, Any]) -> dict[str, Any]:
    """A form field is sent or left out, never null: ``anyOf [X, null]`` becomes ``X``."""
    options = [o for o in field.get("anyOf", ()) if o != {"type": "null"}]
    if len(options) != 1:
        return field
    rest = {k: v for k, v in field.items() if k not in ("anyOf", "default")}
    return {**rest, **options[0]}


def _form_schema(form: type[BaseModel], schemas: _Schemas) -> dict[str, Any]:
    schema = form.model_json_schema(ref_template=_REF, mode="validation")
    schemas.components.update(schema.pop("$defs", {}))
    schema["properties"] = {
        "file": {"type": "string", "format": "binary", "description": "the audio file"},
        **{name: _not_null(field) for name, field in schema.get("properties", {}).items()},
    }
    schema["required"] = ["file", *schema.get("required", [])]
    schema.pop("title", None)
    return schema


def _event_schema(events: Schema, schemas: _Schemas) -> dict[str, Any]:
    """One server-sent event (OpenAPI 3.1: ``schema`` describes each event): its ``data``
    is ``[DONE]``, or JSON: ``events``, or the error that ended the stream."""
    data: dict[str, Any] = {"type": "string"}
    if events is not None:
        data = {
            "anyOf": [
                {"const": "[DONE]"},
                {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {
                        "anyOf": [
                            schemas.ref(events, "serialization"),
                            schemas.ref(p.ErrorResponse, "serialization"),
                        ]
                    },
                },
            ]
        }
    return {"type": "object", "required": ["data"], "properties": {"data": data}}


def _responses(op: Operation, schemas: _Schemas) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, answer in sorted(op.answers.items()):
        content: dict[str, Any] = {}
        if answer.json:
            body = {} if answer.model is None else schemas.ref(answer.model, "serialization")
            content["application/json"] = {"schema": body}
        if answer.sse:
            content["text/event-stream"] = {"schema": _event_schema(answer.events, schemas)}
        for media in answer.media:
            content[media] = {"schema": {"type": "string"}}
        responses[str(status)] = {"description": answer.description, "content": content}
    error = KServeError if op.kserve_errors else p.ErrorResponse
    responses["default"] = {
        "description": "An error: "
        + ("KServe's {error}" if op.kserve_errors else "OpenAI's shape"),
        "content": {"application/json": {"schema": schemas.ref(error, "serialization")}},
    }
    return responses


def _operation(method: str, route: Route, op: Operation, schemas: _Schemas) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "operationId": re.sub(r"\W+", "_", f"{method} {route.path_format}").strip("_").lower(),
        "summary": op.summary,
        "tags": [op.tag],
        "responses": _responses(op, schemas),
    }
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in route.param_convertors
    ]
    if parameters:
        doc["parameters"] = parameters
    if op.body is not None or op.any_body:
        body = {} if op.body is None else schemas.ref(op.body, "validation")
        doc["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": body}},
        }
    elif op.form is not None:
        doc["requestBody"] = {
            "required": True,
            "content": {"multipart/form-data": {"schema": _form_schema(op.form, schemas)}},
        }
    return doc


def build(routes: Sequence[BaseRoute], *, api_key: bool = False) -> dict[str, Any]:
    """The OpenAPI document of ``routes`` (an app's ``routes``)."""
    pairs = [
        (method, route, OPERATIONS.get((method, route.path)) or _fallback(route))
        for route in routes
        if isinstance(route, Route)
        for method in _documented_methods(route)
    ]
    schemas = _Schemas([op for _, _, op in pairs])
    paths: dict[str, dict[str, Any]] = {}
    for method, route, op in pairs:
        path = _PARAM.sub(r"{\1}", route.path)
        paths.setdefault(path, {})[method.lower()] = _operation(method, route, op, schemas)
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "localinfer",
            "version": __version__,
            "description": "Local models behind an OpenAI-compatible API, a generic infer "
            "route, and KServe v2 (open inference protocol).",
        },
        "paths": paths,
        "components": {"schemas": schemas.components},
    }
    if api_key:
        document["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
        document["security"] = [{"bearer": []}, {"apiKey": []}]
    return document


def _fallback(route: Route) -> Operation:
    return Operation(route.name.replace("_", " "), "other", any_body=True, body_required=False)


async def openapi_json(request: Request) -> Response:
    cached: bytes | None = getattr(request.app.state, "openapi", None)
    if cached is None:
        settings = request.app.state.settings
        document = build(request.app.routes, api_key=bool(settings.api_key_value))
        cached = json.dumps(document, separators=(",", ":")).encode()
        request.app.state.openapi = cached
    return Response(cached, media_type="application/json")


routes = [Route("/openapi.json", openapi_json, methods=["GET"])]
