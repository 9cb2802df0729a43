"""``Client.rerank`` and ``SyncClient.rerank`` against a live server with the packaged MiniLM."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from localinfer import errors as e
from localinfer.client import Client, Reranking, SyncClient
from tests.support import ThreadedServer, define_local

pytestmark = pytest.mark.anyio

DOCUMENTS = ["Stocks rose on Friday.", "Bake the loaf at 220 C for 30 minutes.", "Penguins swim."]


@pytest.fixture(scope="module")
def server(minilm_dir: Path) -> Iterator[ThreadedServer]:
    with ThreadedServer([define_local(minilm_dir, "minilm")]) as running:
        yield running


def test_sync_client_reranks_with_the_only_model_that_can(server: ThreadedServer) -> None:
    with SyncClient(server.url) as client:
        ranking = client.rerank("how to bake bread", DOCUMENTS, return_documents=True)
        assert isinstance(ranking, Reranking) and ranking.model == "minilm"
        assert ranking.indices[0] == 1 and ranking[0].document == DOCUMENTS[1]
        assert "| 1 | 1 |" in ranking._repr_markdown_()
        with pytest.raises(e.InvalidRequest, match="top_n"):
            client.rerank("q", DOCUMENTS, top_n=9)


async def test_async_client_reranks_and_cuts_to_top_n(server: ThreadedServer) -> None:
    async with Client(server.url) as client:
        ranking = await client.rerank("how to bake bread", DOCUMENTS, model="minilm", top_n=1)
        assert ranking.indices == [1] and ranking[0].document is None
        assert ranking.usage.total_tokens > 0
        with pytest.raises(e.InvalidRequest, match="documents must not be empty"):
            await client.rerank("q", [], model="minilm")
