"""An image attached with ``/image`` reaches a real vision model: the tiny random Idefics3
served by a live server in the test's loop answers through the normal chat call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from textual.widgets import Input, Static

import localinfer
from localinfer.client import Client
from localinfer.tui.screens.chat import ChatScreen
from localinfer.tui.widgets.message import MessageView
from tests.tui.conftest import SIZE, app_for, wait_for

pytestmark = pytest.mark.anyio
Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
async def vision_client(tiny_vlm_dir: Path) -> AsyncIterator[Client]:
    server = localinfer.Server({"tiny-vision": tiny_vlm_dir}, device="cpu")
    async with server as running, running.client() as client:
        yield client


async def test_an_attached_image_is_answered_by_a_vision_model(
    vision_client: Client, tmp_path: Path
) -> None:
    path = tmp_path / "red.png"
    Image.new("RGB", (48, 32), "red").save(path)
    app = app_for(vision_client)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        screen = app.screen
        assert isinstance(screen, ChatScreen)
        await wait_for(pilot, lambda: "tiny-vision" in screen.model_names, what="the model")
        screen.query_one("#max-tokens", Input).value = "4"  # a tiny model's tiny context
        await pilot.press(*f"/image {path}", "enter")
        await wait_for(pilot, lambda: screen.pending, what="the attachment")
        await pilot.press(*"What colour?", "enter")
        await wait_for(
            pilot,
            lambda: len(screen.query(MessageView)) == 2 and not screen.generating,
            timeout=60,
            what="the reply",
        )
        assert not screen.query(MessageView)[-1].has_class("-failed"), screen.query_one(
            "#status", Static
        ).render()
        user, reply = screen.conversation.turns
        assert user.images and user.images[0].name == "red.png"
        assert reply.stats is not None and reply.stats.completion_tokens
