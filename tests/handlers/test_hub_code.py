"""Every handler's model load asks transformers for no Hub code (``use_kernels=False``).

transformers 5.2x turns hub kernels on by default; a load then downloads code, which an
offline server must never do. The spy records what each handler passes to the model's
``from_pretrained``, so removing the argument from any loader fails here, on CPU too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import PreTrainedModel

from localinfer.handlers.base import ModelSource
from localinfer.handlers.cross_encoder import CrossEncoderHandler
from localinfer.handlers.sentence_embeddings import SentenceEmbeddingHandler
from localinfer.handlers.transformers_chat import TransformersChatHandler
from localinfer.handlers.transformers_vision import TransformersVisionHandler
from localinfer.handlers.transformers_whisper import WhisperHandler


@pytest.fixture
def model_loads(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    original = PreTrainedModel.from_pretrained.__func__  # type: ignore[attr-defined]

    def spy(cls: type, *args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(spy))
    return calls


@pytest.mark.parametrize(
    ("handler_class", "fixture"),
    [
        (TransformersChatHandler, "tiny_llama_dir"),
        (SentenceEmbeddingHandler, "tiny_bert_dir"),
        (CrossEncoderHandler, "tiny_cross_encoder_dir"),
        (TransformersVisionHandler, "tiny_vlm_dir"),
        (WhisperHandler, "tiny_whisper_dir"),
    ],
)
def test_model_loads_ask_for_no_hub_kernels(
    handler_class: Any,
    fixture: str,
    request: pytest.FixtureRequest,
    model_loads: list[dict[str, Any]],
) -> None:
    location: Path = request.getfixturevalue(fixture)
    handler = handler_class(ModelSource(str(location)))
    handler.load("cpu")
    try:
        assert model_loads, "the handler loaded no transformers model"
        assert all(call.get("use_kernels") is False for call in model_loads), model_loads
    finally:
        handler.close()
