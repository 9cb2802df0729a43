"""The cross-encoder handler on a tiny random BertForSequenceClassification."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from localinfer.errors import ConfigurationError
from localinfer.handlers.base import ModelSource
from localinfer.handlers.cross_encoder import CrossEncoderHandler
from localinfer.handlers.tasks import RERANK, RerankRequest, RerankResult
from localinfer.plugins import discover
from localinfer.runtime.resolve import detect_task, resolve
from tests.fixtures.tiny_rerankers import build_tiny_cross_encoder


@pytest.fixture(scope="module")
def handler(tiny_cross_encoder_dir: Path) -> CrossEncoderHandler:
    loaded = CrossEncoderHandler(
        ModelSource(str(tiny_cross_encoder_dir), options={"batch_size": 2})
    )
    loaded.load("cpu")
    return loaded


def test_scores_are_probabilities_one_per_document(handler: CrossEncoderHandler) -> None:
    request = RerankRequest("a cat", ("the cat sat on the mat", "weather", "the dog"))
    (result,) = handler.run_batch([request])
    assert isinstance(result, RerankResult)
    assert len(result.scores) == 3
    assert all(0.0 <= s <= 1.0 for s in result.scores)
    assert result.prompt_tokens > 0


def test_a_pair_scores_the_same_alone_and_in_a_micro_batch(handler: CrossEncoderHandler) -> None:
    """Pooling requests, sorting by length and padding must not change any score."""
    alone = [handler.run_batch([RerankRequest("a cat", (d,))])[0] for d in ("dog", "the quick fox")]
    together = handler.run_batch(
        [
            RerankRequest("a cat", ("dog",)),
            RerankRequest("speech and text", ("one", "two three four five six", "seven")),
            RerankRequest("a cat", ("the quick fox",)),
        ]
    )
    assert np.allclose(together[0].scores, alone[0].scores, atol=1e-5)
    assert np.allclose(together[2].scores, alone[1].scores, atol=1e-5)
    assert together[0].prompt_tokens == alone[0].prompt_tokens


def test_two_labels_score_the_relevant_class(tmp_path: Path) -> None:
    path = build_tiny_cross_encoder(tmp_path / "two", labels=2)
    handler = CrossEncoderHandler(ModelSource(str(path)))
    handler.load("cpu")
    (result,) = handler.run_batch([RerankRequest("q", ("a", "b"))])
    assert all(0.0 <= s <= 1.0 for s in result.scores)


def test_a_classifier_of_many_labels_is_not_a_reranker(tmp_path: Path) -> None:
    path = build_tiny_cross_encoder(tmp_path / "three", labels=3)
    with pytest.raises(ConfigurationError, match="3 labels"):
        CrossEncoderHandler(ModelSource(str(path))).load("cpu")


def test_a_sequence_classifier_directory_serves_rerank(tiny_cross_encoder_dir: Path) -> None:
    assert detect_task(tiny_cross_encoder_dir) == RERANK
    resolved = resolve(str(tiny_cross_encoder_dir), discover())
    assert resolved.handler.name == "transformers-rerank"


def test_the_catalog_names_the_rerankers() -> None:
    catalog = discover().catalog
    for alias in ("bge-reranker-v2-m3", "ms-marco-minilm-l6"):
        entry = catalog.get(alias)
        assert entry is not None and entry.task == RERANK
