"""``POST /v1/rerank`` on a live server: real ranking with MiniLM, a tiny cross-encoder, 400s."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import ThreadedServer, define_local

MINILM, CROSS = "minilm", "tiny-cross"

QUERY = "How do I bake bread at home?"
DOCUMENTS = [
    "The stock market closed higher on Friday after strong earnings reports.",
    "Knead the dough, let it rise for an hour, then bake the loaf at 220 C for 30 minutes.",
    "Penguins live in the southern hemisphere, mostly in Antarctica.",
]


@pytest.fixture(scope="module")
def server(minilm_dir: Path, tiny_cross_encoder_dir: Path) -> Iterator[ThreadedServer]:
    definitions = [define_local(minilm_dir, MINILM), define_local(tiny_cross_encoder_dir, CROSS)]
    with ThreadedServer(definitions, max_rerank_documents=100, max_input_chars=5_000) as running:
        yield running


@pytest.fixture(scope="module")
def http(server: ThreadedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def test_minilm_puts_the_relevant_document_first(http: httpx.Client) -> None:
    reply = http.post("/v1/rerank", json={"model": MINILM, "query": QUERY, "documents": DOCUMENTS})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["results"][0]["index"] == 1
    scores = [r["relevance_score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 3
    assert "document" not in body["results"][0]
    assert body["model"] == MINILM and body["usage"]["total_tokens"] > 0


def test_errors_under_v2_take_kserves_shape(http: httpx.Client) -> None:
    """Everything under /v2 answers errors as KServe does: ``{"error": "..."}``."""
    reply = http.post("/v2/rerank", json={"model": MINILM, "query": "q", "documents": []})
    assert reply.status_code == 400
    assert "documents must not be empty" in reply.json()["error"]


@pytest.mark.parametrize("path", ["/v1/rerank", "/rerank", "/v2/rerank"])
def test_every_path_and_both_document_forms(http: httpx.Client, path: str) -> None:
    documents = [DOCUMENTS[0], {"text": DOCUMENTS[1]}, DOCUMENTS[2]]
    reply = http.post(
        path,
        json={
            "model": MINILM,
            "query": QUERY,
            "documents": documents,
            "top_n": 1,
            "return_documents": True,
        },
    )
    assert reply.status_code == 200, reply.text
    (best,) = reply.json()["results"]
    assert best["index"] == 1 and best["document"] == {"text": DOCUMENTS[1]}


def test_a_cross_encoder_scores_every_document(http: httpx.Client) -> None:
    reply = http.post("/v1/rerank", json={"model": CROSS, "query": "a cat", "documents": DOCUMENTS})
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert sorted(r["index"] for r in results) == [0, 1, 2]
    assert all(0.0 <= r["relevance_score"] <= 1.0 for r in results)


def test_concurrent_requests_each_get_their_own_scores(server: ThreadedServer) -> None:
    """Micro-batched together, each request's results are still its own."""
    import concurrent.futures

    def one(i: int) -> list[int]:
        docs = [f"doc {j} about cats" if j != i % 3 else "bread baking at home" for j in range(3)]
        body = {"model": MINILM, "query": QUERY, "documents": docs}
        reply = httpx.post(f"{server.url}/v1/rerank", json=body, timeout=60)
        return [r["index"] for r in reply.json()["results"]]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        firsts = [order[0] for order in pool.map(one, range(16))]
    assert firsts == [i % 3 for i in range(16)]


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({"documents": []}, "documents", "documents must not be empty"),
        ({"documents": ["a"] * 100_000}, "documents", "max_rerank_documents"),
        ({"top_n": 4}, "", "top_n must be between 1 and the number of documents (3)"),
        ({"top_n": 0}, "top_n", "greater than or equal to 1"),
        ({"documents": ["a", 7]}, "documents", "documents[1] must be a string"),
        ({"documents": [{"title": "x"}]}, "documents", "documents[0] must be a string"),
        ({"query": ""}, "query", "at least 1 character"),
        ({"rank_fields": ["text"]}, "rank_fields", "Extra inputs are not permitted"),
        ({"model": "nope"}, "model", "does not exist"),
    ],
)
def test_bad_requests_are_400s_that_say_why(
    http: httpx.Client, body: dict[str, object], param: str, message: str
) -> None:
    reply = http.post(
        "/v1/rerank", json={"model": MINILM, "query": QUERY, "documents": DOCUMENTS, **body}
    )
    error = reply.json()["error"]
    assert reply.status_code == (404 if param == "model" else 400), error
    assert message in error["message"]
    assert (error["param"] or "") == param


def test_openapi_documents_the_rerank_routes(http: httpx.Client) -> None:
    document = http.get("/openapi.json").json()
    for path in ("/v1/rerank", "/rerank", "/v2/rerank"):
        operation = document["paths"][path]["post"]
        assert operation["requestBody"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/RerankRequest"
        }
    schemas = document["components"]["schemas"]
    assert {"query", "documents", "top_n", "return_documents"} <= set(
        schemas["RerankRequest"]["properties"]
    )
    assert "relevance_score" in schemas["RerankItem"]["properties"]
