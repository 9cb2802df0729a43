"""SVG snapshots of each screen at 100x30, against a canned server (no clock, no timings,
no random ids): ``pytest tests/tui --snapshot-update`` rewrites them after a deliberate
change of the look."""

from __future__ import annotations

from textual.pilot import Pilot

from localinfer.tui.conversation import Attachment
from localinfer.tui.screens.chat import ChatScreen
from localinfer.tui.screens.models import ModelsScreen
from localinfer.tui.screens.monitor import MonitorScreen
from tests.tui.canned import (
    CONVERSATION,
    PIXEL_URL,
    TOOL_CONVERSATION,
    canned_app,
    stats_sample,
)

SIZE = (100, 30)


async def until(pilot: Pilot[None], predicate: object) -> None:
    for _ in range(200):
        if callable(predicate) and predicate():
            return
        await pilot.pause(0.02)
    raise AssertionError("the screen never got ready")


async def models_ready(pilot: Pilot[None]) -> None:
    screen = pilot.app.screen
    assert isinstance(screen, ModelsScreen)
    await until(pilot, lambda: screen.query_one("#cache").row_count == 3)  # type: ignore[attr-defined]
    await pilot.pause()


async def monitor_ready(pilot: Pilot[None]) -> None:
    await pilot.press("f3")
    screen = pilot.app.screen
    assert isinstance(screen, MonitorScreen)
    for step in range(40):  # forty polls' worth of history, the same every run
        await screen.show(stats_sample(step))
    await pilot.pause()


async def chat_ready(pilot: Pilot[None]) -> None:
    await pilot.press("f4")
    screen = pilot.app.screen
    assert isinstance(screen, ChatScreen)
    await until(pilot, lambda: screen.model_names)
    await screen.show_conversation(CONVERSATION)
    screen.status("qwen2.5-0.5b-instruct: first token 62 ms · 44.0 tok/s · 15 tokens · stop")
    await pilot.pause()


async def tool_chat_ready(pilot: Pilot[None]) -> None:
    """A vision question answered with a tool call, and an image waiting for the next one."""
    await pilot.press("f4")
    screen = pilot.app.screen
    assert isinstance(screen, ChatScreen)
    await until(pilot, lambda: screen.model_names)
    await screen.show_conversation(TOOL_CONVERSATION)
    screen.pending.append(Attachment("receipt.jpg", PIXEL_URL))
    screen.show_pending()
    screen.status("attached receipt.jpg: it goes with the next message")
    await pilot.pause()


async def help_ready(pilot: Pilot[None]) -> None:
    await models_ready(pilot)
    await pilot.press("f1")
    await pilot.pause()


def test_models_screen(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(canned_app(), terminal_size=SIZE, run_before=models_ready)


def test_monitor_screen(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(canned_app(), terminal_size=SIZE, run_before=monitor_ready)


def test_chat_screen(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(canned_app(), terminal_size=SIZE, run_before=chat_ready)


def test_chat_tool_calls_and_images(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(canned_app(), terminal_size=SIZE, run_before=tool_chat_ready)


def test_help_screen(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(canned_app(), terminal_size=SIZE, run_before=help_ready)


def test_light_theme(snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def light(pilot: Pilot[None]) -> None:
        await models_ready(pilot)
        await pilot.press("ctrl+t")
        await pilot.pause()

    assert snap_compare(canned_app(), terminal_size=SIZE, run_before=light)
