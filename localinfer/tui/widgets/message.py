"""One chat message: markdown in a titled box, the reply's timing in its bottom border.

Attached images show as a line of names above the text; tool calls as boxes of their
own under it (name, then arguments), so a call never reads as part of the reply's text.
"""

from __future__ import annotations

import json

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Markdown, Static

from localinfer.tui.conversation import Attachment, ReplyStats, Role, ToolCall


def arguments_text(arguments: str) -> str:
    """The call's arguments as indented JSON (as they came when they are not JSON)."""
    try:
        return json.dumps(json.loads(arguments), indent=2, ensure_ascii=False)
    except ValueError:
        return arguments


class ToolCallView(Static):
    """One function call: its name as the box's title, its arguments inside."""

    DEFAULT_CSS = """
    ToolCallView {
        height: auto; border: round $warning; padding: 0 1; margin: 0;
        color: $text-muted; border-title-color: $warning;
    }
    """

    def __init__(self, call: ToolCall):
        super().__init__(Text(arguments_text(call.arguments)), classes="tool-call")
        self.call = call
        self.border_title = f"tool call: {call.name}"


class MessageView(Vertical):
    """``user`` or ``assistant`` text, rendered as markdown (streamed into, for replies)."""

    DEFAULT_CSS = """
    MessageView { height: auto; padding: 0 1; margin: 0 0 0 0; }
    MessageView.user { border: round $secondary; margin-right: 4; }
    MessageView.assistant { border: round $accent; margin-left: 4; }
    MessageView.-failed { border: round $error; }
    MessageView Markdown { margin: 0; padding: 0; }
    MessageView Markdown > *:last-child { margin-bottom: 0; }
    MessageView .images { color: $text-muted; }
    """

    def __init__(
        self,
        role: Role,
        content: str = "",
        *,
        model: str = "",
        stats: ReplyStats | None = None,
        images: tuple[Attachment, ...] = (),
        tool_calls: tuple[ToolCall, ...] = (),
    ):
        super().__init__(classes=role)
        self.role = role
        self.content = content
        self.images = images
        self.tool_calls = tool_calls
        self.border_title = "you" if role == "user" else (model or "assistant")
        if stats is not None:
            self.border_subtitle = stats.summary()

    def compose(self) -> ComposeResult:
        if self.images:
            names = ", ".join(image.name for image in self.images)
            yield Static(Text(f"image: {names}"), classes="images")
        yield Markdown(self.content)
        for call in self.tool_calls:
            yield ToolCallView(call)

    @property
    def markdown(self) -> Markdown:
        return self.query_one(Markdown)

    async def show_tool_calls(self, calls: tuple[ToolCall, ...]) -> None:
        """Add the calls a streamed reply ended with (they come whole, with its result)."""
        self.tool_calls += calls
        await self.mount_all(ToolCallView(call) for call in calls)

    def finish(self, stats: ReplyStats | None, *, failed: str | None = None) -> None:
        if failed is not None:
            self.add_class("-failed")
            self.border_subtitle = failed
        elif stats is not None:
            self.border_subtitle = stats.summary()
