"""Chat, embeddings and transcription on tiny real models, through ``Client`` and
``SyncClient`` against one in-process ``Server``."""

from __future__ import annotations

import wave
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import anyio
import numpy as np
import pytest

import localinfer
from localinfer.client import Client, SyncClient
from localinfer.plugins import discover
from localinfer.runtime.model import ModelDefinition
from localinfer.runtime.resolve import model_definition, resolve
from tests.support import ASR, CHAT, EMBED

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def whisper(path: Path) -> ModelDefinition:
    # a random model babbles to its length limit: a short window keeps the tests fast
    resolved = replace(resolve(str(path), discover(), options={"max_new_tokens": 24}), name=ASR)
    return model_definition(resolved)


@pytest.fixture(scope="module")
async def server(
    tiny_llama_dir: Path, tiny_bert_dir: Path, tiny_whisper_dir: Path
) -> AsyncIterator[localinfer.Server]:
    served = {CHAT: tiny_llama_dir, EMBED: tiny_bert_dir, ASR: whisper(tiny_whisper_dir)}
    async with localinfer.Server(served, device="cpu") as running:
        yield running


@pytest.fixture
async def client(server: localinfer.Server) -> AsyncIterator[Client]:
    async with server.client() as c:
        yield c


def tone(seconds: float = 1.0, rate: int = 16_000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


async def test_chat_whole_and_streamed_agree(client: Client) -> None:
    whole = await client.chat("Say something.", system="Be terse.", max_tokens=8, temperature=0)
    assert 1 <= whole.usage.completion_tokens <= 8 and whole.usage.prompt_tokens > 5
    assert whole.timing.prefill_ms > 0 and whole.model == CHAT
    stream = client.chat(
        "Say something.", system="Be terse.", max_tokens=8, temperature=0, stream=True
    )
    deltas = [delta async for delta in stream]
    assert "".join(deltas) == whole.text
    assert stream.result is not None and stream.result.usage == whole.usage


async def test_embeddings_are_normalised_and_comparable(client: Client) -> None:
    texts = ["the quick brown fox", "a cat sat on the mat", "the quick brown fox"]
    result = await client.embed(texts)
    assert result.shape == (3, 32) and result.texts == tuple(texts)
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, rtol=1e-5)
    similarity = result.similarity()
    assert similarity.matrix[0, 2] == pytest.approx(1.0, abs=1e-5)
    assert result.usage.prompt_tokens > 0
    assert (await client.embed("one", dimensions=16)).shape == (1, 16)


async def test_transcribe_samples_bytes_and_paths(client: Client, tmp_path: Path) -> None:
    samples = tone(1.0, rate=8000)
    from_array = await client.transcribe(samples, sample_rate=8000)
    assert from_array.model == ASR and from_array.duration == pytest.approx(1.0, abs=0.05)
    assert from_array.language  # the tiny model picks one; the name, as OpenAI reports it
    path = tmp_path / "tone.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16_000)
        wav.writeframes((tone(0.5) * 32767).astype("<i2").tobytes())
    from_path = await client.transcribe(path, language="en")
    from_bytes = await client.transcribe(path.read_bytes(), language="en")
    # a random model's words vary (temperature fallback samples): compare what is fixed
    assert from_path.duration == from_bytes.duration == pytest.approx(0.5, abs=0.05)
    translated = await client.transcribe(path, translate=True)
    assert translated.duration == pytest.approx(0.5, abs=0.05)


async def test_sync_client_from_another_thread(server: localinfer.Server) -> None:
    """The blocking twin gives the same results (from a thread: it must not block the loop)."""

    def script() -> tuple[str, str, tuple[int, int]]:
        with server.sync_client() as client:
            whole = client.chat("Hi", max_tokens=5, temperature=0)
            with client.chat("Hi", max_tokens=5, temperature=0, stream=True) as stream:
                streamed = "".join(stream)
            return whole.text, streamed, client.embed(["a", "b"]).shape

    whole, streamed, shape = await anyio.to_thread.run_sync(script)
    assert whole == streamed and shape == (2, 32)


async def test_sync_client_breaking_out_closes_the_stream(server: localinfer.Server) -> None:
    def script() -> str:
        with SyncClient(server.url) as client:
            stream = client.chat("Hi", max_tokens=50, temperature=0, stream=True)
            first = next(iter(stream))
            stream.close()
            assert client.models().get(CHAT) is not None  # the connection pool still works
            return first

    assert await anyio.to_thread.run_sync(script)
