from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from localinfer.errors import ConfigurationError, InvalidRequest
from localinfer.handlers.base import ModelSource
from localinfer.handlers.sentence_embeddings import SentenceEmbeddingHandler
from localinfer.handlers.tasks import EmbeddingRequest, EmbeddingResult

pytest.importorskip("torch")
pytest.importorskip("transformers")

TEXTS = (
    "the quick brown fox",
    "a cat sat on the mat and looked at the dog for a very long time",
    "hello",
    "",
)


def loaded(path: Path, **options: object) -> SentenceEmbeddingHandler:
    handler = SentenceEmbeddingHandler(ModelSource(str(path), options=options))
    handler.load("cpu")
    return handler


@pytest.fixture(scope="module")
def tiny(tiny_bert_dir: Path) -> SentenceEmbeddingHandler:
    return loaded(tiny_bert_dir, batch_size=2)


def reference(handler: SentenceEmbeddingHandler, text: str, pooling: str) -> np.ndarray:
    """The pooled vector computed by hand from the model's token states."""
    import torch

    batch = handler._tokenizer([text], return_tensors="pt")
    with torch.inference_mode():
        hidden = handler._model(**batch).last_hidden_state[0]
    vector = hidden[0] if pooling == "cls" else hidden.mean(0)
    return (vector / vector.norm()).numpy()


def test_shapes_and_unit_norm(tiny: SentenceEmbeddingHandler) -> None:
    [result] = tiny.run_batch([EmbeddingRequest(texts=TEXTS)])
    assert isinstance(result, EmbeddingResult)
    assert len(result.vectors) == len(TEXTS)
    assert all(isinstance(x, float) for x in result.vectors[0])
    vectors = np.array(result.vectors)
    assert vectors.shape == (len(TEXTS), 32) == (len(TEXTS), tiny.dimensions)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


def test_sentence_transformers_layout_picks_the_pooling(
    tmp_path: Path, tiny_bert_dir: Path
) -> None:
    mean = loaded(tiny_bert_dir)
    assert mean.pooling == "mean"
    cls_dir = tmp_path / "cls"
    shutil.copytree(tiny_bert_dir, cls_dir)
    config = (cls_dir / "1_Pooling" / "config.json").read_text()
    (cls_dir / "1_Pooling" / "config.json").write_text(
        config.replace('"pooling_mode_cls_token": false', '"pooling_mode_cls_token": true').replace(
            '"pooling_mode_mean_tokens": true', '"pooling_mode_mean_tokens": false'
        )
    )
    cls = loaded(cls_dir)
    assert cls.pooling == "cls"
    text = TEXTS[1]
    [m] = mean.run_batch([EmbeddingRequest(texts=(text,))])
    [c] = cls.run_batch([EmbeddingRequest(texts=(text,))])
    np.testing.assert_allclose(m.vectors[0], reference(mean, text, "mean"), atol=1e-5)
    np.testing.assert_allclose(c.vectors[0], reference(cls, text, "cls"), atol=1e-5)
    assert not np.allclose(m.vectors[0], c.vectors[0], atol=1e-3)


def test_pooling_option_without_the_layout(tmp_path: Path, tiny_bert_dir: Path) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(tiny_bert_dir, plain)
    shutil.rmtree(plain / "1_Pooling")
    (plain / "modules.json").unlink()
    assert loaded(plain).pooling == "mean"
    cls = loaded(plain, pooling="cls")
    [result] = cls.run_batch([EmbeddingRequest(texts=(TEXTS[0],))])
    np.testing.assert_allclose(result.vectors[0], reference(cls, TEXTS[0], "cls"), atol=1e-5)
    with pytest.raises(ConfigurationError, match="pooling"):
        loaded(plain, pooling="median")


def test_dimensions_truncate_and_renormalise(tiny: SentenceEmbeddingHandler) -> None:
    full, short = tiny.run_batch(
        [EmbeddingRequest(texts=TEXTS[:2]), EmbeddingRequest(texts=TEXTS[:2], dimensions=8)]
    )
    vectors = np.array(short.vectors)
    assert vectors.shape == (2, 8)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    head = np.array(full.vectors)[:, :8]
    np.testing.assert_allclose(
        vectors, head / np.linalg.norm(head, axis=1, keepdims=True), atol=1e-6
    )
    [same] = tiny.run_batch([EmbeddingRequest(texts=TEXTS[:2], dimensions=32)])
    np.testing.assert_allclose(same.vectors, full.vectors, atol=1e-7)


@pytest.mark.parametrize("dimensions", [0, 33])
def test_impossible_dimensions_are_rejected(
    tiny: SentenceEmbeddingHandler, dimensions: int
) -> None:
    with pytest.raises(InvalidRequest, match="dimensions") as info:
        tiny.run_batch([EmbeddingRequest(texts=("x",), dimensions=dimensions)])
    assert info.value.param == "dimensions"


def test_token_counts_are_real_tokens(tiny: SentenceEmbeddingHandler) -> None:
    requests = [EmbeddingRequest(texts=TEXTS[:2]), EmbeddingRequest(texts=(TEXTS[2],))]
    results = tiny.run_batch(requests)
    expected = [
        sum(len(tiny._tokenizer(t)["input_ids"]) for t in request.texts) for request in requests
    ]
    assert [r.prompt_tokens for r in results] == expected
    assert results[0].text_tokens == tuple(len(tiny._tokenizer(t)["input_ids"]) for t in TEXTS[:2])
    assert results[1].prompt_tokens == 3  # [CLS] hello [SEP]


def test_truncation_at_the_model_length(tiny: SentenceEmbeddingHandler) -> None:
    assert tiny.max_length == 64
    [result] = tiny.run_batch([EmbeddingRequest(texts=("fox " * 500,))])
    assert result.prompt_tokens == 64


def test_batched_results_equal_single_results(tiny: SentenceEmbeddingHandler) -> None:
    requests = [
        EmbeddingRequest(texts=TEXTS),
        EmbeddingRequest(texts=(TEXTS[2], "the dog")),
        EmbeddingRequest(texts=(TEXTS[1],), dimensions=16),
    ]
    together = tiny.run_batch(requests)
    for request, batched in zip(requests, together, strict=True):
        [alone] = tiny.run_batch([request])
        assert batched.prompt_tokens == alone.prompt_tokens
        np.testing.assert_allclose(batched.vectors, alone.vectors, atol=1e-5)
    # and the same call twice gives the same bits
    assert tiny.run_batch(requests) == together


def test_process_fails_only_the_bad_request(tiny: SentenceEmbeddingHandler) -> None:
    class Item:
        def __init__(self, payload: EmbeddingRequest) -> None:
            self.payload, self.request_id, self.cancelled, self.done = payload, "r", False, False
            self.result: object = None
            self.error: BaseException | None = None

        def emit(self, chunk: object) -> None:
            raise AssertionError("embeddings do not stream")

        def finish(self, result: object = None) -> None:
            self.result, self.done = result, True

        def fail(self, error: BaseException) -> None:
            self.error, self.done = error, True

    good, bad = Item(EmbeddingRequest(texts=("a",))), Item(EmbeddingRequest(("b",), 999))
    tiny.process([good, bad])
    assert isinstance(good.result, EmbeddingResult)
    assert isinstance(bad.error, InvalidRequest)


def test_empty_request(tiny: SentenceEmbeddingHandler) -> None:
    assert tiny.run_batch([EmbeddingRequest(texts=())]) == [EmbeddingResult([], 0)]


def test_missing_model_is_a_configuration_error() -> None:
    handler = SentenceEmbeddingHandler(ModelSource("nobody/no-such-model-here"))
    with pytest.raises(ConfigurationError, match="local Hugging Face cache"):
        handler.load("cpu")


def test_minilm_ranks_a_paraphrase_above_an_unrelated_sentence(minilm_dir: Path) -> None:
    handler = loaded(minilm_dir)
    assert (handler.pooling, handler.dimensions, handler.max_length) == ("mean", 384, 256)
    query = "A man is eating food."
    candidates = ("A man is eating a piece of bread.", "The girl is carrying a baby.")
    [q], [paraphrase, unrelated] = (
        np.array(r.vectors)
        for r in handler.run_batch(
            [EmbeddingRequest(texts=(query,)), EmbeddingRequest(texts=candidates)]
        )
    )
    assert q @ paraphrase > 0.6
    assert q @ unrelated < 0.2
    # the published sentence-transformers similarity for this pair
    assert q @ paraphrase == pytest.approx(0.7553, abs=1e-3)
