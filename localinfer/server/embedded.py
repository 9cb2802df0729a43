"""``localinfer.Server``: the full HTTP server inside the running event loop.

Made for Jupyter, whose kernel already runs an asyncio loop: hypercorn serves in that
loop on a free port, models load in their worker threads, and the kernel stays
responsive. No second process, no ``nest_asyncio``::

    async with localinfer.Server(models=["all-minilm"]) as server:
        client = server.client()
        await client.embed(["hello"])

or, to keep it across cells, ``server = await localinfer.Server(...).start()`` and later
``await server.stop()``. Leaving the block, ``stop()`` or an interrupted cell stops
the server and frees the models (each handler is closed in its worker thread).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
from starlette.applications import Starlette

from localinfer.config import Settings, load_settings
from localinfer.inprocess import Background, Models, model_definitions, unwrap_group
from localinfer.runtime.registry import ModelRegistry
from localinfer.server.app import create_app
from localinfer.server.runner import BoundAddress, check_bind_is_safe, open_socket, serve

if TYPE_CHECKING:
    from localinfer.client import Client, SyncClient


@asynccontextmanager
async def _serving(app: Starlette, settings: Settings) -> AsyncIterator[BoundAddress]:
    """Serve for the duration of the block; however the block ends, shut down gracefully.

    An interrupted notebook cell cancels its task. Cancelled mid-request, hypercorn's
    serve dies before the app's shutdown runs (leaving models loaded), so it runs in a
    shielded scope and stops through its shutdown trigger instead: bounded by hypercorn's
    graceful timeout and the registry's drain timeout.
    """
    sock = open_socket(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    stop = anyio.Event()

    async def run() -> None:
        with anyio.CancelScope(shield=True):
            await serve(app, settings, sock=sock, shutdown_trigger=stop.wait)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        try:
            yield BoundAddress(host, port)
        finally:
            stop.set()


class Server:
    """An OpenAI-compatible server running in the caller's event loop."""

    def __init__(
        self,
        models: Models = (),
        *,
        device: str = "auto",
        workers: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        ready_timeout_s: float = 300.0,
        settings: Settings | None = None,
        **setting_overrides: object,
    ):
        self.settings = settings or load_settings(
            host=host, port=port, api_key=api_key, **setting_overrides
        )
        check_bind_is_safe(self.settings)
        self.definitions = model_definitions(
            models, device=device, workers=workers, settings=self.settings
        )
        self.ready_timeout_s = ready_timeout_s
        self.address: BoundAddress | None = None
        self._app: Starlette | None = None
        self._context: AbstractAsyncContextManager[Server] | None = None
        self._background = Background(self._running)

    def __repr__(self) -> str:
        where = self.address.url if self.address else "stopped"
        return f"Server({', '.join(d.name for d in self.definitions)} @ {where})"

    @property
    def url(self) -> str:
        if self.address is None:
            raise RuntimeError("the server is not running")
        return self.address.url

    @property
    def registry(self) -> ModelRegistry:
        """The running models (the same objects the HTTP routes use)."""
        if self._app is None or self.address is None:
            raise RuntimeError("the server is not running")
        registry: ModelRegistry = self._app.state.registry
        return registry

    def client(self, *, timeout: float = 300.0) -> Client:
        """An async client of this server (with its API key, if any)."""
        from localinfer.client import Client

        return Client(self.url, self.settings.api_key_value, timeout=timeout)

    def sync_client(self, *, timeout: float = 300.0) -> SyncClient:
        """A blocking client: for other threads only (it would block this loop)."""
        from localinfer.client import SyncClient

        return SyncClient(self.url, self.settings.api_key_value, timeout=timeout)

    # -- lifecycle -----------------------------------------------------------------------

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[Server]:
        app = create_app(self.definitions, self.settings)
        lifespan_started = anyio.Event()
        inner = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            async with inner(app):
                lifespan_started.set()  # the registry exists and its models are loading
                yield

        app.router.lifespan_context = lifespan
        body_failed = False
        try:
            async with _serving(app, self.settings) as address:
                self._app = app
                with anyio.fail_after(self.ready_timeout_s):
                    await lifespan_started.wait()
                    await app.state.registry.wait_ready()
                self.address = address
                try:
                    yield self
                except BaseException:
                    body_failed = True
                    raise
                finally:
                    self.address = None
        except BaseExceptionGroup as group:
            if body_failed:
                raise
            raise unwrap_group(group) from None  # the server's own failure, not wrapped
        finally:
            self._app = None

    async def __aenter__(self) -> Server:
        if self._context is not None or self._background.running:
            raise RuntimeError("the server is already running")
        context = self._running()
        server = await context.__aenter__()
        self._context = context
        return server

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        context, self._context = self._context, None
        assert context is not None
        return await context.__aexit__(exc_type, exc, tb)

    async def start(self) -> Server:
        """Serve in a background task until :meth:`stop` (asyncio: Jupyter's loop)."""
        if self._context is not None:
            raise RuntimeError("the server is already running")
        await self._background.start()
        return self

    async def stop(self) -> None:
        await self._background.stop()
