"""``localinfer.Engine``: the handlers without HTTP, with the Client's results and errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import anyio
import numpy as np
import pytest

import localinfer
from localinfer import errors as e
from localinfer.client import ChatResult
from localinfer.plugins import discover
from localinfer.runtime.resolve import model_definition, resolve
from tests import models
from tests.client.fakes import SlowChat
from tests.support import wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def chat_handler() -> SlowChat:
    return SlowChat(delay_s=0.01)


@pytest.fixture(scope="module")
async def engine(
    chat_handler: SlowChat, tiny_llama_dir: Path, tiny_whisper_dir: Path, minilm_dir: Path
) -> AsyncIterator[localinfer.Engine]:
    whisper = replace(
        resolve(str(tiny_whisper_dir), discover(), options={"max_new_tokens": 16}), name="asr"
    )
    served = {
        "slow": chat_handler,
        "tiny-chat": tiny_llama_dir,
        "minilm": minilm_dir,
        "asr": model_definition(whisper),
        "echo": models.Echo,
        "words": models.Words,
        "norm": models.NormAPI,
        "flaky": models.Flaky,
    }
    async with localinfer.Engine(served, device="cpu") as running:
        yield running


async def test_chat_on_a_real_model_whole_and_streamed(engine: localinfer.Engine) -> None:
    whole = await engine.chat("Hello!", model="tiny-chat", max_tokens=8, temperature=0)
    assert isinstance(whole, ChatResult) and whole.model == "tiny-chat"
    assert 1 <= whole.usage.completion_tokens <= 8 and whole.timing.prefill_ms > 0
    stream = engine.chat("Hello!", model="tiny-chat", max_tokens=8, temperature=0, stream=True)
    assert "".join([delta async for delta in stream]) == whole.text
    assert stream.result is not None and stream.result.usage == whole.usage


async def test_leaving_a_stream_cancels_the_job_at_once(
    engine: localinfer.Engine, chat_handler: SlowChat
) -> None:
    before = engine.stats()["slow"].cancelled
    chat_handler.stopped.clear()
    seen = 0
    async with engine.chat("go", model="slow", max_tokens=10_000, stream=True) as stream:
        async for _ in stream:
            seen += 1
            if seen == 3:
                break
    started = time.perf_counter()
    await wait_until(chat_handler.stopped.is_set, timeout=2)
    assert time.perf_counter() - started < 0.5
    assert engine.stats()["slow"].cancelled == before + 1
    await wait_until(lambda: engine.stats()["slow"].busy_workers == 0, timeout=1)


async def test_a_deadline_cancels_the_job(chat_handler: SlowChat) -> None:
    async with localinfer.Engine({"slow": chat_handler}, request_timeout_s=0.2) as engine:
        chat_handler.stopped.clear()
        with pytest.raises(e.RequestTimeout, match=r"0\.2 s"):
            await engine.chat("go", max_tokens=10_000)
        await wait_until(chat_handler.stopped.is_set, timeout=2)
        chat_handler.stopped.clear()
        with pytest.raises(e.RequestTimeout):
            async for _ in engine.chat("go", max_tokens=10_000, stream=True):
                pass
        await wait_until(chat_handler.stopped.is_set, timeout=2)
        assert engine.stats()["slow"].cancelled == 2


async def test_embeddings_of_a_real_model(engine: localinfer.Engine) -> None:
    result = await engine.embed(["a cat", "a kitten", "stock market news"])
    assert result.shape == (3, 384) and result.model == "minilm"
    similarity = result.similarity()
    assert similarity.most_similar("a cat", k=2)[1][0] == "a kitten"
    with pytest.raises(e.InvalidRequest):
        await engine.embed([""])


async def test_transcription_from_samples(engine: localinfer.Engine) -> None:
    t = np.arange(8000) / 8000
    stereo = np.stack([np.sin(2 * np.pi * 300 * t), np.sin(2 * np.pi * 500 * t)]) * 0.3
    result = await engine.transcribe(stereo, sample_rate=8000)
    assert result.model == "asr" and result.duration == pytest.approx(1.0, abs=0.05)
    assert result.language.isalpha()  # the language's name ("english"), as over HTTP


async def test_user_code_infer_stream_and_predict(engine: localinfer.Engine) -> None:
    assert (await engine.infer("echo", "ab", repeat=2))["text"] == "abab"  # type: ignore[index]
    assert await engine.infer("words", 3) == "w0 w1 w2 "
    assert [w async for w in engine.infer_stream("words", 2)] == ["w0 ", "w1 "]
    (whole,) = [r async for r in engine.infer_stream("echo", "a")]  # not a generator: one item
    assert whole["text"] == "a"  # type: ignore[index]
    assert await engine.predict("norm", {"x": 3, "y": 4}) == {"norm": 5.0}


async def test_errors_are_the_same_classes_as_over_http(engine: localinfer.Engine) -> None:
    with pytest.raises(e.ModelNotFound):
        await engine.infer("nope")
    with pytest.raises(e.InvalidArguments, match="missing a required argument"):
        await engine.infer("echo")
    with pytest.raises(e.HandlerFailed, match="boom"):
        await engine.infer("flaky", fail=True)
    with pytest.raises(e.InvalidRequest, match="several serve chat"):
        await engine.chat("hi")
    with pytest.raises(e.InvalidRequest, match="serves infer, not chat"):
        await engine.chat("hi", model="echo")
    with pytest.raises(e.InvalidRequest, match="max_tokens"):
        await engine.chat("hi", model="slow", max_tokens=10**9)


async def test_models_load_and_unload_while_running(engine: localinfer.Engine) -> None:
    info = await engine.load(models.Sleeper, name="late")
    assert (info.id, info.task) == ("late", "infer")
    assert "late" in engine.models() and await engine.infer("late", tag="x") == {"tag": "x"}
    await engine.unload("late")
    assert "late" not in engine.models()
    with pytest.raises(e.ConfigurationError, match="failed to load"):
        await engine.load(models.BrokenLoader)
    assert "broken-loader" not in engine.models()


def test_start_and_stop_from_separate_cells() -> None:
    async def notebook() -> None:
        engine = localinfer.Engine([models.Echo], device="cpu")
        await asyncio.create_task(engine.start())
        assert await asyncio.create_task(engine.infer("echo", "hi")) == {
            "text": "hi",
            "thread": "localinfer:echo:0.0",
            "built_in": "localinfer:echo:0.0",
            "device": "cpu",
        }
        await asyncio.create_task(engine.stop())
        with pytest.raises(RuntimeError, match="not running"):
            engine.models()

    asyncio.run(notebook())


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_runs_under_trio(anyio_backend: str) -> None:
    async with localinfer.Engine([models.Words], device="cpu") as engine:
        assert [w async for w in engine.infer_stream("words", 2)] == ["w0 ", "w1 "]
        with anyio.fail_after(5):
            assert await engine.infer("words", 1) == "w0 "


async def test_rerank_by_an_embeddings_model_in_process(engine: localinfer.Engine) -> None:
    documents = [
        "Stocks rose on Friday.",
        "Bake the loaf at 220 C for 30 minutes.",
        "Penguins swim.",
    ]
    ranking = await engine.rerank(
        "how to bake bread", documents, model="minilm", top_n=2, return_documents=True
    )
    assert ranking.indices[0] == 1 and len(ranking) == 2 and ranking.model == "minilm"
    assert ranking[0].document == documents[1] and ranking.usage.total_tokens > 0
    with pytest.raises(e.InvalidRequest, match="top_n"):
        await engine.rerank("q", ["a"], model="minilm", top_n=2)
    with pytest.raises(e.InvalidRequest, match="documents must not be empty"):
        await engine.rerank("q", [], model="minilm")
    with pytest.raises(e.InvalidRequest, match="rerank needs a rerank or embeddings model"):
        await engine.rerank("q", ["a"], model="tiny-chat")


async def test_chat_with_images_in_process(tiny_vlm_dir: Path, tiny_llama_dir: Path) -> None:
    from PIL import Image

    from localinfer.client import user_message

    picture = Image.new("RGB", (40, 30), "red")
    async with localinfer.Engine(
        {"vision": tiny_vlm_dir, "text": tiny_llama_dir}, device="cpu"
    ) as engine:
        message = user_message("what is it?", picture)
        whole = await engine.chat([message], model="vision", max_tokens=5, temperature=0)
        assert whole.usage.prompt_tokens > 4 and whole.usage.completion_tokens >= 1
        stream = engine.chat([message], model="vision", max_tokens=5, temperature=0, stream=True)
        assert "".join([piece async for piece in stream]) == whole.text
        with pytest.raises(e.InvalidRequest, match="does not accept image parts"):
            await engine.chat([message], model="text", max_tokens=2)
        with pytest.raises(e.InvalidRequest, match="remote image URLs are turned off"):
            await engine.chat(
                [user_message("x", "https://example.com/a.png")],
                model="vision",
                max_tokens=2,
            )
