"""Selecting a model by capability instead of by name, on the OpenAI routes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import openai
import pytest

from localinfer.handlers.base import Handler, WorkItem
from localinfer.handlers.tasks import CHAT, EMBEDDINGS, EmbeddingResult, GenerationResult
from localinfer.runtime.model import ModelDefinition
from tests import models
from tests.support import define, running_server

pytestmark = pytest.mark.anyio


class Named(Handler):
    """A chat model that answers with its own name."""

    task = CHAT

    def __init__(self, name: str) -> None:
        self.name = name

    def process(self, items: Sequence[WorkItem]) -> None:
        for item in items:
            item.emit(self.name)
            item.finish(GenerationResult(self.name, "stop", 1, 1, 0.0, 0.0))


class Embedder(Handler):
    task = EMBEDDINGS

    def run_batch(self, inputs: list[Any]) -> list[Any]:
        return [
            EmbeddingResult([[1.0, 0.0]] * len(r.texts), 1, (1,) * len(r.texts)) for r in inputs
        ]


def chat(name: str, **capabilities: str) -> ModelDefinition:
    return ModelDefinition(
        name=name,
        create_handler=lambda i, d: Named(name),
        task=CHAT,
        capabilities=capabilities,
    )


def served() -> list[ModelDefinition]:
    return [
        chat("chat-en", lang="en", size="small"),
        chat("chat-fr", lang="fr", size="small"),
        chat("chat-big", lang="en", size="large"),
        ModelDefinition(
            name="embed-en",
            create_handler=lambda i, d: Embedder(),
            task=EMBEDDINGS,
            capabilities={"lang": "en"},
        ),
        replace(define(models.Echo), capabilities={"lang": "en"}),
    ]


async def answer(client: Any, model: str = "auto", **headers: str) -> tuple[int, Any]:
    r = await client.post(
        "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        headers=headers,
    )
    return r.status_code, r.json()


async def test_capability_header_selects_the_model() -> None:
    async with running_server(served()) as client:
        status, body = await answer(client, **{"X-Capability": "lang=fr"})
        assert (status, body["choices"][0]["message"]["content"]) == (200, "chat-fr")
        status, body = await answer(client, **{"X-Capability": "lang=en, size=large"})
        assert body["choices"][0]["message"]["content"] == "chat-big"
        # anyserve's form: one header per key
        status, body = await answer(client, **{"X-Cap-Lang": "en", "X-Cap-Size": "small"})
        assert body["choices"][0]["message"]["content"] == "chat-en"
        # the model field may itself be a selector
        status, body = await answer(client, model="lang=fr")
        assert body["choices"][0]["message"]["content"] == "chat-fr"
        # task and model are capabilities too
        status, body = await answer(client, **{"X-Capability": "model=chat-big"})
        assert body["choices"][0]["message"]["content"] == "chat-big"
        r = await client.post(
            "/v1/embeddings", json={"model": "any", "input": "x"}, headers={"X-Cap-Lang": "en"}
        )
        assert r.status_code == 200, r.text


async def test_no_match_is_404_listing_what_is_served() -> None:
    async with running_server(served()) as client:
        status, body = await answer(client, **{"X-Capability": "lang=de"})
        assert status == 404
        error = body["error"]
        assert error["code"] == "no_capability_match"
        assert "no served model offers lang=de,task=chat" in error["message"]
        assert error["known_capabilities"]["chat-fr"] == {
            "lang": "fr",
            "size": "small",
            "task": "chat",
            "model": "chat-fr",
        }
        assert error["known_capabilities"]["echo"]["task"] == "infer"


async def test_bad_selectors_are_400() -> None:
    async with running_server(served()) as client:
        status, body = await answer(client, **{"X-Capability": "lang"})
        assert status == 400 and "key=value" in body["error"]["message"]
        status, body = await answer(client, **{"X-Capability": "task=embeddings"})
        assert status == 400 and "this route serves chat" in body["error"]["message"]


async def test_openai_sdk_with_a_capability_header() -> None:
    async with running_server(served()) as client:
        base = str(client.base_url).rstrip("/")
        sdk = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
        reply = await sdk.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"X-Capability": "lang=en,size=large"},
        )
        assert reply.choices[0].message.content == "chat-big"
        await sdk.close()


async def test_capabilities_show_in_health_and_model_info() -> None:
    async with running_server(served()) as client:
        health = (await client.get("/health")).json()["models"]
        assert health["chat-fr"]["capabilities"]["lang"] == "fr"
        info = (await client.get("/v1/models/echo")).json()
        assert info["capabilities"] == {"lang": "en", "task": "infer", "model": "echo"}
