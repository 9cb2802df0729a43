"""The OpenAI routes through the official ``openai`` SDK (sync and async), on tiny local models."""

from __future__ import annotations

import base64
import math
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import numpy as np
import openai
import pytest
from transformers import AutoTokenizer

from tests.fixtures.audio import tone_wav
from tests.support import ASR, CHAT, EMBED, ThreadedServer, tiny_models

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def server(
    tiny_llama_dir: Path, tiny_bert_dir: Path, tiny_whisper_dir: Path
) -> Iterator[ThreadedServer]:
    definitions = tiny_models(tiny_llama_dir, tiny_bert_dir, tiny_whisper_dir, whisper_tokens=24)
    with ThreadedServer(
        definitions, max_embedding_inputs=64, max_input_chars=20_000, max_audio_seconds=120
    ) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: ThreadedServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as c:
        yield c


@pytest.fixture
def aclient(server: ThreadedServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say something about the sea."},
]


# -- models ------------------------------------------------------------------------------------


def test_models_lists_every_model_with_its_task(client: openai.OpenAI) -> None:
    models = {m.id: m.model_extra["task"] for m in client.models.list()}  # type: ignore[index]
    assert models == {CHAT: "chat", EMBED: "embeddings", ASR: "transcription"}
    assert client.models.retrieve(CHAT).id == CHAT
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("nope")
    assert err.value.code == "model_not_found"


# -- chat --------------------------------------------------------------------------------------


def test_chat_non_streaming_reports_real_usage_and_timing(
    client: openai.OpenAI, tiny_llama_dir: Path
) -> None:
    reply = client.chat.completions.create(
        model=CHAT, messages=MESSAGES, max_tokens=12, temperature=0
    )
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    prompt_ids = tokenizer.apply_chat_template(
        MESSAGES, add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    assert reply.object == "chat.completion"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == len(prompt_ids)
    assert 1 <= reply.usage.completion_tokens <= 12
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length")
    if choice.finish_reason == "length":
        assert reply.usage.completion_tokens == 12
    performance = reply.model_extra["performance"]  # type: ignore[index]
    assert set(performance) == {"queue_ms", "prefill_ms", "decode_ms", "tokens_per_second"}
    assert performance["prefill_ms"] > 0 and performance["queue_ms"] >= 0


def test_chat_stream_matches_non_stream_and_ends_with_usage(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(
        model=CHAT, messages=MESSAGES, max_tokens=16, temperature=0
    )
    stream = client.chat.completions.create(
        model=CHAT,
        messages=MESSAGES,
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    deltas = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) > 1  # token by token, not one blob
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finish] == [whole.choices[0].finish_reason]
    assert "tokens_per_second" in finish[0].model_extra["performance"]  # type: ignore[index]
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage


async def test_async_client_streams(aclient: openai.AsyncOpenAI) -> None:
    async with aclient:
        stream = await aclient.chat.completions.create(
            model=CHAT, messages=MESSAGES, max_tokens=8, temperature=0, stream=True
        )
        pieces = [c.choices[0].delta.content async for c in stream if c.choices]
        whole = await aclient.chat.completions.create(
            model=CHAT, messages=MESSAGES, max_tokens=8, temperature=0
        )
    assert "".join(p or "" for p in pieces) == whole.choices[0].message.content


def test_stop_and_seed(client: openai.OpenAI) -> None:
    free = (
        client.chat.completions.create(model=CHAT, messages=MESSAGES, max_tokens=24, temperature=0)
        .choices[0]
        .message.content
        or ""
    )
    assert len(free) > 2
    stop = free[1:3]
    stopped = client.chat.completions.create(
        model=CHAT, messages=MESSAGES, max_tokens=24, temperature=0, stop=[stop]
    )
    assert stopped.choices[0].finish_reason == "stop"
    assert stop not in (stopped.choices[0].message.content or "")
    assert free.startswith(stopped.choices[0].message.content or "")
    sampled = [
        client.chat.completions.create(
            model=CHAT, messages=MESSAGES, max_tokens=12, temperature=1.0, seed=7
        )
        .choices[0]
        .message.content
        for _ in range(2)
    ]
    assert sampled[0] == sampled[1]


def test_completions_stream_and_not(client: openai.OpenAI) -> None:
    whole = client.completions.create(model=CHAT, prompt="The sea is", max_tokens=10, temperature=0)
    assert whole.object == "text_completion"
    assert whole.usage is not None and whole.usage.completion_tokens <= 10
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model=CHAT, prompt="The sea is", max_tokens=10, temperature=0, stream=True
        )
        if c.choices
    )
    assert streamed == whole.choices[0].text


def test_chat_bad_input(client: openai.OpenAI) -> None:
    cases = [
        (dict(model=CHAT, messages=MESSAGES, n=9), openai.BadRequestError, "n"),
        (dict(model="nope", messages=MESSAGES), openai.NotFoundError, "does not exist"),
        (dict(model=CHAT, messages=[]), openai.BadRequestError, "messages"),
        (
            dict(model=CHAT, messages=[{"role": "wizard", "content": "hi"}]),
            openai.BadRequestError,
            "messages.0.role",
        ),
        (dict(model=CHAT, messages=MESSAGES, max_tokens=-1), openai.BadRequestError, "max_tokens"),
        (dict(model=CHAT, messages=MESSAGES, max_tokens=10_000), openai.BadRequestError, "context"),
        (
            dict(model=CHAT, messages=MESSAGES, max_tokens=10**9),
            openai.BadRequestError,
            "largest accepted",
        ),
        (
            dict(model=CHAT, messages=MESSAGES, temperature="hot"),
            openai.BadRequestError,
            "temperature",
        ),
        (dict(model=EMBED, messages=MESSAGES), openai.BadRequestError, "serves embeddings"),
        (
            dict(model=CHAT, messages=[{"role": "user", "content": "x" * 30_000}]),
            openai.APIStatusError,
            "at most 20000",
        ),
    ]
    for kwargs, error, fragment in cases:
        with pytest.raises(error) as err:
            client.chat.completions.create(**kwargs)  # type: ignore[call-overload]
        body = err.value.body
        assert isinstance(body, dict) and fragment in body["message"], (kwargs, body)
    with pytest.raises(openai.APIStatusError) as too_long:
        client.chat.completions.create(
            model=CHAT, messages=[{"role": "user", "content": "x" * 30_000}]
        )
    assert too_long.value.status_code == 413


def test_malformed_json_is_an_openai_error(server: ThreadedServer) -> None:
    r = httpx.post(
        f"{server.url}/v1/chat/completions",
        content=b'{"model": "tiny-chat", "messages": [',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


# -- embeddings --------------------------------------------------------------------------------


def test_embeddings_float_and_base64_agree(client: openai.OpenAI, server: ThreadedServer) -> None:
    texts = ["the cat sat", "a dog ran far away", "the cat sat"]
    as_float = client.embeddings.create(model=EMBED, input=texts, encoding_format="float")
    as_b64 = client.embeddings.create(model=EMBED, input=texts)  # the SDK asks for base64
    assert [d.index for d in as_float.data] == [0, 1, 2]
    for a, b in zip(as_float.data, as_b64.data, strict=True):
        assert np.allclose(a.embedding, b.embedding, atol=1e-6)
        assert math.isclose(float(np.linalg.norm(a.embedding)), 1.0, rel_tol=1e-4)
    assert as_float.data[0].embedding == as_float.data[2].embedding
    assert as_float.usage.prompt_tokens == as_b64.usage.prompt_tokens > 0
    raw = httpx.post(
        f"{server.url}/v1/embeddings",
        json={"model": EMBED, "input": "x", "encoding_format": "base64"},
    ).json()
    vector = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    assert vector.shape == (len(as_float.data[0].embedding),)


def test_embeddings_dimensions_and_cache(client: openai.OpenAI, server: ThreadedServer) -> None:
    full = client.embeddings.create(model=EMBED, input="ships at sea", encoding_format="float")
    short = client.embeddings.create(
        model=EMBED, input="ships at sea", dimensions=8, encoding_format="float"
    )
    assert len(short.data[0].embedding) == 8
    assert math.isclose(float(np.linalg.norm(short.data[0].embedding)), 1.0, rel_tol=1e-4)
    head = np.asarray(full.data[0].embedding[:8])
    assert np.allclose(short.data[0].embedding, head / np.linalg.norm(head), atol=1e-5)
    cache = httpx.get(f"{server.url}/v1/stats").json()["models"][EMBED]["embedding_cache"]
    before = cache["hits"]
    again = client.embeddings.create(model=EMBED, input="ships at sea", encoding_format="float")
    assert again.data[0].embedding == full.data[0].embedding
    assert again.usage.prompt_tokens == full.usage.prompt_tokens
    cache = httpx.get(f"{server.url}/v1/stats").json()["models"][EMBED]["embedding_cache"]
    assert cache["hits"] == before + 1


def test_embeddings_bad_input(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as err:
        client.embeddings.create(model=EMBED, input=["a"] * 65)
    assert err.value.status_code == 413 and "at most 64" in str(err.value.body)
    with pytest.raises(openai.APIStatusError) as err:
        client.embeddings.create(model=EMBED, input="x" * 20_001)
    assert err.value.status_code == 413
    with pytest.raises(openai.BadRequestError, match="empty"):
        client.embeddings.create(model=EMBED, input="")
    with pytest.raises(openai.BadRequestError, match="dimensions"):
        client.embeddings.create(model=EMBED, input="a", dimensions=100_000)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="nope", input="a")


async def test_concurrent_embeddings_are_micro_batched(
    aclient: openai.AsyncOpenAI, server: ThreadedServer
) -> None:
    results: dict[int, list[float]] = {}
    async with aclient:

        async def one(i: int) -> None:
            r = await aclient.embeddings.create(
                model=EMBED, input=f"sentence number {i}", encoding_format="float"
            )
            results[i] = r.data[0].embedding

        async with anyio.create_task_group() as tg:
            for i in range(24):
                tg.start_soon(one, i)
        single = await aclient.embeddings.create(
            model=EMBED, input="sentence number 5", encoding_format="float"
        )
    assert len(results) == 24
    assert np.allclose(results[5], single.data[0].embedding, atol=1e-5)


# -- audio -------------------------------------------------------------------------------------


@pytest.mark.parametrize("response_format", ["json", "text", "srt", "vtt", "verbose_json"])
def test_transcription_every_format(client: openai.OpenAI, response_format: str) -> None:
    result = client.audio.transcriptions.create(
        model=ASR,
        file=("tone.wav", tone_wav(2.0), "audio/wav"),
        response_format=response_format,  # type: ignore[arg-type]
    )
    if response_format == "json":
        assert isinstance(result.text, str)
    elif response_format == "verbose_json":
        assert result.duration == pytest.approx(2.0, abs=0.01)  # type: ignore[union-attr]
        assert result.segments is not None  # type: ignore[union-attr]
        for seg in result.segments:  # type: ignore[union-attr]
            assert 0 <= seg.start <= seg.end <= 2.0 + 1e-6
    elif response_format == "srt":
        assert isinstance(result, str)
        assert result == "" or ("-->" in result and "," in result.split("-->")[0])
    elif response_format == "vtt":
        assert isinstance(result, str) and result.startswith("WEBVTT")
    else:
        assert isinstance(result, str)


def test_translation_and_long_audio_is_not_truncated(client: openai.OpenAI) -> None:
    result = client.audio.translations.create(
        model=ASR,
        file=("long.wav", tone_wav(seconds=65), "audio/wav"),
        response_format="verbose_json",
    )
    assert result.duration == pytest.approx(65.0, abs=0.01)  # type: ignore[attr-defined]


def test_audio_bad_input(client: openai.OpenAI, server: ThreadedServer) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.transcriptions.create(
            model=ASR, file=("x.wav", b"RIFF\x00\x01garbage", "audio/wav")
        )
    assert err.value.body["code"] is not None  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        client.audio.transcriptions.create(model=ASR, file=("empty.wav", b"", "audio/wav"))
    with pytest.raises(openai.APIStatusError) as too_long:
        client.audio.transcriptions.create(
            model=ASR, file=("l.wav", tone_wav(seconds=121), "audio/wav")
        )
    assert too_long.value.status_code == 413
    with pytest.raises(openai.BadRequestError, match="serves chat"):
        client.audio.transcriptions.create(model=CHAT, file=("t.wav", tone_wav(0.5), "audio/wav"))
    r = httpx.post(f"{server.url}/v1/audio/transcriptions", json={"model": ASR})
    assert r.status_code == 415
    r = httpx.post(
        f"{server.url}/v1/audio/transcriptions", data={"model": ASR}, files={"other": ("a", b"x")}
    )
    assert r.status_code == 400 and "'file'" in r.json()["error"]["message"]
