"""Real (tiny) models served from processes of their own answer as they do in the server's
process: the same embeddings, the same greedy chat, streamed; ``/health`` says where."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support import define_local, running_server

pytestmark = pytest.mark.anyio


def streamed_text(events: list[str]) -> str:
    chunks = [json.loads(event.removeprefix("data: ")) for event in events]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


async def test_an_isolated_embedding_model_answers_as_the_one_in_process(
    tiny_bert_dir: Path,
) -> None:
    definitions = [
        define_local(tiny_bert_dir, "here"),
        define_local(tiny_bert_dir, "apart", isolation="nice"),
    ]
    async with running_server(definitions) as client:
        texts = ["a first text", "and a second, longer one"]
        answers = {}
        for model in ("here", "apart"):
            response = await client.post("/v1/embeddings", json={"model": model, "input": texts})
            assert response.status_code == 200, response.text
            answers[model] = [row["embedding"] for row in response.json()["data"]]
        for apart, here in zip(answers["apart"], answers["here"], strict=True):
            assert apart == pytest.approx(here, abs=1e-6)
        health = (await client.get("/health")).json()["models"]
        assert "(in a process of its own)" in health["apart"]["workers"][0]["engine"]
        assert "in a process of its own" not in str(health["here"]["workers"][0]["engine"])
        listed = {m["id"]: m for m in (await client.get("/v1/models")).json()["data"]}
        assert "(in a process of its own)" in listed["apart"]["engine"]


async def test_isolated_chat_streams_the_same_greedy_tokens(tiny_llama_dir: Path) -> None:
    definitions = [
        define_local(tiny_llama_dir, "here"),
        define_local(tiny_llama_dir, "apart", isolation="idle"),
    ]
    request = {
        "messages": [{"role": "user", "content": "Count with me"}],
        "max_tokens": 12,
        "temperature": 0,
        "stream": True,
    }
    async with running_server(definitions) as client:
        streamed = {}
        for model in ("here", "apart"):
            pieces = []
            async with client.stream(
                "POST", "/v1/chat/completions", json={**request, "model": model}
            ) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if line.startswith("data: {"):
                        pieces.append(line)
            streamed[model] = pieces
        texts = {model: streamed_text(pieces) for model, pieces in streamed.items()}
        assert texts["apart"] == texts["here"] and texts["here"]
        health = (await client.get("/health")).json()["models"]["apart"]
        assert "(in a process of its own)" in health["workers"][0]["engine"]


async def test_user_code_named_by_its_import_path_runs_in_a_process_of_its_own() -> None:
    from localinfer.runtime.targets import target_definition

    target = "tests.runtime.isolated_handlers:WhereAmI"
    definitions = [
        target_definition(target, name="apart", isolation_of=lambda name: "nice"),
        target_definition(target, name="here"),
    ]
    async with running_server(definitions) as client:
        pids = {}
        for model in ("apart", "here"):
            response = await client.post(f"/v1/infer/{model}", json={"args": []})
            assert response.status_code == 200, response.text
            pids[model] = response.json()["pid"]
        assert pids["here"] == os.getpid() != pids["apart"]
        events = []
        async with client.stream(
            "POST", "/v1/infer/apart", json={"kwargs": {"count": 5}, "stream": True}
        ) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: {"):
                    events.append(json.loads(line.removeprefix("data: ")))
        assert [e["n"] for e in events] == list(range(5))
        assert {e["pid"] for e in events} == {pids["apart"]}
