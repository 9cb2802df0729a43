"""Run a real localinfer server (hypercorn) inside the test's event loop, on a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx

from localinfer.config import Settings
from localinfer.runtime.model import ModelDefinition
from localinfer.runtime.targets import user_code_definition
from localinfer.server.app import create_app
from localinfer.server.runner import serving


def settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "drain_timeout_s": 2.0}
    base.update(overrides)
    return Settings(**base)


@asynccontextmanager
async def running_server(
    definitions: Sequence[ModelDefinition],
    *,
    wait_ready: bool = True,
    headers: dict[str, str] | None = None,
    **setting_overrides: Any,
) -> AsyncIterator[httpx.AsyncClient]:
    """A client bound to a live server serving ``definitions``."""
    app = create_app(definitions, settings(**setting_overrides))
    async with (
        serving(app, app.state.settings) as address,
        httpx.AsyncClient(base_url=address.url, timeout=30, headers=headers) as client,
    ):
        if wait_ready:
            with anyio.fail_after(30):
                while (await client.get("/ready")).status_code != 200:
                    await anyio.sleep(0.02)
        yield client


def define(target: Any, **kwargs: Any) -> ModelDefinition:
    return user_code_definition(target, **kwargs)


async def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.01) -> None:
    """Wait for ``predicate()`` (sync or async) to be true."""
    with anyio.fail_after(timeout):
        while True:
            value = predicate()
            if hasattr(value, "__await__"):
                value = await value
            if value:
                return
            await anyio.sleep(interval)
