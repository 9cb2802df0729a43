"""``LightServer``: serve your own objects from Python in one line.

``LightServer([model_a, model_b]).run()`` serves instances of one class as replicas,
one worker thread per instance; objects of different classes become separate models.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette

from localinfer.config import Settings, load_settings
from localinfer.log import configure_logging
from localinfer.runtime.model import ModelDefinition
from localinfer.runtime.targets import default_name, user_code_definition
from localinfer.server.app import create_app
from localinfer.server.runner import BoundAddress, run, serving


def _group_replicas(models: Any) -> list[Any]:
    """A list of same-class instances is one model with replicas; mixed classes are separate."""
    if not isinstance(models, list | tuple):
        return [models]
    groups: dict[str, list[Any]] = {}
    for obj in models:
        groups.setdefault(default_name(obj), []).append(obj)
    return [group if len(group) > 1 else group[0] for group in groups.values()]


class LightServer:
    """Serve objects with an ``infer`` method (or LitAPI hooks) over HTTP."""

    def __init__(
        self,
        models: Any,
        *,
        name: str | None = None,
        devices: Sequence[str] = ("cpu",),
        workers: int = 1,
        max_batch_size: int | None = None,
        batch_timeout_s: float | None = None,
        settings: Settings | None = None,
        **setting_overrides: Any,
    ):
        self.settings = settings or load_settings(**setting_overrides)
        targets = _group_replicas(models)
        if name is not None and len(targets) != 1:
            raise ValueError("name= applies to a single model")
        self.definitions: list[ModelDefinition] = [
            user_code_definition(
                target,
                name=name,
                devices=devices,
                workers_per_device=workers,
                max_batch_size=max_batch_size,
                batch_timeout_s=batch_timeout_s,
                max_queue=self.settings.max_queue,
                stream_buffer=self.settings.stream_buffer,
            )
            for target in targets
        ]

    def app(self) -> Starlette:
        return create_app(self.definitions, self.settings)

    def run(self) -> None:
        """Serve until interrupted (blocks)."""
        configure_logging(self.settings.log_level)
        run(self.app(), self.settings)

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[BoundAddress]:
        """Serve inside the running event loop for the duration of the block."""
        async with serving(self.app(), self.settings) as address:
            yield address
