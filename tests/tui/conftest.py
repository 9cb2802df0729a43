"""Fixtures of the TUI tests: a live server in the test's loop, and helpers to drive the app.

The Pilot tests run the real app against a real server (``localinfer.Server`` in the same
event loop), so every flow goes through HTTP as it does for a person.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest
from textual.app import App
from textual.pilot import Pilot

import localinfer
from localinfer.client import Client
from localinfer.tui.app import LocalInferApp
from localinfer.tui.backend import ClientBackend
from tests.client.fakes import SlowChat
from tests.tui.screen_text import screen_text

SIZE = (100, 30)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def slow_chat() -> SlowChat:
    """A chat model that writes one word every 20 ms: slow enough to stop mid-reply."""
    return SlowChat(delay_s=0.02)


@pytest.fixture(scope="module")
async def chat_server(
    tiny_llama_dir: Path, slow_chat: SlowChat
) -> AsyncIterator[localinfer.Server]:
    served = {"tiny-chat": tiny_llama_dir, "slow-chat": slow_chat}
    async with localinfer.Server(served, device="cpu") as running:
        yield running


@pytest.fixture
async def chat_client(chat_server: localinfer.Server) -> AsyncIterator[Client]:
    async with chat_server.client() as client:
        yield client


def app_for(client: Client, **options: object) -> LocalInferApp:
    options.setdefault("poll_interval_s", None)
    return LocalInferApp(ClientBackend(client, "test server"), **options)  # type: ignore[arg-type]


async def wait_for(
    pilot: Pilot[object],
    predicate: Callable[[], object],
    timeout: float = 15.0,
    what: str = "the condition",
) -> None:
    """Let the app run until ``predicate()`` is true; fail with the screen's text if not."""
    with anyio.move_on_after(timeout):
        while not predicate():
            await pilot.pause(0.05)
        return
    app: App[object] = pilot.app
    raise AssertionError(f"timed out waiting for {what}; the screen:\n{screen_text(app)}")
