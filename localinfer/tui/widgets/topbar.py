"""The top line: the app's name, its screens as tabs (with their keys), the server."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

#: (mode, key, label) of the screens, in tab order
TABS = (("models", "F2", "Models"), ("monitor", "F3", "Monitor"), ("chat", "F4", "Chat"))


class TopBar(Widget):
    """Shows which screen is current; the right side says which server the app talks to."""

    DEFAULT_CSS = """
    TopBar { height: 1; background: $panel; color: $foreground; }
    """

    def __init__(self, current: str):
        super().__init__()
        self.current = current

    def on_mount(self) -> None:
        self.watch(self.app, "connection", self._connection_changed, init=False)

    def _connection_changed(self) -> None:
        self.refresh()

    def render(self) -> Text:
        line = Text.assemble((" localinfer ", "bold"), " ")
        for mode, key, label in TABS:
            style = "reverse bold" if mode == self.current else ""
            line.append_text(Text.assemble((f" {key} ", style or "dim"), (f"{label} ", style)))
            line.append(" ")
        connection = str(getattr(self.app, "connection", ""))
        room = self.size.width - line.cell_len - 1
        if room > 3:
            shown = connection if len(connection) <= room else "…" + connection[-(room - 1) :]
            line.append(" " * (room - len(shown)) + shown, style="dim")
        return line
