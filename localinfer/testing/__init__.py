"""Helpers for testing handlers and plugins before they are published.

- :class:`RecordingItem`: a :class:`~localinfer.handlers.base.WorkItem` that records what a
  handler emits, so ``handler.process([item])`` runs in a plain unit test, no runtime.
- :func:`catalog_definition`: the model definition of a catalog alias from an installed
  plugin (``pip install -e .`` is enough to install it).
- :func:`serve`: a live server on a free port for the duration of an ``async with``,
  with an ``httpx`` client bound to it (``httpx`` is a test dependency).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from localinfer.runtime.model import ModelDefinition


class RecordingItem:
    """A work item for unit tests: ``chunks``, ``result`` and ``error`` show what happened.

    ``cancel_after=n`` turns ``cancelled`` true once ``n`` chunks were emitted, the way a
    client that goes away mid-stream does.
    """

    def __init__(self, payload: Any, *, request_id: str = "test", cancel_after: int | None = None):
        self._payload = payload
        self._request_id = request_id
        self._cancel_after = cancel_after
        self.chunks: list[Any] = []
        self.result: Any = None
        self.error: BaseException | None = None
        self._done = False
        self._cancelled = False

    @property
    def payload(self) -> Any:
        return self._payload

    @property
    def request_id(self) -> str:
        return self._request_id

    @property
    def cancelled(self) -> bool:
        return self._cancelled or (
            self._cancel_after is not None and len(self.chunks) >= self._cancel_after
        )

    def cancel(self) -> None:
        self._cancelled = True

    @property
    def done(self) -> bool:
        return self._done

    def emit(self, chunk: Any) -> None:
        if self._done:
            raise RuntimeError("emit() after the item finished")
        self.chunks.append(chunk)

    def finish(self, result: Any = None) -> None:
        if self._done:
            raise RuntimeError("finish() called twice")
        self._done = True
        self.result = result

    def fail(self, error: BaseException) -> None:
        if not self._done:
            self._done = True
            self.error = error


def catalog_definition(
    alias: str, *, options: dict[str, Any] | None = None, **kwargs: Any
) -> ModelDefinition:
    """The definition of catalog entry ``alias`` (any installed plugin's), its handler
    ``options`` overridden; ``kwargs`` go to
    :func:`~localinfer.runtime.resolve.model_definition` (``workers_per_device``, ...)."""
    from localinfer.plugins import discover
    from localinfer.runtime.resolve import model_definition, resolve

    return model_definition(resolve(alias, discover(), options=options), **kwargs)


@asynccontextmanager
async def serve(
    definitions: Sequence[ModelDefinition], *, ready_timeout_s: float = 60.0, **settings: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """Serve ``definitions`` on 127.0.0.1 (a free port) and yield a client for it, once
    every model has loaded. ``settings`` override :class:`~localinfer.config.Settings`."""
    import anyio
    import httpx

    from localinfer.config import Settings
    from localinfer.server.app import create_app
    from localinfer.server.runner import serving

    config = Settings(**{"host": "127.0.0.1", "port": 0, "drain_timeout_s": 2.0, **settings})
    app = create_app(definitions, config)
    async with (
        serving(app, config) as address,
        httpx.AsyncClient(base_url=address.url, timeout=30) as client,
    ):
        with anyio.fail_after(ready_timeout_s):
            while (await client.get("/ready")).status_code != 200:
                health = (await client.get("/health")).json()["models"]
                failed = [w["error"] for m in health.values() for w in m["workers"] if w["error"]]
                if failed:
                    raise RuntimeError(f"models failed to load: {failed}")
                await anyio.sleep(0.02)
        yield client
