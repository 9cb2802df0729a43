"""Starting the TUI: against a remote server, or with a server of its own in its loop.

The only TUI module that imports the server: :class:`EmbeddedBackend` starts
``localinfer.Server`` in the app's own asyncio loop (no second process) once the UI is up,
so loading models shows in the header instead of a blank terminal, and stops it when the
app exits. Logs go to a file: a line written to the terminal would tear the screen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from localinfer.client import Client
from localinfer.log import RequestIdFilter
from localinfer.tui.backend import Backend

if TYPE_CHECKING:
    from localinfer.embedded import Server


class EmbeddedBackend:
    """A localinfer server in this process, bound to 127.0.0.1 (port 0: a free one)."""

    def __init__(
        self,
        models: Sequence[str] = (),
        *,
        device: str = "auto",
        workers: int = 1,
        port: int = 0,
        **setting_overrides: object,
    ):
        self.models = list(models)
        self.device = device
        self.workers = workers
        self.port = port
        self.setting_overrides = {k: v for k, v in setting_overrides.items() if v is not None}
        self.description = "local server (starting)"
        self._server: Server | None = None

    def _build(self) -> Server:
        from localinfer.embedded import Server

        overrides: dict[str, Any] = dict(self.setting_overrides)
        return Server(
            self.models,
            device=self.device,
            workers=self.workers,
            host="127.0.0.1",
            port=self.port,
            **overrides,
        )

    async def connect(self) -> Client:
        # resolving models reads the cache and imports plugins: not on the UI's loop
        server = await anyio.to_thread.run_sync(self._build)
        self._server = server
        await server.start()
        self.description = f"local {server.url}"
        return server.client()

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop()


def log_to_file(path: Path, level: str = "info") -> None:
    """Send localinfer's log lines to ``path`` instead of the terminal (hypercorn's own go
    to stderr, which Textual captures while the app runs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s [%(request_id)s] %(name)s: %(message)s")
    )
    logger = logging.getLogger("localinfer")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False


async def run_app(backend: Backend, *, poll_interval_s: float = 1.0) -> None:
    """Run the app in the current loop; the backend is closed however the app ends."""
    from localinfer.tui.app import LocalInferApp

    app = LocalInferApp(backend, poll_interval_s=poll_interval_s)
    try:
        await app.run_async()
    finally:
        await backend.close()


def run(backend: Backend) -> None:
    asyncio.run(run_app(backend))
