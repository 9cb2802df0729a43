"""The full HTTP server inside the running event loop (``localinfer.Server`` adds the
clients to it in the face layer, :mod:`localinfer.embedded`).

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

import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol, Self

import anyio
import anyio.lowlevel
from starlette.applications import Starlette

from localinfer.config import Settings, load_settings
from localinfer.inprocess import InProcessService, Models, model_definitions, unwrap_group
from localinfer.runtime.registry import ModelRegistry
from localinfer.server.app import create_app
from localinfer.server.runner import BoundAddress, check_bind_is_safe, serving


class Closable(Protocol):
    """Something that lives only as long as the server: a client of it, say."""

    async def aclose(self) -> None: ...


class EmbeddedServer(InProcessService):
    """An OpenAI-compatible server running in the caller's event loop. It knows nothing of
    the clients (a face above it): they register with :meth:`close_with_server`."""

    kind = "server"

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
        super().__init__()
        self._closables: weakref.WeakSet[Closable] = weakref.WeakSet()
        self._loop: object | None = None  # the loop serving, once running

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

    @property
    def loop(self) -> object | None:
        """The event loop serving (its native object), once running."""
        return self._loop

    def close_with_server(self, closable: Closable) -> None:
        """Close ``closable`` when the server stops (held weakly: it may go first)."""
        self._closables.add(closable)

    async def _close_closables(self) -> None:
        closables, self._closables = list(self._closables), weakref.WeakSet()
        for closable in closables:
            await closable.aclose()

    # -- lifecycle -----------------------------------------------------------------------

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[Self]:
        app = create_app(self.definitions, self.settings)
        self._loop = anyio.lowlevel.current_token().native_token
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
            async with serving(app, self.settings) as address:
                self._app = app
                with anyio.move_on_after(self.ready_timeout_s) as waiting:
                    await lifespan_started.wait()
                    await app.state.registry.wait_ready()
                if waiting.cancelled_caught:
                    raise TimeoutError(f"the models did not load within {self.ready_timeout_s:g} s")
                self.address = address
                try:
                    yield self
                except BaseException:
                    body_failed = True
                    raise
                finally:
                    self.address = None
                    with anyio.CancelScope(shield=True):
                        await self._close_closables()
        except BaseExceptionGroup as group:
            if body_failed:
                raise
            raise unwrap_group(group) from None  # the server's own failure, not wrapped
        finally:
            self._app = None
