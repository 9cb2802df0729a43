"""KServe v2 over HTTP: health, metadata, typed tensors in and out, errors in KServe's shape."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pytest

from localinfer.handlers.base import Handler, WorkItem
from localinfer.handlers.tasks import (
    CHAT,
    EMBEDDINGS,
    TRANSCRIPTION,
    EmbeddingRequest,
    EmbeddingResult,
    GenerationRequest,
    GenerationResult,
    TranscriptionRequest,
    TranscriptionResult,
)
from localinfer.runtime.model import ModelDefinition
from tests import models
from tests.support import define, running_server

pytestmark = pytest.mark.anyio


class Embedder(Handler):
    """Two-dimensional "embeddings": (length, number of spaces), as float32."""

    task = EMBEDDINGS

    def run_batch(self, inputs: list[EmbeddingRequest]) -> list[EmbeddingResult]:
        return [
            EmbeddingResult(
                vectors=[[float(len(t)), float(t.count(" "))] for t in r.texts],
                prompt_tokens=len(r.texts),
                text_tokens=(1,) * len(r.texts),
            )
            for r in inputs
        ]


class Chatter(Handler):
    task = CHAT

    def process(self, items: Sequence[WorkItem]) -> None:
        for item in items:
            request: GenerationRequest = item.payload
            text = str(request.messages[-1]["content"])[::-1] if request.messages else ""
            item.emit(text)
            item.finish(GenerationResult(text, "stop", 1, 1, 0.0, 0.0))


class Listener(Handler):
    task = TRANSCRIPTION

    def run_batch(self, inputs: list[TranscriptionRequest]) -> list[TranscriptionResult]:
        return [
            TranscriptionResult(f"{r.audio.size} samples at {r.sample_rate}", "en", 0.0)
            for r in inputs
        ]


class Arrays:
    """Named inputs as keyword arguments; a dict result becomes one tensor per key."""

    name = "arrays"

    def infer(self, matrix: list[list[float]], scale: float = 1.0, label: str = "") -> Any:
        return {
            "scaled": [[v * scale for v in row] for row in matrix],
            "rows": len(matrix),
            "label": label.upper(),
            "flags": [v > 0 for row in matrix for v in row],
        }


class SlowLoad:
    name = "slow"

    def setup(self, device: str) -> None:
        time.sleep(2.0)

    def infer(self) -> str:
        return "late"


def handler_model(name: str, handler: type[Handler]) -> ModelDefinition:
    return ModelDefinition(name=name, create_handler=lambda i, d: handler(), task=handler.task)


def tensor(name: str, datatype: str, shape: list[int], data: Any) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def outputs(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["name"]: o for o in body["outputs"]}


async def test_health_and_metadata() -> None:
    defs = [define(models.Echo), handler_model("embed", Embedder)]
    async with running_server(defs) as client:
        assert (await client.get("/v2/health/live")).json() == {"live": True}
        assert (await client.get("/v2/health/ready")).json() == {"ready": True}
        assert (await client.get("/v2")).json()["name"] == "localinfer"
        r = await client.get("/v2/models/echo/ready")
        assert r.json() == {"name": "echo", "ready": True}
        meta = (await client.get("/v2/models/echo")).json()
        assert meta["name"] == "echo"
        assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
            ("text", "BYTES"),
            ("repeat", "INT64"),
        ]
        meta = (await client.get("/v2/models/embed")).json()
        assert meta["outputs"] == [{"name": "embedding", "datatype": "FP32", "shape": [-1, -1]}]
        r = await client.get("/v2/models/nope")
        assert r.status_code == 404
        assert set(r.json()) == {"error"}
        assert "'nope'" in r.json()["error"]


async def test_not_ready_is_503() -> None:
    async with running_server([define(SlowLoad)], wait_ready=False) as client:
        r = await client.get("/v2/health/ready")
        assert (r.status_code, r.json()) == (503, {"ready": False})
        r = await client.get("/v2/models/slow/ready")
        assert (r.status_code, r.json()["ready"]) == (503, False)


async def test_infer_class_gets_named_inputs_as_kwargs() -> None:
    async with running_server([define(Arrays)]) as client:
        r = await client.post(
            "/v2/models/arrays/infer",
            json={
                "id": "req-1",
                "inputs": [
                    tensor("matrix", "FP32", [2, 2], [[1, -2], [3, 4]]),
                    tensor("scale", "FP64", [1], [0.5]),
                    tensor("label", "BYTES", [1], ["hi"]),
                ],
            },
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["model_name"], body["id"]) == ("arrays", "req-1")
        out = outputs(body)
        assert out["scaled"] == tensor("scaled", "FP64", [2, 2], [0.5, -1.0, 1.5, 2.0])
        assert out["rows"] == tensor("rows", "INT64", [1], [2])
        assert out["label"] == tensor("label", "BYTES", [1], ["HI"])
        assert out["flags"] == tensor("flags", "BOOL", [4], [True, False, True, True])
        # ask for some outputs only, in a given order
        r = await client.post(
            "/v2/models/arrays/infer",
            json={
                "inputs": [tensor("matrix", "INT64", [1, 1], [7])],
                "outputs": [{"name": "label"}, {"name": "rows"}],
            },
        )
        assert [o["name"] for o in r.json()["outputs"]] == ["label", "rows"]


async def test_embeddings_bytes_in_fp32_out() -> None:
    async with running_server([handler_model("embed", Embedder)]) as client:
        r = await client.post(
            "/v2/models/embed/infer",
            json={"inputs": [tensor("text", "BYTES", [3], ["a b", "abc", "x y z"])]},
        )
        assert r.status_code == 200, r.text
        embedding = outputs(r.json())["embedding"]
        assert embedding == tensor("embedding", "FP32", [3, 2], [3, 1, 3, 0, 5, 2])


async def test_chat_and_transcription() -> None:
    defs = [handler_model("chat", Chatter), handler_model("ears", Listener)]
    async with running_server(defs) as client:
        r = await client.post(
            "/v2/models/chat/infer",
            json={
                "inputs": [tensor("text_input", "BYTES", [2], ["abc", "hello"])],
                "parameters": {"max_tokens": 8},
            },
        )
        assert r.status_code == 200, r.text
        out = outputs(r.json())
        assert out["text_output"]["data"] == ["cba", "olleh"]
        assert out["finish_reason"]["data"] == ["stop", "stop"]
        r = await client.post(
            "/v2/models/ears/infer",
            json={
                "inputs": [tensor("audio", "FP32", [1, 4], [0.0, 0.1, -0.1, 0.0])],
                "parameters": {"sample_rate": 8000},
            },
        )
        assert outputs(r.json())["text"]["data"] == ["4 samples at 8000"]


@pytest.mark.parametrize(
    ("inputs", "status", "message"),
    [
        ([tensor("text", "BYTES", [2], ["only one"])], 400, "holds 2 element(s), data has 1"),
        ([tensor("text", "BYTES", [2, 2], ["a", "b", "c"])], 400, "holds 4 element(s)"),
        ([tensor("repeat", "INT8", [1], [300])], 400, "is not a valid INT8"),
        ([tensor("text", "BYTES", [1], [5])], 400, "is not a valid BYTES"),
        ([tensor("repeat", "INT64", [1], [True])], 400, "is not a valid INT64"),
        ([tensor("text", "STRING", [1], ["a"])], 400, "unsupported datatype"),
        ([tensor("text", "BYTES", [-1], ["a"])], 400, "must not be negative"),
        ([tensor("repeat", "INT64", [1], [2])], 422, "missing a required argument: 'text'"),
        ([], 400, "inputs"),
    ],
)
async def test_bad_tensors_answer_in_kserve_shape(
    inputs: list[dict[str, Any]], status: int, message: str
) -> None:
    async with running_server([define(models.Echo)]) as client:
        r = await client.post("/v2/models/echo/infer", json={"inputs": inputs})
        assert r.status_code == status, r.text
        assert set(r.json()) == {"error"}
        assert message in r.json()["error"]


async def test_protocol_errors() -> None:
    async with running_server([define(models.Echo), define(models.Flaky)]) as client:
        text = [tensor("text", "BYTES", [1], ["a"])]
        r = await client.post("/v2/models/nope/infer", json={"inputs": text})
        assert r.status_code == 404 and "error" in r.json()
        r = await client.post(
            "/v2/models/echo/infer", json={"inputs": text, "outputs": [{"name": "nope"}]}
        )
        assert r.status_code == 400 and "unknown output(s) nope" in r.json()["error"]
        r = await client.post(
            "/v2/models/echo/infer",
            json={"inputs": text},
            headers={"Inference-Header-Content-Length": "10"},
        )
        assert r.status_code == 400 and "binary tensor data" in r.json()["error"]
        r = await client.post(
            "/v2/models/echo/infer", content=b"{", headers={"content-type": "application/json"}
        )
        assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
        r = await client.post(
            "/v2/models/flaky/infer", json={"inputs": [tensor("fail", "BOOL", [1], [True])]}
        )
        assert r.status_code == 500
        assert r.json() == {"error": "ValueError: boom: bad luck"}


async def test_answers_are_the_protocol_models_openapi_documents() -> None:
    """Each /v2 answer is exactly its model's dump (nothing beside it), and /openapi.json
    describes it by that model's own schema."""
    from pydantic import BaseModel

    from localinfer.server.protocol import kserve as k

    defs = [define(models.Echo), handler_model("embed", Embedder)]
    async with running_server(defs) as client:
        infer = await client.post(
            "/v2/models/embed/infer", json={"inputs": [tensor("text", "BYTES", [1], ["a"])]}
        )
        answers: list[tuple[str, type[BaseModel], Any]] = [
            ("/v2", k.ServerMetadata, (await client.get("/v2")).json()),
            ("/v2/health/live", k.Liveness, (await client.get("/v2/health/live")).json()),
            ("/v2/models/{name}", k.ModelMetadata, (await client.get("/v2/models/echo")).json()),
            ("/v2/models/{name}/infer", k.InferenceResponse, infer.json()),
            ("/v2/models/{name}", k.KServeError, (await client.get("/v2/models/no")).json()),
        ]
        document = (await client.get("/openapi.json")).json()
    for _, model, body in answers:
        assert k.answer_body(model.model_validate(body)) == body
    schemas = document["components"]["schemas"]
    for name in ("ServerMetadata", "ModelMetadata", "InferenceResponse", "KServeError"):
        model = getattr(k, name)
        assert set(schemas[name]["properties"]) == set(model.model_fields)
    infer_doc = document["paths"]["/v2/models/{name}/infer"]["post"]["responses"]
    assert infer_doc["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/InferenceResponse"
    }
