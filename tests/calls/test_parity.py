"""HTTP and ``Engine`` go through one call layer: a request one refuses, the other
refuses too, with the same error code (and the same class, over HTTP as the client's)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

import localinfer
from localinfer import errors as e
from localinfer.config import load_settings
from localinfer.handlers.base import Handler, WorkItem
from localinfer.handlers.tasks import EmbeddingRequest, EmbeddingResult
from tests.client.fakes import SlowChat

pytestmark = pytest.mark.anyio

#: small limits, the same for both faces
SETTINGS = load_settings(
    port=0, max_tokens_limit=64, max_input_chars=100, max_messages=4, max_embedding_inputs=3
)


class Ones(Handler):
    """Embeddings task: a vector of ones per text."""

    task = "embeddings"
    name = "ones"

    def process(self, items: Sequence[WorkItem]) -> None:
        for item in items:
            request: EmbeddingRequest = item.payload
            n = len(request.texts)
            item.finish(EmbeddingResult([[1.0, 0.0]] * n, n, (1,) * n))


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Faces:
    engine: localinfer.Engine
    http: httpx.AsyncClient


@pytest.fixture(scope="module")
async def faces() -> AsyncIterator[Faces]:
    models = {"chat": SlowChat(delay_s=0.0), "other-chat": SlowChat(0.0), "ones": Ones()}
    async with (
        localinfer.Engine(models, device="cpu", settings=SETTINGS) as engine,
        localinfer.Server(models, device="cpu", settings=SETTINGS) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as http,
    ):
        yield Faces(engine, http)


def _chat(**fields: Any) -> dict[str, Any]:
    return {"model": "chat", "messages": [{"role": "user", "content": "hi"}], **fields}


EngineCall = Callable[[localinfer.Engine], Awaitable[object]]


@dataclass(frozen=True)
class Bad:
    """One bad request, as each face would send it."""

    id: str
    path: str
    body: dict[str, Any]
    engine: EngineCall


BAD = [
    Bad(
        "max-tokens-over-limit",
        "/v1/chat/completions",
        _chat(max_tokens=65),
        lambda en: en.chat("hi", model="chat", max_tokens=65),
    ),
    Bad(
        "prompt-too-long",
        "/v1/chat/completions",
        _chat(messages=[{"role": "user", "content": "x" * 101}]),
        lambda en: en.chat("x" * 101, model="chat"),
    ),
    Bad(
        "too-many-messages",
        "/v1/chat/completions",
        _chat(messages=[{"role": "user", "content": "hi"}] * 5),
        lambda en: en.chat([{"role": "user", "content": "hi"}] * 5, model="chat"),
    ),
    Bad(
        "model-of-another-task",
        "/v1/chat/completions",
        _chat(model="ones"),
        lambda en: en.chat("hi", model="ones"),
    ),
    Bad(
        "unknown-model",
        "/v1/chat/completions",
        _chat(model="nope"),
        lambda en: en.chat("hi", model="nope"),
    ),
    Bad(
        "embed-empty-text",
        "/v1/embeddings",
        {"model": "ones", "input": ["a", ""]},
        lambda en: en.embed(["a", ""], model="ones"),
    ),
    Bad(
        "embed-too-many-texts",
        "/v1/embeddings",
        {"model": "ones", "input": ["a"] * 4},
        lambda en: en.embed(["a"] * 4, model="ones"),
    ),
    Bad(
        "embed-text-too-long",
        "/v1/embeddings",
        {"model": "ones", "input": ["x" * 101]},
        lambda en: en.embed(["x" * 101], model="ones"),
    ),
    Bad(
        "embed-with-a-chat-model",
        "/v1/embeddings",
        {"model": "chat", "input": ["a"]},
        lambda en: en.embed(["a"], model="chat"),
    ),
]


@pytest.mark.parametrize("bad", BAD, ids=[b.id for b in BAD])
async def test_engine_and_http_refuse_alike(faces: Faces, bad: Bad) -> None:
    response = await faces.http.post(bad.path, json=bad.body)
    assert response.status_code >= 400, response.text
    code = response.json()["error"]["code"]
    with pytest.raises(e.LocalInferError) as refused:
        await bad.engine(faces.engine)
    assert refused.value.code == code, (refused.value, response.json())


async def test_both_accept_what_is_within_the_limits(faces: Faces) -> None:
    response = await faces.http.post("/v1/chat/completions", json=_chat(max_tokens=64))
    assert response.status_code == 200, response.text
    result = await faces.engine.chat("hi", model="chat", max_tokens=64)
    assert result.usage.completion_tokens == response.json()["usage"]["completion_tokens"]
