"""Reranking shared by the route and ``Engine.rerank``: limits, embeddings as a reranker, order.

A ``rerank`` model (a cross-encoder) is sent the :class:`RerankRequest` itself. Any
``embeddings`` model reranks too: it is sent the query and the documents as one
:class:`EmbeddingRequest` (so it is micro-batched like any embeddings call), and a
document's score is the cosine of its vector with the query's. That is what lets the
packaged ``all-minilm`` rerank offline with nothing else installed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from localinfer.errors import HandlerFailed, InvalidRequest
from localinfer.handlers.tasks import (
    EMBEDDINGS,
    RERANK,
    EmbeddingRequest,
    EmbeddingResult,
    RerankRequest,
    RerankResult,
)

#: the tasks whose models can answer a rerank request
RERANK_TASKS = (RERANK, EMBEDDINGS)


def check_rerank(
    query: str,
    documents: Sequence[object],
    top_n: int | None,
    *,
    max_documents: int,
    max_chars: int,
) -> None:
    """Refuse what no model should be asked: the same 400s over HTTP and in process."""
    if not query:
        raise InvalidRequest("query must not be empty", param="query")
    if len(query) > max_chars:
        raise InvalidRequest(
            f"query is {len(query)} characters; at most {max_chars} are accepted (max_input_chars)",
            param="query",
        )
    if not documents:
        raise InvalidRequest("documents must not be empty", param="documents")
    if len(documents) > max_documents:
        raise InvalidRequest(
            f"{len(documents)} documents; at most {max_documents} per request "
            "(the max_rerank_documents setting)",
            param="documents",
        )
    for index, document in enumerate(documents):
        if not isinstance(document, str):
            raise InvalidRequest(
                f"documents[{index}] is a {type(document).__name__}, not a string",
                param="documents",
            )
        if len(document) > max_chars:
            raise InvalidRequest(
                f"documents[{index}] is {len(document)} characters; at most {max_chars} "
                "are accepted (max_input_chars)",
                param="documents",
            )
    if top_n is not None and not 1 <= top_n <= len(documents):
        raise InvalidRequest(
            f"top_n must be between 1 and the number of documents ({len(documents)}), not {top_n}",
            param="top_n",
        )


def rerank_payload(task: str, request: RerankRequest) -> RerankRequest | EmbeddingRequest:
    """What to submit to a model of ``task`` for ``request``."""
    if task == RERANK:
        return request
    if task == EMBEDDINGS:
        return EmbeddingRequest(texts=(request.query, *request.documents))
    raise InvalidRequest(f"a {task} model cannot rerank", param="model")


def rerank_result(request: RerankRequest, value: object) -> RerankResult:
    """The scores a model answered, whichever of :data:`RERANK_TASKS` it serves."""
    if isinstance(value, RerankResult):
        scores = value
    elif isinstance(value, EmbeddingResult):
        vectors = np.asarray(value.vectors, dtype=np.float32)
        # unit vectors: the dot product is the cosine
        scores = RerankResult((vectors[1:] @ vectors[0]).tolist(), value.prompt_tokens)
    else:
        raise HandlerFailed(f"the model answered a rerank with {type(value).__name__}")
    if len(scores.scores) != len(request.documents):
        raise HandlerFailed(
            f"the model scored {len(scores.scores)} of {len(request.documents)} documents"
        )
    return scores


def ranked(scores: Sequence[float], top_n: int | None) -> list[int]:
    """Document indices, best first (ties keep the documents' order), cut to ``top_n``."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return order if top_n is None else order[:top_n]
