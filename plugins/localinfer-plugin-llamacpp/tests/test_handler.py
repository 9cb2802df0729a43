"""The llama.cpp chat handler on a real GGUF model (SmolLM2-135M-Instruct, Q4_1)."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from llamacpp_support import ask, run, wait_done
from localinfer_llamacpp.handler import LlamaCppChatHandler, context_settings, gguf_file

from localinfer.errors import ConfigurationError, InvalidRequest
from localinfer.handlers.base import ModelSource
from localinfer.handlers.tasks import GenerationRequest, GenerationResult
from localinfer.plugins import discover
from localinfer.testing import RecordingItem, catalog_definition, serve

ALIAS = "smollm2-135m-instruct-q4"


def test_finds_the_gguf_file(tmp_path: Path) -> None:
    (tmp_path / "a.gguf").write_bytes(b"")
    assert gguf_file(ModelSource(str(tmp_path))) == tmp_path / "a.gguf"
    (tmp_path / "b.gguf").write_bytes(b"")
    with pytest.raises(ConfigurationError, match=r"holds 2 \.gguf files"):
        gguf_file(ModelSource(str(tmp_path)))


def test_thread_options() -> None:
    settings = context_settings({"n_threads": 1, "n_threads_batch": 2}, "cpu")
    assert (settings.n_threads, settings.n_threads_batch) == (1, 2)
    assert context_settings({}, "cpu").n_threads_batch is None  # the engine's defaults


def test_discovered() -> None:
    found = discover()
    assert found.handlers["llama-cpp"].task == "chat"
    assert found.handlers["llama-cpp"].requires == ("llama_cpp",)
    assert found.catalog[ALIAS].handler == "llama-cpp"
    # the packaged SmolLM2 is served by llama.cpp by default
    assert found.catalog["smollm2-135m-instruct"].handler == "llama-cpp"


def test_streams_what_llama_cpp_itself_answers(handler: LlamaCppChatHandler, gguf: Path) -> None:
    from llama_cpp import Llama

    item = run(handler, ask("Say hello.", max_new_tokens=24))[0]
    assert item.error is None
    result = item.result
    assert isinstance(result, GenerationResult)
    assert len(item.chunks) > 1 and "".join(item.chunks) == result.text  # token by token
    # greedy decoding: the same text and counts as llama-cpp-python's own chat completion
    # with the engine's attention kernel (llama.cpp's choice on a CPU: flash attention)
    reference_model = Llama(model_path=str(gguf), n_ctx=512, flash_attn=True, verbose=False)
    try:
        reference = reference_model.create_chat_completion(
            [{"role": "user", "content": "Say hello."}], max_tokens=24, temperature=0
        )
    finally:
        reference_model.close()
    assert result.text == reference["choices"][0]["message"]["content"]
    assert result.prompt_tokens == reference["usage"]["prompt_tokens"]
    # the end-of-turn token counts here, as in every localinfer engine; not there
    eos = 1 if result.finish_reason == "stop" else 0
    assert result.completion_tokens == reference["usage"]["completion_tokens"] + eos
    assert result.finish_reason == reference["choices"][0]["finish_reason"]


def test_length_stop_and_cancellation(handler: LlamaCppChatHandler) -> None:
    cancelled = RecordingItem(ask("Write a long story.", max_new_tokens=100), cancel_after=2)
    handler.process([cancelled])
    assert (
        run(handler, ask("Count from one to twenty.", max_new_tokens=3))[0].result.finish_reason
        == "length"
    )
    wait_done([cancelled])
    assert len(cancelled.chunks) == 2  # it stopped at the next token
    assert cancelled.result.completion_tokens <= 3


def test_refuses_what_does_not_fit(handler: LlamaCppChatHandler) -> None:
    overflow, bad = RecordingItem(ask("hi", max_new_tokens=5000)), RecordingItem("hello")
    handler.process([overflow, bad])
    assert isinstance(overflow.error, InvalidRequest)
    assert overflow.error.code == "context_length_exceeded"
    assert isinstance(bad.error, InvalidRequest)


def test_plain_prompt(handler: LlamaCppChatHandler) -> None:
    item = run(handler, GenerationRequest(prompt="One, two,", max_new_tokens=4, temperature=0))[0]
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
