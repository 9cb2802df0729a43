"""The chat screen's images and tool calls, against a canned server that records what it
is sent: ``/image PATH`` typed as a person would, a reply that ends in a tool call."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from textual.widgets import Input, Static

from localinfer.tui.screens.chat import ChatScreen
from localinfer.tui.widgets.message import MessageView, ToolCallView
from tests.tui.canned import PIXEL_URL, CannedChat, canned_app
from tests.tui.conftest import SIZE, wait_for
from tests.tui.screen_text import screen_text

pytestmark = pytest.mark.anyio


async def open_chat(pilot) -> ChatScreen:  # type: ignore[no-untyped-def]
    await pilot.press("f4")
    screen = pilot.app.screen
    assert isinstance(screen, ChatScreen)
    await wait_for(pilot, lambda: screen.model_names, what="the chat models")
    return screen


async def type_line(pilot, text: str) -> None:  # type: ignore[no-untyped-def]
    await pilot.press(*text)
    await pilot.press("enter")


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [("bad.png", None, "no such file"), ("notes.png", b"just text", "not an image")],
)
async def test_a_bad_image_path_is_an_error_on_the_screen(
    tmp_path: Path, name: str, content: bytes | None, reason: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    chat = CannedChat()
    app = canned_app(chat)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        screen = await open_chat(pilot)
        await type_line(pilot, f"/image {path}")
        status = screen.query_one("#status", Static)
        await wait_for(pilot, lambda: status.has_class("-error"), what="the error")
        text = screen_text(app)
        assert "cannot attach" in text and reason in text
        assert screen.pending == [] and app.is_running
        assert screen.query_one("#prompt", Input).value == f"/image {path}"  # to fix it
        assert chat.requests == []  # a command, never a message


async def test_an_attached_image_goes_with_the_next_message(tmp_path: Path) -> None:
    path = tmp_path / "pixel.png"
    path.write_bytes(base64.b64decode(PIXEL_URL.partition(",")[2]))
    chat = CannedChat(text="A single pixel.")
    app = canned_app(chat)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_chat(pilot)
        await type_line(pilot, f"/image {path}")
        await wait_for(pilot, lambda: screen.pending, what="the attachment")
        assert "attached: pixel.png" in screen_text(app)
        assert screen.query_one("#prompt", Input).value == ""

        await type_line(pilot, "What is this?")
        await wait_for(pilot, lambda: len(screen.conversation.turns) == 2, what="the reply")
        (sent,) = chat.requests
        assert sent["messages"] == [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": PIXEL_URL}},
                    {"type": "text", "text": "What is this?"},
                ],
            }
        ]
        assert screen.pending == [] and "attached:" not in screen_text(app)
        assert "image: pixel.png" in screen_text(app)

        # /detach drops an attachment before it is sent
        await type_line(pilot, f"/image {path}")
        await wait_for(pilot, lambda: screen.pending, what="the attachment")
        await type_line(pilot, "/detach")
        assert screen.pending == []
        await type_line(pilot, "And now?")
        await wait_for(pilot, lambda: len(chat.requests) == 2, what="the second request")
        assert chat.requests[1]["messages"][-1] == {"role": "user", "content": "And now?"}  # type: ignore[index]


async def test_a_tool_call_is_shown_and_kept_in_the_history() -> None:
    chat = CannedChat(text="Checking.", tool_calls=[("get_weather", '{"city": "Lyon"}')])
    app = canned_app(chat)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_chat(pilot)
        await type_line(pilot, "Weather in Lyon?")
        await wait_for(pilot, lambda: screen.query(ToolCallView), what="the tool call")
        (view,) = screen.query(ToolCallView)
        assert view.border_title == "tool call: get_weather"
        assert view.call.arguments == '{"city": "Lyon"}'  # both fragments, folded
        text = screen_text(app)
        assert "tool call: get_weather" in text and '"city": "Lyon"' in text
        reply = screen.query(MessageView)[-1]
        assert reply.markdown.source == "Checking."  # the call is not part of the text
        assert "tool_calls" in text  # the finish reason
        await wait_for(pilot, lambda: not screen.generating, what="the end of the reply")

        await type_line(pilot, "Thanks")
        await wait_for(pilot, lambda: len(chat.requests) == 2, what="the second request")
        assistant = chat.requests[1]["messages"][1]  # type: ignore[index]
        assert assistant["tool_calls"][0]["function"] == {
            "name": "get_weather",
            "arguments": '{"city": "Lyon"}',
        }
