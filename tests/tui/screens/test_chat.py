"""The chat screen against a live server: a streamed reply from the tiny Llama, a reply
stopped with escape (and the server's job with it), conversations saved and opened."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, Select

from localinfer.client import Client
from localinfer.tui.conversation import Conversation
from localinfer.tui.screens.chat import ChatScreen
from localinfer.tui.widgets.message import MessageView
from tests.client.fakes import SlowChat
from tests.support import wait_until
from tests.tui.conftest import SIZE, app_for, wait_for
from tests.tui.screen_text import screen_text

pytestmark = pytest.mark.anyio


async def open_chat(pilot, model: str) -> ChatScreen:  # type: ignore[no-untyped-def]
    await pilot.press("f4")
    screen = pilot.app.screen
    assert isinstance(screen, ChatScreen)
    select = screen.query_one("#model", Select)
    await wait_for(pilot, lambda: model in screen.model_names, what="the chat models")
    select.value = model
    return screen


async def send(screen: ChatScreen, text: str) -> None:
    """Submit the prompt without waiting for the reply (``pilot.press`` waits until the
    app is idle, which a streaming reply is not)."""
    prompt = screen.query_one("#prompt", Input)
    prompt.value = text
    await prompt.action_submit()


async def test_a_reply_streams_in_with_its_timing(chat_client: Client, tmp_path: Path) -> None:
    app = app_for(chat_client, conversation_path=str(tmp_path / "chat.json"))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_chat(pilot, "tiny-chat")
        screen.query_one("#max-tokens", Input).value = "12"
        screen.query_one("#temperature", Input).value = "0"

        await send(screen, "Hello there")
        await wait_for(
            pilot, lambda: not screen.generating and screen.conversation.turns[1:], what="the reply"
        )
        user, reply = screen.conversation.turns
        assert (user.role, user.content) == ("user", "Hello there")
        assert reply.role == "assistant" and reply.content
        assert reply.stats is not None
        assert reply.stats.first_token_ms is not None and reply.stats.first_token_ms > 0
        assert reply.stats.tokens_per_second and reply.stats.completion_tokens == 12
        view = screen.query(MessageView)[-1]
        assert view.markdown.source == reply.content  # what streamed in is the whole reply
        text = screen_text(app)
        assert "tok/s" in text and "first token" in text and "12 tokens" in text

        # the second turn carries the first: the request holds the whole conversation
        await send(screen, "And again")
        await wait_for(pilot, lambda: len(screen.conversation.turns) == 4, what="turn two")
        assert [m["role"] for m in screen.conversation.messages()] == [
            "user",
            "assistant",
            "user",
            "assistant",
        ]


async def test_escape_stops_the_reply_and_the_server_job(
    chat_client: Client, slow_chat: SlowChat
) -> None:
    before = (await chat_client.stats())["slow-chat"].cancelled
    slow_chat.stopped.clear()
    app = app_for(chat_client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_chat(pilot, "slow-chat")
        screen.query_one("#max-tokens", Input).value = "5000"  # 100 s of words
        await send(screen, "talk")
        await wait_for(pilot, lambda: len(screen.query(MessageView)) == 2, what="the reply")
        reply = screen.query(MessageView)[-1]
        await wait_for(pilot, lambda: "w3" in reply.markdown.source, what="a few words")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not screen.generating, what="the stop")

        # the server stopped generating too: the handler saw it, the stats count it
        await wait_until(slow_chat.stopped.is_set, timeout=5)
        assert slow_chat.stopped_after[-1] < 1000

        async def settled() -> bool:
            stats = (await chat_client.stats())["slow-chat"]
            return stats.cancelled == before + 1 and stats.in_flight == 0

        await wait_until(settled, timeout=5)
        kept = screen.conversation.turns[-1]
        assert kept.role == "assistant" and kept.content.startswith("w0 w1 w2 w3")
        assert kept.stats is not None and kept.stats.finish_reason == "stopped"
        assert "stopped" in screen_text(app)


async def test_save_and_open_a_conversation(chat_client: Client, tmp_path: Path) -> None:
    path = tmp_path / "saved.json"
    app = app_for(chat_client, conversation_path=str(path))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_chat(pilot, "slow-chat")
        screen.query_one("#max-tokens", Input).value = "3"
        screen.query_one("#system", Input).value = "Be brief."
        await send(screen, "count")
        await wait_for(pilot, lambda: len(screen.conversation.turns) == 2, what="the reply")
        await pilot.press("ctrl+s")
        await pilot.press("enter")  # the suggested path
        await wait_for(pilot, path.exists, what="the file")
        saved = Conversation.load(path)
        assert saved.system == "Be brief." and saved.max_tokens == 3
        assert saved.model == "slow-chat"
        assert [t.content for t in saved.turns] == ["count", "w0 w1 w2 "]

        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: not screen.query(MessageView), what="a new conversation")
        assert screen.conversation.turns == []
        await pilot.press("ctrl+o")
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(screen.query(MessageView)) == 2, what="the file")
        assert screen.conversation.turns == saved.turns
        assert screen.query_one("#system", Input).value == "Be brief."


async def test_a_bad_file_is_a_notification_not_a_crash(
    chat_client: Client, tmp_path: Path
) -> None:
    path = tmp_path / "not-a-chat.json"
    path.write_text('{"hello": 1}')
    app = app_for(chat_client, conversation_path=str(path))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await open_chat(pilot, "slow-chat")
        await pilot.press("ctrl+o")
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda: "not a localinfer conversation" in screen_text(app),
            what="the notification",
        )
        assert app.is_running


async def test_quitting_mid_reply_stops_the_server_job(
    chat_client: Client, slow_chat: SlowChat
) -> None:
    before = (await chat_client.stats())["slow-chat"].cancelled
    slow_chat.stopped.clear()
    app = app_for(chat_client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_chat(pilot, "slow-chat")
        screen.query_one("#max-tokens", Input).value = "5000"
        await send(screen, "talk")
        await wait_for(pilot, lambda: len(screen.query(MessageView)) == 2, what="the reply")
        reply = screen.query(MessageView)[-1]
        await wait_for(pilot, lambda: "w2" in reply.markdown.source, what="a few words")
        await pilot.press("ctrl+q")
    assert app.return_code == 0  # no error on the way out
    await wait_until(slow_chat.stopped.is_set, timeout=5)

    async def settled() -> bool:
        stats = (await chat_client.stats())["slow-chat"]
        return stats.cancelled == before + 1 and stats.in_flight == 0

    await wait_until(settled, timeout=5)
