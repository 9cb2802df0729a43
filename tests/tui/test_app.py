"""The app shell: screens by key, help, light/dark, and failures of the connection shown
in the UI (never a traceback); the launcher's local server started and stopped."""

from __future__ import annotations

import pytest

import localinfer
from localinfer.client import Client
from localinfer.tui.app import LocalInferApp
from localinfer.tui.backend import RemoteBackend
from localinfer.tui.launcher import EmbeddedBackend
from localinfer.tui.screens.chat import ChatScreen
from localinfer.tui.screens.help import HelpScreen
from localinfer.tui.screens.models import ModelsScreen
from localinfer.tui.screens.monitor import MonitorScreen
from tests.tui.conftest import SIZE, app_for, wait_for
from tests.tui.screen_text import screen_text

pytestmark = pytest.mark.anyio


async def test_keys_switch_screens_show_help_and_toggle_the_theme(chat_client: Client) -> None:
    app = app_for(chat_client)
    async with app.run_test(size=(80, 24)) as pilot:
        assert isinstance(app.screen, ModelsScreen)
        footer = screen_text(app).splitlines()[-1]
        assert footer.startswith("/ Filter d Download") and footer.rstrip().endswith("^t Theme")
        for key, screen in (("f3", MonitorScreen), ("f4", ChatScreen), ("f2", ModelsScreen)):
            await pilot.press(key)
            assert isinstance(app.screen, screen)
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await wait_for(pilot, lambda: "this help (escape closes it)" in screen_text(app))
        await pilot.press("escape")
        assert isinstance(app.screen, ModelsScreen)
        dark = app.theme
        await pilot.press("ctrl+t")
        assert app.theme != dark and app.theme == "textual-light"
        await pilot.press("ctrl+t")
        assert app.theme == dark


async def test_an_unreachable_server_is_shown_not_raised(free_tcp_port: int) -> None:
    async with Client(f"http://127.0.0.1:{free_tcp_port}", timeout=2) as client:
        app = app_for(client, poll_interval_s=0.1)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await wait_for(pilot, lambda: "cannot reach" in screen_text(app), what="the toast")
            await pilot.press("f3")
            await wait_for(
                pilot,
                lambda: "cannot read /v1/stats: cannot reach" in screen_text(app),
                what="the monitor's status line",
            )
            assert app.is_running


async def test_a_wrong_api_key_is_shown_not_raised() -> None:
    async with localinfer.Server(api_key="right-key") as server:
        backend = RemoteBackend(server.url, api_key="wrong-key")
        app = LocalInferApp(backend, poll_interval_s=None)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await wait_for(
                pilot, lambda: "AuthenticationFailed" in screen_text(app), what="the 401"
            )
            assert app.is_running
        await backend.close()


async def test_the_local_server_starts_with_the_app_and_stops_with_it(
    tiny_llama_dir: object,
) -> None:
    backend = EmbeddedBackend([str(tiny_llama_dir)], device="cpu")
    app = LocalInferApp(backend, poll_interval_s=None)
    async with app.run_test(size=SIZE) as pilot:
        client = await app.client()
        assert backend.description.startswith("local http://127.0.0.1:")
        await wait_for(pilot, lambda: "local http:" in screen_text(app), what="the top bar")
        assert len(await client.models()) == 1
    await backend.close()
    assert backend._server is None
    assert client._http.is_closed  # closed with the server


async def test_a_server_that_cannot_start_is_shown_not_raised() -> None:
    backend = EmbeddedBackend(["org/not-in-the-cache"], device="cpu", offline=True)
    app = LocalInferApp(backend, poll_interval_s=None)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_for(pilot, lambda: "not connected" in screen_text(app), what="the failure")
        assert app.is_running
    await backend.close()
