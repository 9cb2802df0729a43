"""The models screen against a live server and a local Hub: a download followed to 100 %,
a download cancelled, load and unload, a failure shown in the UI."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from textual.widgets import DataTable, Input, Label, ProgressBar

import localinfer
from localinfer.client import Client, Download
from localinfer.tui.screens.models import ModelsScreen
from localinfer.tui.widgets.prompt import TextPrompt
from tests.fixtures.hub_server import TINY_BERT_REPO, HubRepo, HubServer
from tests.tui.conftest import SIZE, app_for, wait_for
from tests.tui.screen_text import screen_text

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(hub: HubServer) -> AsyncIterator[Client]:
    """A server with no model, its downloads going to the local Hub (``hub`` sets the env)."""
    async with localinfer.Server(device="cpu") as server, server.client() as c:
        yield c


async def start_download(pilot, model: str) -> ModelsScreen:  # type: ignore[no-untyped-def]
    screen = pilot.app.screen
    assert isinstance(screen, ModelsScreen)
    await wait_for(pilot, lambda: screen.inventory.catalog, what="the catalog")
    await pilot.press("d")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, TextPrompt), what="the prompt")
    pilot.app.screen.query_one(Input).value = model
    await pilot.press("enter")
    return screen


def label(screen: ModelsScreen) -> str:
    return str(screen.query_one("#download-label", Label).content)


async def test_download_to_100_percent_then_load_and_unload(
    client: Client, hub: HubServer, tiny_bert_repo: HubRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.faults.chunk_delay_s = 0.01  # a few progress events, not one
    hub.faults.chunk_size = 16 * 1024
    app = app_for(client)
    fractions: list[float] = []  # every progress event the screen got, not a polled sample
    shown = ModelsScreen._progress

    def recording(self: ModelsScreen, download: Download) -> None:
        if download.fraction is not None:
            fractions.append(download.fraction)
        shown(self, download)

    monkeypatch.setattr(ModelsScreen, "_progress", recording)
    async with app.run_test(size=SIZE) as pilot:
        screen = await start_download(pilot, TINY_BERT_REPO)
        bar = screen.query_one("#download-bar", ProgressBar)

        def finished() -> bool:
            return "downloaded" in label(screen)

        await wait_for(pilot, finished, what="the download")
        assert bar.percentage == 1.0 and bar.display
        assert any(0 < f < 1 for f in fractions), fractions  # it moved on its way up
        # the cache table lists it once the download is done
        cache = screen.query_one("#cache", DataTable)
        await wait_for(pilot, lambda: cache.row_count == 1, what="the cache table")
        assert TINY_BERT_REPO in screen_text(app)

        cache.focus()
        await pilot.press("l")
        await wait_for(pilot, lambda: TINY_BERT_REPO in screen.inventory.loaded, what="load")
        assert TINY_BERT_REPO in (await client.models()).names
        assert "loaded" in str(cache.get_row(TINY_BERT_REPO)[-1])

        await pilot.press("u")
        await wait_for(pilot, lambda: not screen.inventory.loaded, what="unload")
        assert TINY_BERT_REPO not in (await client.models()).names
        assert "unloaded" in screen_text(app)


async def test_a_download_is_cancelled_with_x(
    client: Client, hub: HubServer, tiny_bert_repo: HubRepo
) -> None:
    hub.faults.chunk_delay_s = 0.05
    hub.faults.chunk_size = 4 * 1024  # minutes for the whole repo: only a cancel ends it
    app = app_for(client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await start_download(pilot, TINY_BERT_REPO)
        await wait_for(
            pilot,
            lambda: screen.download is not None and screen.download.downloaded_bytes > 0,
            what="the first bytes",
        )
        await pilot.press("x")
        await wait_for(pilot, lambda: "cancelled" in label(screen), what="the cancel")
        (download,) = await client.downloads()
        assert download.status == "cancelled"
        assert screen.download is None


async def test_a_failed_download_is_shown_not_raised(client: Client, hub: HubServer) -> None:
    app = app_for(client)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        screen = await start_download(pilot, "org/missing")
        await wait_for(pilot, lambda: "failed" in label(screen), what="the failure")
        await wait_for(pilot, lambda: "org/missing" in screen_text(app), what="the message")
        status = screen.query_one("#status")
        assert status.has_class("-error")
        assert app.is_running


async def test_unloading_what_is_not_loaded_is_an_error_in_the_ui(client: Client) -> None:
    app = app_for(client)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        screen = app.screen
        assert isinstance(screen, ModelsScreen)
        await wait_for(pilot, lambda: screen.inventory.catalog, what="the catalog")
        await pilot.press("u")
        await wait_for(pilot, lambda: "ModelNotFound" in screen_text(app), what="the error")
        assert app.is_running
