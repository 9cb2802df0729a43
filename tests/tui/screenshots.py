"""The screenshots in ``docs/img/tui-*.svg``, taken from a real run (not a test).

``python -m tests.tui.screenshots docs/img`` starts a local server with the small chat
model shipped as a Python package (SmolLM2-135M-Instruct, ``scripts/install.sh``),
downloads a tiny model from a local stand-in for the Hub through the models screen, asks
the chat model a question through the chat screen, and saves each screen at 100x30.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

from textual.widgets import Input, Label

from tests.fixtures.hub_server import TINY_BERT_REPO, HubServer
from tests.tui.screen_text import screen_text

MODEL = "smollm2-135m-instruct"
QUESTION = "In two sentences: what is a GPU?"


async def main(folder: Path) -> None:
    # huggingface-hub reads these when it is imported: before anything imports it
    scratch = Path(tempfile.mkdtemp(prefix="localinfer-screenshots-"))
    hub = HubServer().__enter__()
    os.environ.update(
        HF_HOME=str(scratch / "hf-home"),
        HF_ENDPOINT=hub.url,
        LOCALINFER_CATALOG=str(scratch / "catalog.toml"),
        LOCALINFER_CONFIG=str(scratch / "config.toml"),
    )
    from tests.fixtures.tiny_encoders import build_tiny_bert

    hub.add_directory(TINY_BERT_REPO, build_tiny_bert(scratch / "tiny-bert"))
    try:
        await take(folder)
    finally:
        hub.__exit__()


async def take(folder: Path) -> None:
    import localinfer
    from localinfer.tui.app import LocalInferApp
    from localinfer.tui.backend import ClientBackend
    from localinfer.tui.screens.chat import ChatScreen
    from localinfer.tui.screens.models import ModelsScreen
    from localinfer.tui.screens.monitor import MonitorScreen
    from localinfer.tui.widgets.prompt import TextPrompt

    folder.mkdir(parents=True, exist_ok=True)
    async with localinfer.Server([MODEL], device="cpu") as server, server.client() as client:
        app = LocalInferApp(ClientBackend(client, server.url), poll_interval_s=1.0)
        async with app.run_test(size=(100, 30)) as pilot:
            models = app.screen
            assert isinstance(models, ModelsScreen)
            while not models.inventory.catalog:
                await pilot.pause(0.1)
            await pilot.press("d")
            while not isinstance(app.screen, TextPrompt):
                await pilot.pause(0.05)
            app.screen.query_one(Input).value = TINY_BERT_REPO
            await pilot.press("enter")
            label = models.query_one("#download-label", Label)
            while "downloaded" not in str(label.content):
                await pilot.pause(0.1)
            while models.query_one("#cache").row_count == 0:  # type: ignore[attr-defined]
                await pilot.pause(0.1)
            await pilot.pause(0.5)
            app.save_screenshot("tui-models.svg", str(folder))
            print(screen_text(app))

            await pilot.press("f4")
            chat = app.screen
            assert isinstance(chat, ChatScreen)
            while not chat.model_names:
                await pilot.pause(0.1)
            chat.query_one("#temperature", Input).value = "0.2"
            chat.query_one("#max-tokens", Input).value = "80"
            chat.query_one("#system", Input).value = "You are a helpful assistant."
            prompt = chat.query_one("#prompt", Input)
            prompt.value = QUESTION
            await prompt.action_submit()
            await pilot.pause(0.2)
            while chat.generating:
                await pilot.pause(0.1)
            await pilot.pause(0.5)
            app.save_screenshot("tui-chat.svg", str(folder))
            print(screen_text(app))

            await pilot.press("f3")
            monitor = app.screen
            assert isinstance(monitor, MonitorScreen)
            for _ in range(3):  # traffic for the graphs while the monitor watches
                await client.chat("Name a colour.", max_tokens=12)
                await pilot.pause(1.0)
            await pilot.pause(1.5)
            app.save_screenshot("tui-monitor.svg", str(folder))
            print(screen_text(app))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img")))
