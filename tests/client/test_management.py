"""``pull`` / ``load`` / ``unload`` against the live management API (a local Hub)."""

from __future__ import annotations

import anyio
import pytest

import localinfer
from localinfer import errors as e
from localinfer.client import Download
from localinfer.client.progress import TerminalLine, reporter_for
from tests.fixtures.hub_server import TINY_BERT_REPO, HubRepo, HubServer

pytestmark = pytest.mark.anyio


async def test_pull_load_embed_unload(tiny_bert_repo: HubRepo, hub: HubServer) -> None:
    seen: list[Download] = []
    async with localinfer.Server(device="cpu") as server, server.client() as client:
        download = await client.pull(TINY_BERT_REPO, progress=seen.append)
        assert download.status == "done" and download.fraction == 1.0
        assert seen and seen[-1].status == "done" and seen[-1].total_bytes
        again = await client.pull(TINY_BERT_REPO, progress=False)  # cached: done at once
        assert again.status == "done"

        info = await client.load(TINY_BERT_REPO, device="cpu", workers=1)
        assert (info.id, info.task) == (TINY_BERT_REPO, "embeddings")
        assert (await client.embed("the quick brown fox")).shape == (1, 32)  # its only model
        await client.unload(TINY_BERT_REPO)
        assert TINY_BERT_REPO not in await client.models()
        with pytest.raises(e.ModelNotFound):
            await client.unload(TINY_BERT_REPO)


async def test_a_failed_download_raises_its_error(hub: HubServer) -> None:
    async with localinfer.Server(device="cpu") as server, server.client() as client:
        with pytest.raises(e.LocalInferError, match="org/missing") as failed:
            await client.pull("org/missing", progress=False)
    assert failed.value.code in {"download_failed", "model_not_found"}


def test_sync_pull_draws_a_terminal_line(
    tiny_bert_repo: HubRepo, hub: HubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert isinstance(reporter_for(True), TerminalLine)  # not in a Jupyter kernel

    async def main() -> None:
        async with localinfer.Server(device="cpu") as server:

            def script() -> Download:
                with server.sync_client() as client:
                    download = client.pull(TINY_BERT_REPO)
                    client.load(TINY_BERT_REPO)
                    assert client.embed(["a", "b"]).shape == (2, 32)
                    client.unload(TINY_BERT_REPO)
                    return download

            assert (await anyio.to_thread.run_sync(script)).status == "done"

    anyio.run(main)
    assert f"{TINY_BERT_REPO}:" in capsys.readouterr().err
