"""What every screen of the app shares: its client, and failures shown, never raised."""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

from textual.screen import Screen
from textual.worker import Worker, WorkerState

from localinfer.client import Client


class ScreenHost(Protocol):
    """What the screens need of the app, so that they never import it (the app imports
    them): its client, where failures go, and two settings."""

    #: how often the monitor reads ``/v1/stats``; None: never by itself
    poll_interval_s: float | None
    #: where the chat saves and opens conversations unless told otherwise
    conversation_path: str

    async def client(self) -> Client: ...

    def report(self, error: BaseException) -> None: ...


class AppScreen(Screen[None]):
    """A screen of the localinfer app. Workers run with ``exit_on_error=False``: one
    that fails is reported here (Worker.StateChanged does not bubble to the app)."""

    @property
    def localinfer(self) -> ScreenHost:
        return cast(ScreenHost, self.app)

    async def client(self) -> Client:
        return await self.localinfer.client()

    async def until_current(self, timeout_s: float = 2.0) -> None:
        """Wait for a modal over this screen to close. A modal's result callback runs before
        the modal is popped, and a notification raised then goes down with the modal."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not self.is_current and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)

    def report(self, error: BaseException) -> None:
        self.localinfer.report(error)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.report(event.worker.error)
