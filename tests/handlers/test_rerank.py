"""Reranking's shared pieces: limits, embeddings as a reranker, the order of results."""

from __future__ import annotations

import pytest

from localinfer.errors import HandlerFailed, InvalidRequest
from localinfer.handlers.rerank import check_rerank, ranked, rerank_payload, rerank_result
from localinfer.handlers.tasks import (
    CHAT,
    EMBEDDINGS,
    RERANK,
    EmbeddingRequest,
    EmbeddingResult,
    RerankRequest,
    RerankResult,
)

LIMITS = {"max_documents": 3, "max_chars": 10}


@pytest.mark.parametrize(
    ("query", "documents", "top_n", "message"),
    [
        ("", ["a"], None, "query must not be empty"),
        ("q" * 11, ["a"], None, "max_input_chars"),
        ("q", [], None, "documents must not be empty"),
        ("q", ["a"] * 4, None, "at most 3 per request"),
        ("q", ["a", 5], None, r"documents\[1\] is a int"),
        ("q", ["a", "b" * 11], None, r"documents\[1\] is 11 characters"),
        ("q", ["a", "b"], 3, "top_n must be between 1 and the number of documents"),
        ("q", ["a", "b"], 0, "top_n"),
    ],
)
def test_bad_requests_are_refused(
    query: str, documents: list[object], top_n: int | None, message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        check_rerank(query, documents, top_n, **LIMITS)


def test_a_good_request_passes() -> None:
    check_rerank("q", ["a", ""], 2, **LIMITS)


def test_embeddings_models_get_the_query_first() -> None:
    request = RerankRequest("q", ("a", "b"))
    assert rerank_payload(RERANK, request) is request
    assert rerank_payload(EMBEDDINGS, request) == EmbeddingRequest(("q", "a", "b"))
    with pytest.raises(InvalidRequest, match="chat model cannot rerank"):
        rerank_payload(CHAT, request)


def test_cosine_scores_from_unit_vectors() -> None:
    request = RerankRequest("q", ("a", "b"))
    vectors = [[1.0, 0.0], [0.6, 0.8], [1.0, 0.0]]
    result = rerank_result(request, EmbeddingResult(vectors, prompt_tokens=7))
    assert result.scores == pytest.approx([0.6, 1.0])
    assert result.prompt_tokens == 7


def test_a_short_answer_is_the_models_fault() -> None:
    with pytest.raises(HandlerFailed, match="scored 1 of 2"):
        rerank_result(RerankRequest("q", ("a", "b")), RerankResult([0.5], 1))
    with pytest.raises(HandlerFailed, match="answered a rerank with str"):
        rerank_result(RerankRequest("q", ("a",)), "nope")


def test_ranked_is_best_first_stable_and_cut() -> None:
    assert ranked([0.1, 0.9, 0.5, 0.9], None) == [1, 3, 2, 0]
    assert ranked([0.1, 0.9, 0.5], 2) == [1, 2]
