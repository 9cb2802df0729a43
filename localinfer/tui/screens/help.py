"""Help: what each screen is for and its keys (the footer shows the keys of the moment)."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# localinfer

The desktop face of a localinfer server: the one it started, or a remote one (`--url`).

## Everywhere

- `F1` this help (`escape` closes it)
- `F2` Models · `F3` Monitor · `F4` Chat
- `ctrl+t` light / dark theme
- `ctrl+q` quit (a server started by the app stops with it)

## Models (F2)

The catalog and the server's Hugging Face cache (side by side on wide terminals).

- `/` filter by alias, repo or task
- `d` download a model to the server, with progress; `x` cancels it
- `l` load the highlighted model (on the device chosen top right); `u` unload it
- `r` refresh

## Monitor (F3)

The server machine's devices (utilisation, memory, temperature) and each model's
queue, requests/s, tokens/s and latency, read from `/v1/stats` once a second.

- `p` pause / resume · `r` refresh now

## Chat (F4)

Pick a loaded chat model, type, `enter` sends; the reply streams in as markdown, with
its time to first token and tokens/s underneath.

- `escape` stop the reply (the server stops generating too)
- `ctrl+s` save · `ctrl+o` open the conversation (JSON, settings included)
- `ctrl+n` new conversation · `ctrl+r` reread the loaded models
"""


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 76; max-width: 95%; height: 90%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,f1,q", "close", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Markdown(HELP)

    def action_close(self) -> None:
        self.dismiss(None)
