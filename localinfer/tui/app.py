"""``LocalInferApp``: the desktop face — models, a machine monitor and a chat, one screen each.

The app holds a :class:`~localinfer.client.Client` from its :class:`Backend` and nothing
else of the runtime: every screen asks through the client, so the TUI drives a remote
server as well as its own. Screens are Textual *modes* (each keeps its state while another
is shown); F1-F4 switch between them, ``ctrl+t`` toggles light/dark.

Errors never reach the terminal as tracebacks: a failed worker becomes a notification
(:meth:`LocalInferApp.report`), and a screen whose work fails keeps running.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from localinfer import errors as e
from localinfer.client import Client
from localinfer.client.errors import CONNECTION_ERROR
from localinfer.tui.backend import Backend
from localinfer.tui.screens.chat import ChatScreen
from localinfer.tui.screens.help import HelpScreen
from localinfer.tui.screens.models import ModelsScreen
from localinfer.tui.screens.monitor import MonitorScreen

logger = logging.getLogger(__name__)


def describe_error(error: BaseException) -> tuple[str, str]:
    """(title, message) for a notification: the server's own words when it sent some."""
    if isinstance(error, e.LocalInferError):
        if error.code == CONNECTION_ERROR:
            return "No connection", error.message
        return type(error).__name__, error.message
    return type(error).__name__, str(error) or repr(error)


class LocalInferApp(App[None]):
    """The localinfer TUI. ``LocalInferApp(backend).run()``, or ``run_test()`` in tests."""

    #: the server the app talks to, as the top bar shows it
    connection: reactive[str] = reactive("")

    TITLE = "localinfer"
    ENABLE_COMMAND_PALETTE = False
    MODES: ClassVar[dict[str, str | Callable[[], Screen[Any]]]] = {
        "models": ModelsScreen,
        "monitor": MonitorScreen,
        "chat": ChatScreen,
    }
    DEFAULT_MODE = "models"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f1", "help", "Help"),
        # the top bar shows these three as tabs, with their keys
        Binding("f2", "switch_mode('models')", "Models", show=False),
        Binding("f3", "switch_mode('monitor')", "Monitor", show=False),
        Binding("f4", "switch_mode('chat')", "Chat", show=False),
        Binding("ctrl+t", "toggle_dark", "Theme", tooltip="light / dark"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]
    CSS = """
    .status { height: 1; padding: 0 1; color: $text-muted; }
    .status.-error { color: $error; }
    .section-title { height: 1; padding: 0 1; text-style: bold; color: $accent; }
    """

    def __init__(
        self,
        backend: Backend,
        *,
        poll_interval_s: float | None = 1.0,
        conversation_path: str = "conversation.json",
    ):
        super().__init__()
        self.backend = backend
        #: how often the monitor reads ``/v1/stats``; None: never by itself (snapshot tests)
        self.poll_interval_s = poll_interval_s
        #: where the chat saves and opens conversations unless told otherwise
        self.conversation_path = conversation_path
        self._client: Client | None = None
        self._connect_error: BaseException | None = None
        self._connected = asyncio.Event()

    # -- the client ------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.connection = f"connecting to {self.backend.description}…"
        self.run_worker(self._connect(), name="connect", group="connect", exit_on_error=False)

    async def _connect(self) -> None:
        try:
            self._client = await self.backend.connect()
        except Exception as exc:
            self._connect_error = exc
            self.connection = "not connected"
            self.report(exc)
        else:
            self.connection = self.backend.description
        finally:
            self._connected.set()

    async def client(self) -> Client:
        """The client, once the backend is up (a local server may still be loading)."""
        await self._connected.wait()
        if self._client is None:
            _, message = describe_error(self._connect_error or RuntimeError("no client"))
            raise e.LocalInferError(f"not connected: {message}", code=CONNECTION_ERROR)
        return self._client

    # -- errors ----------------------------------------------------------------------------

    def report(self, error: BaseException) -> None:
        """Show a failure as a notification (and log it): never a traceback on the terminal."""
        title, message = describe_error(error)
        logger.info("%s: %s", title, message, exc_info=not isinstance(error, e.LocalInferError))
        self.notify(message, title=title, severity="error", timeout=8)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.report(event.worker.error)

    # -- actions ---------------------------------------------------------------------------

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())
