"""Every task on a real model, through the server and the official ``openai`` SDK.

The models are the small ones shipped on PyPI (``scripts/install.sh`` installs them), served
by catalog alias exactly as ``localinfer serve`` with no arguments does: SmolLM2-135M chat
from a Q4_1 GGUF, all-MiniLM-L6-v2 embeddings, Whisper tiny.en through the faster-whisper
plugin. One server for the module, so each model loads once; the first run on a machine
also converts the GGUF (~20 s on two cores), later runs read the cached conversion.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from localinfer.handlers import gguf_cache
from localinfer.handlers.base import ModelSource
from localinfer.handlers.transformers_chat import TransformersChatHandler
from localinfer.hub.packaged import packaged_path
from localinfer.plugins import discover
from localinfer.runtime.resolve import model_definition, resolve
from tests.support import ThreadedServer

pytestmark = pytest.mark.real_model

CHAT, EMBED, ASR = "smollm2-135m-instruct", "all-minilm", "whisper-tiny.en"
QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the capital of France? Answer in one word."}
]


def _installed(alias: str) -> bool:
    entry = discover().catalog.get(alias)
    return entry is not None and entry.packaged is not None and bool(packaged_path(entry.packaged))


SERVED = [alias for alias in (CHAT, EMBED, ASR) if _installed(alias)]


def needs(alias: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        alias not in SERVED,
        reason=f"{alias} is not installed: run `bash scripts/install.sh`",
    )


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadedServer]:
    if not SERVED:
        pytest.skip("no packaged model is installed: run `bash scripts/install.sh`")
    definitions = [model_definition(resolve(alias, discover())) for alias in SERVED]
    with ThreadedServer(definitions) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: ThreadedServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as c:
        yield c


# -- chat: SmolLM2-135M-Instruct from its GGUF ---------------------------------------------------


@needs(CHAT)
def test_chat_answers_a_factual_question(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=CHAT,
        messages=QUESTION,
        temperature=0,
        max_tokens=24,
    )
    answer = reply.choices[0].message.content or ""
    assert "Paris" in answer
    assert reply.choices[0].finish_reason == "stop"  # the chat template's <|im_end|> ends it
    assert reply.usage is not None and reply.usage.completion_tokens < 24


@needs(CHAT)
def test_chat_streams_the_same_answer_token_by_token(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=CHAT,
        messages=QUESTION,
        temperature=0,
        max_tokens=24,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    deltas = [c.choices[0].delta.content for c in chunks if c.choices]
    pieces = [piece for piece in deltas if piece]
    assert len(pieces) > 3  # token by token, not one blob
    whole = client.chat.completions.create(
        model=CHAT,
        messages=QUESTION,
        temperature=0,
        max_tokens=24,
    )
    assert "".join(pieces) == whole.choices[0].message.content
    assert "Paris" in "".join(pieces)
    assert chunks[-1].usage == whole.usage


@needs(CHAT)
def test_the_gguf_is_converted_once_and_then_read_from_the_cache(
    monkeypatch: pytest.MonkeyPatch, client: openai.OpenAI
) -> None:
    """Loaded through transformers, SmolLM2's GGUF is converted once (or found converted):
    a new load must not convert. (The server may serve it with llama.cpp, which converts
    nothing: the first load here makes sure the conversion happened, in a fresh venv too.)"""
    import torch

    resolved = resolve(CHAT, discover())
    source: ModelSource = resolved.source
    assert source.filename is not None and source.filename.endswith(".gguf")
    gguf = Path(source.location) / source.filename
    first = TransformersChatHandler(source)
    first.load("cpu")
    first.close()
    cached = gguf_cache.converted_directory(gguf, torch.float32)
    assert (cached / gguf_cache.MANIFEST).is_file()
    assert (cached / "model.safetensors").is_file() and (cached / "tokenizer.json").is_file()

    def no_conversion(*args: object) -> None:
        raise AssertionError("converted again instead of reading the cache")

    monkeypatch.setattr(gguf_cache, "_convert", no_conversion)
    handler = TransformersChatHandler(source)
    handler.load("cpu")
    try:
        assert handler.tokenizer is not None and handler.tokenizer.chat_template
        assert handler.context_length == 8192
    finally:
        handler.close()


# -- embeddings: all-MiniLM-L6-v2 --------------------------------------------------------------


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


@needs(EMBED)
def test_minilm_ranks_a_paraphrase_above_an_unrelated_sentence(client: openai.OpenAI) -> None:
    texts = [
        "A man is playing a guitar.",
        "Someone is strumming a guitar.",
        "The central bank raised interest rates again.",
    ]
    response = client.embeddings.create(model=EMBED, input=texts)
    query, paraphrase, unrelated = (item.embedding for item in response.data)
    assert len(query) == 384
    assert _cosine(query, paraphrase) > 0.5 > _cosine(query, unrelated)
    assert _cosine(query, paraphrase) > _cosine(query, unrelated) + 0.3


# -- speech: Whisper tiny.en through faster-whisper --------------------------------------------

SPOKEN = ("quick", "fox", "over", "lazy", "dog")


def _transcribe(client: openai.OpenAI, wav: Path, **kwargs: Any) -> Any:
    return client.audio.transcriptions.create(
        model=ASR, file=(wav.name, wav.read_bytes(), "audio/wav"), **kwargs
    )


@needs(ASR)
def test_whisper_transcribes_synthesised_speech(client: openai.OpenAI, speech_wav: Path) -> None:
    result = _transcribe(client, speech_wav)
    text = result.text.lower()
    assert all(word in text for word in SPOKEN), text


@needs(ASR)
def test_whisper_verbose_json_has_timed_segments_and_words(
    client: openai.OpenAI, speech_wav: Path
) -> None:
    result = _transcribe(
        client,
        speech_wav,
        response_format="verbose_json",
        timestamp_granularities=["segment", "word"],
    )
    assert result.language == "english"
    duration = result.duration
    assert 2.0 < duration < 5.0
    segments = result.segments
    assert segments and all(0 <= s.start <= s.end <= duration for s in segments)
    assert all(s.avg_logprob < 0 and s.tokens for s in segments)
    words = result.words
    assert {"quick", "fox", "lazy", "dog"} <= {w.word.lower().strip(".,") for w in words}
    starts = [w.start for w in words]
    assert starts == sorted(starts) and all(w.start <= w.end <= duration for w in words)


@needs(ASR)
@pytest.mark.parametrize("response_format", ["text", "srt", "vtt"])
def test_whisper_subtitle_formats(
    client: openai.OpenAI, speech_wav: Path, response_format: str
) -> None:
    body = _transcribe(client, speech_wav, response_format=response_format)
    assert isinstance(body, str) and "fox" in body.lower()
    if response_format == "srt":
        assert body.startswith("1\n00:00:00,000 --> ")
    elif response_format == "vtt":
        assert body.startswith("WEBVTT\n\n00:00:00.000 --> ")


@needs(ASR)
def test_whisper_english_only_model_refuses_to_translate(
    client: openai.OpenAI, speech_wav: Path
) -> None:
    with pytest.raises(openai.BadRequestError, match="English-only"):
        client.audio.translations.create(
            model=ASR, file=(speech_wav.name, speech_wav.read_bytes(), "audio/wav")
        )
