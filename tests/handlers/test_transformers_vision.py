"""The vision chat handler on a tiny random SmolVLM-style (Idefics3) model built in the test."""

from __future__ import annotations

from pathlib import Path

import pytest

from localinfer.errors import InvalidRequest
from localinfer.handlers.base import ModelSource
from localinfer.handlers.generation.constraints import OutputConstraint
from localinfer.handlers.tasks import IMAGE_INPUT, GenerationRequest, GenerationResult
from localinfer.handlers.transformers_vision import TransformersVisionHandler
from localinfer.plugins import discover
from localinfer.runtime.resolve import resolve
from localinfer.testing import RecordingItem

Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def handler(tiny_vlm_dir: Path) -> TransformersVisionHandler:
    loaded = TransformersVisionHandler(ModelSource(str(tiny_vlm_dir)))
    loaded.load("cpu")
    return loaded


def ask(content: object, max_new_tokens: int = 6, **kwargs: object) -> GenerationRequest:
    return GenerationRequest(
        messages=({"role": "user", "content": content},),
        max_new_tokens=max_new_tokens,
        temperature=0.0,
        **kwargs,  # type: ignore[arg-type]
    )


def picture(color: str = "red", size: tuple[int, int] = (50, 40)) -> object:
    return Image.new("RGB", size, color)


def test_an_image_and_text_stream_a_reply(handler: TransformersVisionHandler) -> None:
    item = RecordingItem(
        ask([{"type": "image", "image": picture()}, {"type": "text", "text": "describe"}])
    )
    handler.process([item])
    assert item.error is None, item.error
    result = item.result
    assert isinstance(result, GenerationResult)
    assert result.completion_tokens >= 1
    assert "".join(item.chunks) == result.text  # streamed piece by piece, then whole
    text_only = RecordingItem(ask("describe"))
    handler.process([text_only])
    # the image's tokens count: 4 <image> tokens and the markers around them
    assert result.prompt_tokens >= text_only.result.prompt_tokens + 4


def test_greedy_replies_are_reproducible_and_stop_strings_apply(
    handler: TransformersVisionHandler,
) -> None:
    content = [{"type": "image", "image": picture("blue")}, {"type": "text", "text": "what?"}]
    first, second = RecordingItem(ask(content, 12)), RecordingItem(ask(content, 12))
    handler.process([first, second])
    assert first.result.text == second.result.text
    text = first.result.text
    if len(text) > 2:
        stop = text[1:3]
        cut = RecordingItem(ask(content, 12, stop=(stop,)))
        handler.process([cut])
        assert stop not in cut.result.text and cut.result.finish_reason == "stop"


def test_a_cancelled_stream_stops(handler: TransformersVisionHandler) -> None:
    item = RecordingItem(ask("tell me a story", 200), cancel_after=2)
    handler.process([item])
    assert item.result.completion_tokens < 200


def test_a_prompt_is_refused_and_the_context_is_checked(handler: TransformersVisionHandler) -> None:
    prompt = RecordingItem(GenerationRequest(prompt="hello"))
    long = RecordingItem(ask("hi", 1000))
    handler.process([prompt, long])
    assert isinstance(prompt.error, InvalidRequest) and "send messages" in str(prompt.error)
    assert isinstance(long.error, InvalidRequest) and "context" in str(long.error)


def test_a_local_vision_model_gets_the_vision_handler(tiny_vlm_dir: Path) -> None:
    plugins = discover()
    resolved = resolve(str(tiny_vlm_dir), plugins)
    assert resolved.handler.name == "transformers-vision"
    assert resolved.handler.capabilities[IMAGE_INPUT] == "true"
    for alias in ("smolvlm-256m-instruct", "qwen2.5-vl-3b-instruct"):
        entry = plugins.catalog.get(alias)
        assert entry is not None and entry.handler == "transformers-vision"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"constraint": OutputConstraint(json_schema='{"type":"object"}')}, "response_format"),
        ({"logprobs": 2}, "logprobs"),
        ({"tools": ({"type": "function", "function": {"name": "f"}},)}, "tools"),
    ],
)
def test_what_it_cannot_enforce_is_refused_by_name(
    handler: TransformersVisionHandler, fields: dict[str, object], param: str
) -> None:
    item = RecordingItem(ask([{"type": "text", "text": "hi"}], **fields))
    handler.process([item])
    assert isinstance(item.error, InvalidRequest) and item.error.param == param
