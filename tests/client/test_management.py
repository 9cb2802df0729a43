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


async def test_catalog_cache_and_downloads(tiny_bert_repo: HubRepo, hub: HubServer) -> None:
    async with localinfer.Server(device="cpu") as server, server.client() as client:
        catalog = await client.catalog()
        assert catalog and all(entry.id and entry.repo and entry.task for entry in catalog)
        assert await client.cached_models() == ()
        assert await client.downloads() == ()

        await client.pull(TINY_BERT_REPO, progress=False)
        (cached,) = await client.cached_models()
        assert cached.id == TINY_BERT_REPO and cached.size_bytes > 0 and not cached.loaded
        (download,) = await client.downloads()
        assert (download.model, download.status) == (TINY_BERT_REPO, "done")
        await client.load(TINY_BERT_REPO)
        assert (await client.cached_models())[0].loaded

        def sync_twin() -> None:
            with server.sync_client() as sync:
                assert sync.catalog() == catalog
                assert [m.id for m in sync.cached_models()] == [TINY_BERT_REPO]
                assert [d.id for d in sync.downloads()] == [download.id]
                assert sync.cancel_download(download.id).status == "done"  # too late: kept

        await anyio.to_thread.run_sync(sync_twin)


async def test_cancel_download_stops_a_pull(tiny_bert_repo: HubRepo, hub: HubServer) -> None:
    hub.faults.chunk_delay_s = 0.05
    hub.faults.chunk_size = 4 * 1024
    seen: list[Download] = []
    async with localinfer.Server(device="cpu") as server, server.client() as client:

        def progress(download: Download) -> None:
            seen.append(download)

        async with anyio.create_task_group() as tg:

            async def pull() -> None:
                with pytest.raises(e.DownloadCancelled):
                    await client.pull(TINY_BERT_REPO, progress=progress)

            tg.start_soon(pull)
            with anyio.fail_after(10):
                while not seen or seen[-1].downloaded_bytes == 0:
                    await anyio.sleep(0.02)
            cancelled = await client.cancel_download(seen[-1].id)
            assert cancelled.status in {"cancelling", "cancelled"}
        assert (await client.downloads())[0].status == "cancelled"
