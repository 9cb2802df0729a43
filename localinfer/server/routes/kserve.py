"""KServe v2 (open inference protocol) over HTTP, served by the same handlers as the OpenAI routes.

Tensors map to each task's contract:

- ``embeddings``: one ``BYTES`` input ``[N]`` (texts) → ``embedding`` ``FP32 [N, dims]``;
  request parameter ``dimensions``.
- ``chat``: one ``BYTES`` input ``[N]`` (user messages) → ``text_output`` and
  ``finish_reason`` ``BYTES [N]``; parameters ``max_tokens``, ``temperature``, ``top_p``,
  ``seed``.
- ``transcription``: one ``FP32`` input ``[samples]`` (mono PCM) → ``text`` ``BYTES [1]``;
  parameters ``sample_rate`` (16000), ``language``, ``task``, ``prompt``.
- any other task (``infer``, plugin tasks): the named inputs become keyword arguments
  (a one-element tensor is its scalar); a dict result is one output per key, anything
  else one ``output``; a stream is collected.

Errors are ``{"error": "..."}`` with the status the OpenAI routes would use.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from localinfer._version import __version__
from localinfer.calls.calls import Calls
from localinfer.calls.options import ChatOptions
from localinfer.errors import InvalidRequest
from localinfer.handlers.tasks import (
    CHAT,
    EMBEDDINGS,
    TRANSCRIPTION,
    EmbeddingRequest,
    EmbeddingResult,
    GenerationResult,
    TranscriptionRequest,
    TranscriptionResult,
)
from localinfer.handlers.user_code import parse_infer_request
from localinfer.runtime.context import joined
from localinfer.runtime.job import Done
from localinfer.runtime.model import ServedModel
from localinfer.server.bodies import read_json
from localinfer.server.errors import kserve_error_response
from localinfer.server.protocol.kserve import (
    InferenceRequest,
    InferenceResponse,
    InputTensor,
    KServeReadiness,
    Liveness,
    ModelMetadata,
    ModelReadiness,
    OutputTensor,
    ServerMetadata,
    TensorMetadata,
    answer_body,
)
from localinfer.server.routes.common import reader_for
from localinfer.server.state import calls_of, registry_of, request_id_of, settings_of
from localinfer.server.tensors import as_python, decode, encode, encode_outputs

Endpoint = Callable[[Request], Awaitable[Response]]
#: most texts one chat infer request may carry (each is its own generation)
MAX_GENERATIONS = 16

_IO: dict[str, tuple[list[TensorMetadata], list[TensorMetadata]]] = {
    EMBEDDINGS: (
        [TensorMetadata(name="text", datatype="BYTES", shape=[-1])],
        [TensorMetadata(name="embedding", datatype="FP32", shape=[-1, -1])],
    ),
    CHAT: (
        [TensorMetadata(name="text_input", datatype="BYTES", shape=[-1])],
        [
            TensorMetadata(name="text_output", datatype="BYTES", shape=[-1]),
            TensorMetadata(name="finish_reason", datatype="BYTES", shape=[-1]),
        ],
    ),
    TRANSCRIPTION: (
        [TensorMetadata(name="audio", datatype="FP32", shape=[-1])],
        [TensorMetadata(name="text", datatype="BYTES", shape=[1])],
    ),
}
_ANNOTATION_TYPES = {"str": "BYTES", "int": "INT64", "float": "FP64", "bool": "BOOL"}


def send(answer: BaseModel, status_code: int = 200) -> Response:
    """One KServe answer, from its protocol model."""
    return JSONResponse(answer_body(answer), status_code=status_code)


def kserve(endpoint: Endpoint) -> Endpoint:
    """Answer errors in KServe's shape instead of OpenAI's."""

    async def wrapped(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ClientDisconnect:
            raise
        except Exception as exc:  # unknown ones are logged there and answered vaguely
            return kserve_error_response(exc)

    return wrapped


# -- health and metadata -----------------------------------------------------------------


async def live(request: Request) -> Response:
    return send(Liveness(live=True))


async def ready(request: Request) -> Response:
    is_ready = registry_of(request).ready
    return send(KServeReadiness(ready=is_ready), 200 if is_ready else 503)


async def server_metadata(request: Request) -> Response:
    return send(ServerMetadata(name="localinfer", version=__version__, extensions=[]))


async def model_ready(request: Request) -> Response:
    model = registry_of(request).get(request.path_params["name"])
    return send(ModelReadiness(name=model.name, ready=model.ready), 200 if model.ready else 503)


def _infer_signature(model: ServedModel) -> inspect.Signature | None:
    """The ``infer`` signature of a user-code model (its request parser holds it)."""
    prepare = model.definition.prepare
    if isinstance(prepare, partial) and prepare.func is parse_infer_request:
        signature = prepare.keywords.get("signature")
        return signature if isinstance(signature, inspect.Signature) else None
    return None


def _takes_infer_request(model: ServedModel) -> bool:
    """Whether the model reads ``{"args", "kwargs"}`` bodies (an object with ``infer``)."""
    prepare = model.definition.prepare
    return isinstance(prepare, partial) and "signature" in prepare.keywords


def _type_name(annotation: Any) -> str:
    """``"int"`` for ``int`` and for the string ``"int"`` (postponed annotations)."""
    return str(getattr(annotation, "__name__", annotation))


async def model_metadata(request: Request) -> Response:
    model = registry_of(request).get(request.path_params["name"])
    inputs, outputs = _IO.get(model.definition.task, ([], []))
    signature = _infer_signature(model)
    if signature is not None:
        inputs = [
            TensorMetadata(
                name=name,
                datatype=_ANNOTATION_TYPES.get(_type_name(param.annotation), "BYTES"),
                shape=[-1],
                parameters={"optional": param.default is not inspect.Parameter.empty},
            )
            for name, param in signature.parameters.items()
            if param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD)
        ]
    handler = model.capabilities.get("handler", "python")
    return send(
        ModelMetadata(
            name=model.name,
            versions=[],
            platform=f"localinfer/{handler}",
            inputs=inputs,
            outputs=outputs,
            parameters={"task": model.definition.task, "capabilities": model.capabilities},
        )
    )


# -- inference ---------------------------------------------------------------------------


async def _result(request: Request, model: ServedModel, payload: Any) -> Any:
    """Run one job to its result; a stream's items are joined."""
    job = Calls.submit(model, payload, request_id=request_id_of(request))
    reader = reader_for(request, job)
    chunks: list[Any] = []

    async def collect() -> Any:  # restartable: chunks live outside
        while not isinstance(event := await reader.next(), Done):
            chunks.append(event.value)
        return event.value

    try:
        value = await reader.guarded(request, collect)
    finally:
        await reader.aclose()
    return joined(chunks) if value is None and chunks else value


def _single(body: InferenceRequest, datatypes: tuple[str, ...]) -> InputTensor:
    if len(body.inputs) != 1 or body.inputs[0].datatype not in datatypes:
        raise InvalidRequest(f"this model takes one input tensor of type {' or '.join(datatypes)}")
    return body.inputs[0]


def _texts(request: Request, tensor: InputTensor, most: int) -> list[str]:
    texts = [str(t) for t in decode(tensor).reshape(-1)]
    calls_of(request).limits.check_texts(texts, param=tensor.name, most=most)
    return texts


def _parameter(body: InferenceRequest, name: str, kind: type, default: Any = None) -> Any:
    """A request parameter of type ``kind`` (ints pass for floats, bools for nothing else)."""
    value = (body.parameters or {}).get(name, default)
    if value is None:
        return None
    accepted = (int, float) if kind is float else (kind,)
    if isinstance(value, bool) or not isinstance(value, accepted):
        raise InvalidRequest(f"parameter {name!r} must be a {kind.__name__}", param=name)
    return kind(value)


async def _embeddings(
    request: Request, model: ServedModel, body: InferenceRequest
) -> list[OutputTensor]:
    tensor = _single(body, ("BYTES",))
    texts = _texts(request, tensor, calls_of(request).limits.max_embedding_inputs)
    payload = EmbeddingRequest(tuple(texts), dimensions=_parameter(body, "dimensions", int))
    result = await _result(request, model, payload)
    assert isinstance(result, EmbeddingResult)
    return [encode("embedding", np.asarray(result.vectors, dtype=np.float32))]


async def _chat(request: Request, model: ServedModel, body: InferenceRequest) -> list[OutputTensor]:
    texts = _texts(request, _single(body, ("BYTES",)), MAX_GENERATIONS)
    calls = calls_of(request)
    max_tokens = _parameter(body, "max_tokens", int)
    temperature = _parameter(body, "temperature", float)
    if temperature is not None and not 0.0 <= temperature <= 2.0:
        raise InvalidRequest("temperature must be between 0 and 2", param="temperature")
    top_p = _parameter(body, "top_p", float)
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise InvalidRequest("top_p must be above 0 and at most 1", param="top_p")
    seed = _parameter(body, "seed", int)
    if seed is not None and not -(2**63) <= seed < 2**63:
        raise InvalidRequest("seed must fit in 64 bits", param="seed")
    options = ChatOptions(max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed)
    results: list[GenerationResult] = []
    for text in texts:  # one job each, one after another: each result is read as it streams
        payload = calls.chat([{"role": "user", "content": text}], **options)
        results.append(await _result(request, model, payload))
    return [
        encode("text_output", [r.text for r in results]),
        encode("finish_reason", [r.finish_reason for r in results]),
    ]


async def _transcription(
    request: Request, model: ServedModel, body: InferenceRequest
) -> list[OutputTensor]:
    tensor = _single(body, ("FP32", "FP64", "FP16"))
    audio = decode(tensor).astype(np.float32).reshape(-1)
    sample_rate = _parameter(body, "sample_rate", int, 16_000)
    calls_of(request).limits.check_audio(audio.size, sample_rate, param=tensor.name)
    task = _parameter(body, "task", str, "transcribe")
    if task not in ("transcribe", "translate"):
        raise InvalidRequest("task must be 'transcribe' or 'translate'", param="task")
    payload = TranscriptionRequest(
        audio=audio,
        sample_rate=sample_rate,
        task=task,
        language=_parameter(body, "language", str),
        prompt=_parameter(body, "prompt", str),
    )
    result = await _result(request, model, payload)
    assert isinstance(result, TranscriptionResult)
    return [encode("text", [result.text])]


async def _named_inputs(
    request: Request, model: ServedModel, body: InferenceRequest
) -> list[OutputTensor]:
    names = [t.name for t in body.inputs]
    if len(set(names)) != len(names):
        raise InvalidRequest("input names must be unique")
    inputs = {t.name: as_python(decode(t)) for t in body.inputs}
    payload: Any = {"kwargs": inputs, "stream": False} if _takes_infer_request(model) else inputs
    prepare = model.definition.prepare
    if prepare is not None:
        payload = prepare(payload)
    return encode_outputs(await _result(request, model, payload))


_BY_TASK = {EMBEDDINGS: _embeddings, CHAT: _chat, TRANSCRIPTION: _transcription}


async def infer(request: Request) -> Response:
    if "inference-header-content-length" in request.headers:
        raise InvalidRequest("the binary tensor data extension is not supported; send JSON data")
    model = registry_of(request).get(request.path_params["name"])
    raw = await read_json(request, settings_of(request).max_body_bytes)
    try:
        body = InferenceRequest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise InvalidRequest(f"{where}: {first.get('msg', 'invalid value')}") from None
    outputs = await _BY_TASK.get(model.definition.task, _named_inputs)(request, model, body)
    if body.outputs is not None:
        produced = {o.name: o for o in outputs}
        missing = [o.name for o in body.outputs if o.name not in produced]
        if missing:
            raise InvalidRequest(
                f"unknown output(s) {', '.join(missing)}; this model produces {', '.join(produced)}"
            )
        outputs = [produced[o.name] for o in body.outputs]
    return send(
        InferenceResponse(
            model_name=model.name, id=body.id or request_id_of(request), outputs=outputs
        )
    )


routes = [
    Route("/v2", kserve(server_metadata), methods=["GET"]),
    Route("/v2/health/live", kserve(live), methods=["GET"]),
    Route("/v2/health/ready", kserve(ready), methods=["GET"]),
    Route("/v2/models/{name:path}/ready", kserve(model_ready), methods=["GET"]),
    Route("/v2/models/{name:path}/infer", kserve(infer), methods=["POST"]),
    Route("/v2/models/{name:path}", kserve(model_metadata), methods=["GET"]),
]
