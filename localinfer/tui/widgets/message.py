"""One chat message: markdown in a titled box, the reply's timing in its bottom border."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Markdown

from localinfer.tui.conversation import ReplyStats, Role


class MessageView(Vertical):
    """``user`` or ``assistant`` text, rendered as markdown (streamed into, for replies)."""

    DEFAULT_CSS = """
    MessageView { height: auto; padding: 0 1; margin: 0 0 0 0; }
    MessageView.user { border: round $secondary; margin-right: 4; }
    MessageView.assistant { border: round $accent; margin-left: 4; }
    MessageView.-failed { border: round $error; }
    MessageView Markdown { margin: 0; padding: 0; }
    MessageView Markdown > *:last-child { margin-bottom: 0; }
    """

    def __init__(
        self, role: Role, content: str = "", *, model: str = "", stats: ReplyStats | None = None
    ):
        super().__init__(classes=role)
        self.role = role
        self.content = content
        self.border_title = "you" if role == "user" else (model or "assistant")
        if stats is not None:
            self.border_subtitle = stats.summary()

    def compose(self) -> ComposeResult:
        yield Markdown(self.content)

    @property
    def markdown(self) -> Markdown:
        return self.query_one(Markdown)

    def finish(self, stats: ReplyStats | None, *, failed: str | None = None) -> None:
        if failed is not None:
            self.add_class("-failed")
            self.border_subtitle = failed
        elif stats is not None:
            self.border_subtitle = stats.summary()
