"""SSE framing: a text delta framed from the template is the model's own chunk."""

from __future__ import annotations

import json

import pytest

from localinfer.server import protocol as p
from localinfer.server.sse import TextFrames, sse_model

TEXTS = [
    "",
    " the",
    'quotes " and \\ backslashes',
    "new\nline\ttab\r\x00\x1f\x7f",
    "é 漢字 🙂 \u2028\u2029",
    "</script><!--",
    "localinfer-text-",  # the marker's prefix, in the text itself
]


def chat_chunk(index: int, text: str) -> p.ChatCompletionChunk:
    return p.ChatCompletionChunk(
        id="chatcmpl-1",
        created=1,
        model='a "quoted" model',
        choices=[p.ChunkChoice(index=index, delta=p.Delta(content=text))],
    )


def completion_chunk(text: str) -> p.Completion:
    return p.Completion(
        id="cmpl-1", created=1, model="m", choices=[p.CompletionChoice(index=0, text=text)]
    )


@pytest.mark.parametrize("text", TEXTS)
def test_a_framed_text_is_the_models_own_event(text: str) -> None:
    for frames, model in (
        (TextFrames(lambda t: chat_chunk(2, t)), chat_chunk(2, text)),
        (TextFrames(completion_chunk), completion_chunk(text)),
    ):
        framed, dumped = frames.frame(text), sse_model(model)
        assert framed.startswith(b"data: ") and framed.endswith(b"\n\n")
        assert b"\n" not in framed[:-2]  # one event, one line
        assert json.loads(framed[6:]) == json.loads(dumped[6:])
        assert framed == dumped  # byte for byte, as pydantic writes it


def test_a_chunk_that_does_not_hold_its_text_once_is_refused() -> None:
    with pytest.raises(ValueError, match="exactly once"):
        TextFrames(lambda text: chat_chunk(0, "fixed"))
    with pytest.raises(ValueError, match="exactly once"):
        TextFrames(lambda text: chat_chunk(0, text).model_copy(update={"id": text}))
