"""Cross-encoder rerankers through transformers (bge-reranker, ms-marco MiniLM, ...).

The model is ``AutoModelForSequenceClassification`` reading ``(query, document)`` pairs.
One logit is squashed by a sigmoid (bge-reranker, ms-marco); two are a softmax whose
second class is "relevant". Scores are in [0, 1], comparable across requests.

Throughput comes from cross-request micro-batching, as for embeddings: the scheduler
hands over several requests at once, their pairs are pooled, sorted by token length
and run ``batch_size`` at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from localinfer.errors import ConfigurationError
from localinfer.handlers.base import Handler, ModelSource
from localinfer.handlers.hub_code import NO_HUB_CODE
from localinfer.handlers.sentence_embeddings import local_model_dir
from localinfer.handlers.tasks import RERANK, RerankRequest, RerankResult

logger = logging.getLogger(__name__)

#: a tokenizer's model_max_length when it does not know (transformers' VERY_LARGE_INTEGER)
_UNSET_MAX_LENGTH = 1_000_000
_DEFAULT_MAX_LENGTH = 512


class CrossEncoderHandler(Handler):
    """Relevance of each document to the query, one forward pass per batch of pairs.

    Options (``ModelSource.options``): ``batch_size`` (pairs per forward pass, 32),
    ``max_length`` (tokens per pair, capped by the model; 512 when the model does not say),
    ``dtype`` (float32, float16, bfloat16; float16 on CUDA and float32 elsewhere).
    """

    task = RERANK
    handler_name = "transformers-rerank"
    #: micro-batching, as for embeddings: requests arriving within 20 ms share passes
    default_max_batch_size: ClassVar[int] = 64
    default_batch_window_ms: ClassVar[float] = 20.0

    def __init__(self, source: ModelSource) -> None:
        self.source = source
        self.batch_size = int(source.options.get("batch_size", 32))
        if self.batch_size < 1:
            raise ConfigurationError(f"batch_size must be at least 1, not {self.batch_size}")
        self.max_length = 0
        self._model: Any = None
        self._tokenizer: Any = None
        self._device = "cpu"

    def load(self, device: str) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from localinfer.handlers.sentence_embeddings import _torch_dtype

        directory = local_model_dir(self.source)
        common: dict[str, Any] = {
            "trust_remote_code": self.source.trust_remote_code,
            "local_files_only": True,
        }
        self._tokenizer = AutoTokenizer.from_pretrained(directory, **common)
        if self._tokenizer.pad_token is None:  # decoder-based rerankers
            self._tokenizer.pad_token = self._tokenizer.eos_token
        dtype = _torch_dtype(self.source.options.get("dtype"), device)
        model = AutoModelForSequenceClassification.from_pretrained(
            directory, dtype=dtype, **common, **NO_HUB_CODE
        )
        labels = int(model.config.num_labels)
        if labels not in (1, 2):
            raise ConfigurationError(
                f"{self.source.location} classifies into {labels} labels; a reranker has 1 "
                "(a relevance logit) or 2 (not relevant, relevant)"
            )
        if model.config.pad_token_id is None:
            model.config.pad_token_id = self._tokenizer.pad_token_id
        self._model = model.to(device).eval()
        self._device = device
        self.max_length = self._max_length()
        logger.info(
            "loaded reranker %s on %s: %d tokens max, %s",
            self.source.location,
            device,
            self.max_length,
            dtype,
        )

    def close(self) -> None:
        self._model = None
        self._tokenizer = None

    def run_batch(self, inputs: list[RerankRequest]) -> list[RerankResult]:
        pairs = [(r.query, d) for r in inputs for d in r.documents]
        scores, lengths = self.score(pairs)
        results = []
        start = 0
        for request in inputs:
            stop = start + len(request.documents)
            tokens = int(lengths[start:stop].sum())
            results.append(RerankResult(scores[start:stop].tolist(), prompt_tokens=tokens))
            start = stop
        return results

    def score(
        self, pairs: Sequence[tuple[str, str]]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """A relevance score in [0, 1] per pair, and each pair's token count."""
        import torch

        if self._model is None:
            raise RuntimeError("the model is not loaded")
        scores = np.empty(len(pairs), dtype=np.float32)
        if not pairs:
            return scores, np.zeros(0, dtype=np.int64)
        encoded = self._tokenizer(
            [q for q, _ in pairs],
            [d for _, d in pairs],
            truncation=True,
            max_length=self.max_length,
            padding=False,
            return_attention_mask=False,
        )
        ids: list[list[int]] = encoded["input_ids"]
        # BERT-style pairs tell query from document by segment ids
        types: list[list[int]] | None = encoded.get("token_type_ids")
        lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
        # longest first: a batch pads to its own longest pair, and memory peaks at once
        order = np.argsort(-lengths, kind="stable")
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                index = order[start : start + self.batch_size]
                features: dict[str, list[list[int]]] = {"input_ids": [ids[i] for i in index]}
                if types is not None:
                    features["token_type_ids"] = [types[i] for i in index]
                batch = self._tokenizer.pad(features, padding=True, return_tensors="pt")
                logits = self._model(**{k: v.to(self._device) for k, v in batch.items()}).logits
                scores[index] = _relevance(logits.float()).cpu().numpy()
        return scores, lengths

    def _max_length(self) -> int:
        limits = [int(self.source.options.get("max_length", 0)) or _UNSET_MAX_LENGTH]
        tokenizer_limit = int(getattr(self._tokenizer, "model_max_length", 0) or 0)
        if 0 < tokenizer_limit < _UNSET_MAX_LENGTH:
            limits.append(tokenizer_limit)
        positions = getattr(self._model.config, "max_position_embeddings", None)
        if positions:
            offset = (getattr(self._model.config, "pad_token_id", None) or 0) + 1
            roberta_like = self._model.config.model_type in ("roberta", "xlm-roberta", "camembert")
            limits.append(int(positions) - (offset if roberta_like else 0))
        limit = min(limits)
        return _DEFAULT_MAX_LENGTH if limit >= _UNSET_MAX_LENGTH else limit


def _relevance(logits: Any) -> Any:
    """One logit: sigmoid. Two: the probability of the second ("relevant") class."""
    if logits.shape[-1] == 1:
        return logits[:, 0].sigmoid()
    return logits.softmax(-1)[:, 1]
