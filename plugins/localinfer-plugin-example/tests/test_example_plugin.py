"""Tests a plugin author copies: the handler alone, then served, then discovered.

Run with ``pip install -e ".[test]" && pytest`` from the plugin's directory: the editable
install registers the entry point, so localinfer finds the plugin without publishing it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
from localinfer_plugin_example import PARROT, plugin
from localinfer_plugin_example.parrot import ParrotChatHandler
from localinfer_plugin_example.pipeline import TranscriptSummaryHandler

from localinfer.errors import InvalidArguments
from localinfer.handlers.base import ModelSource
from localinfer.handlers.tasks import GenerationRequest, GenerationResult, TranscriptionResult
from localinfer.plugins import check_api_version, discover
from localinfer.testing import RecordingItem, catalog_definition, serve

WEIGHTS = Path(__file__).parents[1] / "localinfer_plugin_example" / "weights"


@pytest.fixture
def parrot() -> ParrotChatHandler:
    handler = ParrotChatHandler(ModelSource(str(WEIGHTS / "parrot")))
    handler.load("cpu")
    return handler


def ask(text: str, **kwargs: Any) -> GenerationRequest:
    return GenerationRequest(messages=({"role": "user", "content": text},), **kwargs)


# -- the handler alone: a RecordingItem stands in for the runtime ----------------------------


def test_streams_word_by_word_then_finishes_with_the_result(parrot: ParrotChatHandler) -> None:
    item = RecordingItem(ask("hello there"))
    parrot.process([item])
    assert item.chunks == ["Squawk!", " hello", " there"]
    assert isinstance(item.result, GenerationResult)
    assert (item.result.text, item.result.finish_reason) == ("Squawk! hello there", "stop")
    assert (item.result.prompt_tokens, item.result.completion_tokens) == (2, 3)


def test_max_tokens_stop_strings_and_cancellation(parrot: ParrotChatHandler) -> None:
    short, stopped, cancelled = (
        RecordingItem(ask("a b c d", max_new_tokens=2)),
        RecordingItem(ask("a b END c", stop=("END",))),
        RecordingItem(ask("a b c d e f"), cancel_after=2),
    )
    parrot.process([short, stopped, cancelled])
    assert (short.result.text, short.result.finish_reason) == ("Squawk! a", "length")
    assert stopped.result.text == "Squawk! a b "
    assert "".join(stopped.chunks) == "Squawk! a b "
    assert cancelled.chunks == ["Squawk!", " a"]  # stopped as soon as the caller left


def test_a_bad_input_fails_only_its_item(parrot: ParrotChatHandler) -> None:
    bad, good = RecordingItem("not a request"), RecordingItem(ask("ok"))
    parrot.process([bad, good])
    assert isinstance(bad.error, InvalidArguments)
    assert good.result.text == "Squawk! ok"


def test_catalog_options_override_the_config() -> None:
    handler = ParrotChatHandler(ModelSource(str(WEIGHTS / "parrot"), options={"greeting": ""}))
    handler.load("cpu")
    assert "".join(handler.reply(ask("quiet"))) == "quiet"


class FakeContext:
    """What the runtime hands a handler to call other models, recorded."""

    model = "example-transcript-summary"

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def call(self, model: str, payload: Any, *, timeout_s: float | None = None) -> Any:
        self.calls.append((model, payload))
        if model == "whisper-tiny":
            return TranscriptionResult("the meeting is moved to friday", "en", 1.0)
        return GenerationResult("moved to friday", "stop", 5, 3, 0.0, 0.0)

    def stream(self, model: str, payload: Any, *, timeout_s: float | None = None) -> Iterator[Any]:
        self.calls.append((model, payload))
        yield from ["moved", " to friday"]


def test_pipeline_transcribes_then_summarises() -> None:
    handler = TranscriptSummaryHandler(ModelSource(str(WEIGHTS / "transcript-summary")))
    handler.load("cpu")
    handler.context = context = FakeContext()
    item = RecordingItem({"samples": [0.0, 0.25, 0.0], "sample_rate": 8000})
    handler.process([item])
    assert item.result == {
        "transcript": "the meeting is moved to friday",
        "summary": "moved to friday",
    }
    (first, audio), (second, request) = context.calls
    assert (first, audio.sample_rate) == ("whisper-tiny", 8000)
    np.testing.assert_allclose(audio.audio, [0.0, 0.25, 0.0])
    assert second == "example-parrot"
    assert request.messages[-1]["content"] == "the meeting is moved to friday"
    streamed = RecordingItem({"samples": [0.0], "stream": True})
    handler.process([streamed])
    assert streamed.chunks == ["moved", " to friday"]


# -- installed: discovered through the entry point, and served -------------------------------


def test_discovered_through_its_entry_point() -> None:
    found = discover()
    assert "example" in [p.name for p in found.plugins], found.errors
    assert found.catalog[PARROT].handler == PARROT
    check_api_version(plugin.name, plugin.api_version)


@pytest.mark.anyio
async def test_served_through_the_openai_api() -> None:
    async with serve([catalog_definition(PARROT)]) as client:
        base = str(client.base_url).rstrip("/")
        api = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
        stream = await api.chat.completions.create(
            model=PARROT, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "Squawk! hi"
        await api.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
