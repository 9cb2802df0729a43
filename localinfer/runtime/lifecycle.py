"""Models that come and go while the server runs: loaded on request, unloaded when idle.

- ``load`` / ``unload`` back the management API. An unload waits for the model's
  workers to close their handlers and reports what was freed: how many handler
  objects are gone (weak references, after a collection) and, on CUDA, the device
  memory before and after.
- Keep-alive: a model idle for ``keep_alive_s`` is unloaded; its definition is kept,
  and its next request loads it again.
- On demand: a request naming a catalog model (or a cached repo id) that is not loaded
  loads it, if ``load_on_demand`` is set. The request waits in the model's queue while
  the workers load, so the wait shows in its ``queue_ms``. Only small metadata files
  are read on the loop for this (the resolution); weights load in the worker threads.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup

from localinfer.config import IsolatedPriority, isolation_of
from localinfer.errors import ConfigurationError, ModelNotDownloaded, ModelNotFound, ModelNotReady
from localinfer.hub.model_ids import check_model_id, is_repo_id
from localinfer.plugins import PluginSet
from localinfer.runtime.devices import resolve_devices
from localinfer.runtime.model import ModelDefinition, ServedModel
from localinfer.runtime.registry import ModelRegistry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadDefaults:
    """What a model loaded at run time gets unless the request says otherwise."""

    device: str = "auto"
    workers: int = 1
    max_queue: int = 256
    stream_buffer: int = 1024
    #: the ``isolate`` setting: models whose handlers run in processes of their own
    isolate: tuple[str, ...] = ()
    isolated_priority: IsolatedPriority = "nice"


class CatalogModels:
    """Definitions for models named at run time: catalog aliases and cached repo ids.

    Never a path: names are validated as ids first. Blocking (reads model metadata,
    may import a handler module): call from a thread, except :meth:`on_demand`.
    """

    def __init__(self, plugins: PluginSet, defaults: LoadDefaults):
        self.plugins = plugins
        self.defaults = defaults
        self._default_devices: list[str] | None = None

    def default_devices(self) -> list[str]:
        if self._default_devices is None:
            self._default_devices = resolve_devices(self.defaults.device)
        return self._default_devices

    def knows(self, name: str) -> bool:
        return name in self.plugins.catalog or is_repo_id(name)

    def definition(
        self, name: str, *, device: str | None = None, workers: int | None = None
    ) -> ModelDefinition:
        from localinfer.runtime.resolve import model_definition, resolve

        check_model_id(name)
        if not self.knows(name):
            known = ", ".join(sorted(self.plugins.catalog)) or "none"
            raise ModelNotFound(
                f"{name!r} is neither a catalog alias ({known}) nor an 'org/name' repo id",
                param="model",
            )
        devices = resolve_devices(device) if device else self.default_devices()
        return model_definition(
            resolve(name, self.plugins, allow_paths=False),
            devices=devices,
            workers_per_device=workers or self.defaults.workers,
            max_queue=self.defaults.max_queue,
            stream_buffer=self.defaults.stream_buffer,
            isolation=isolation_of(name, self.defaults.isolate, self.defaults.isolated_priority),
        )


@dataclass(frozen=True)
class UnloadReport:
    model: str
    #: handler objects created for the model, and how many of them still exist
    handlers: int
    handlers_alive: int
    #: per CUDA device: bytes allocated / reserved by torch before and after the unload
    device_memory: dict[str, dict[str, int]] = field(default_factory=dict)
    #: the process's resident memory before and after (CPU memory is rarely handed back
    #: to the OS at once: a drop here is a bonus, the handler count is the proof)
    rss_bytes: dict[str, int] = field(default_factory=dict)
    unload_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "unloaded": True,
            "handlers": self.handlers,
            "handlers_alive": self.handlers_alive,
            "device_memory": self.device_memory,
            "rss_bytes": self.rss_bytes,
            "unload_ms": round(self.unload_ms, 3),
        }


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _device_memory(devices: Sequence[str]) -> dict[str, tuple[int, int]]:
    """torch's allocated / reserved bytes per CUDA device, if torch is in use at all."""
    torch: Any = sys.modules.get("torch")  # never imported here: no torch, no CUDA memory
    if torch is None or not torch.cuda.is_initialized():
        return {}
    return {
        d: (int(torch.cuda.memory_allocated(d)), int(torch.cuda.memory_reserved(d)))
        for d in devices
        if d.startswith("cuda")
    }


def _release_memory(devices: Sequence[str]) -> None:
    gc.collect()
    torch: Any = sys.modules.get("torch")
    if (
        torch is not None
        and torch.cuda.is_initialized()
        and any(d.startswith("cuda") for d in devices)
    ):
        torch.cuda.empty_cache()  # hand cached blocks back to the driver


class ModelLifecycle:
    """Run-time loading and unloading for one registry. ``async with`` it on the loop."""

    def __init__(
        self,
        registry: ModelRegistry,
        models: CatalogModels,
        *,
        keep_alive_s: float | None = None,
        load_on_demand: bool = False,
    ):
        self.registry = registry
        self.models = models
        self.keep_alive_s = keep_alive_s
        self.load_on_demand = load_on_demand
        #: definitions of models unloaded for idleness: their next request reloads them
        self._idle_unloaded: dict[str, ModelDefinition] = {}
        self._task_group: TaskGroup | None = None

    async def __aenter__(self) -> ModelLifecycle:
        if self.load_on_demand:  # the on-demand path must not probe devices on the loop
            await anyio.to_thread.run_sync(self.models.default_devices)
        self.registry.loader = self._definition_on_request
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        if self.keep_alive_s is not None:
            self._task_group.start_soon(self._unload_idle_models, self.keep_alive_s)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self.registry.loader = None
        assert self._task_group is not None
        self._task_group.cancel_scope.cancel()
        return await self._task_group.__aexit__(exc_type, exc, tb)

    # -- explicit load / unload ----------------------------------------------------------

    async def load(
        self,
        name: str,
        *,
        device: str | None = None,
        workers: int | None = None,
        wait: bool = False,
    ) -> tuple[ServedModel, bool]:
        """Load ``name`` (``(model, False)`` if it is already loaded); with ``wait``, until
        its workers are ready — raising :class:`ModelNotReady` if they all fail."""
        check_model_id(name)
        if name in self.registry:
            return self.registry.get(name), False
        self.registry.check_can_load(name)
        definition = await anyio.to_thread.run_sync(
            lambda: self.models.definition(name, device=device, workers=workers)
        )
        if name in self.registry:  # loaded by someone else while this one resolved
            return self.registry.get(name), False
        self._idle_unloaded.pop(name, None)
        model = self.registry.add(definition)
        logger.info("model %s: loading on %s", name, ", ".join(definition.devices))
        if wait:
            await wait_loaded(model)
        return model, True

    async def unload(self, name: str) -> UnloadReport:
        """Stop ``name``'s workers, close its handlers, and report what was freed."""
        model = self.registry.get(name)
        self._idle_unloaded.pop(name, None)
        return await self._unload(model)

    async def _unload(self, model: ServedModel) -> UnloadReport:
        name, devices = model.name, model.definition.devices
        started = time.perf_counter()
        refs = list(model.handler_refs)
        before = await anyio.to_thread.run_sync(_device_memory, devices)
        rss_before = _rss_bytes()
        await self.registry.remove(name)
        await anyio.to_thread.run_sync(_release_memory, devices)
        after = await anyio.to_thread.run_sync(_device_memory, devices)
        rss_after = _rss_bytes()
        return UnloadReport(
            model=name,
            handlers=len(refs),
            handlers_alive=sum(ref() is not None for ref in refs),
            device_memory={
                d: {
                    "allocated_before": before[d][0],
                    "allocated_after": after.get(d, (0, 0))[0],
                    "reserved_before": before[d][1],
                    "reserved_after": after.get(d, (0, 0))[1],
                }
                for d in before
            },
            rss_bytes=(
                {"before": rss_before, "after": rss_after}
                if rss_before is not None and rss_after is not None
                else {}
            ),
            unload_ms=(time.perf_counter() - started) * 1e3,
        )

    # -- on demand and keep-alive --------------------------------------------------------

    def _definition_on_request(self, name: str) -> ModelDefinition | None:
        """The registry's hook for a request naming a model that is not loaded."""
        remembered = self._idle_unloaded.pop(name, None)
        if remembered is not None:
            logger.info("model %s: reloading on request", name)
            return remembered
        if not self.load_on_demand or not self.models.knows(name):
            return None
        try:
            definition = self.models.definition(name)
        except ModelNotDownloaded:
            raise
        except (ModelNotFound, ConfigurationError) as exc:
            logger.info("model %s: not loadable on demand: %s", name, exc.message)
            return None
        logger.info("model %s: loading on demand", name)
        return definition

    async def _unload_idle_models(self, keep_alive_s: float) -> None:
        interval = min(max(keep_alive_s / 4, 0.05), 5.0)
        while True:
            await anyio.sleep(interval)
            now = time.monotonic()
            for model in self.registry:
                idle = (
                    model.stats.in_flight == 0
                    and model.queue.depth == 0
                    and (model.ready or not model.can_serve)
                    and now - model.last_used >= keep_alive_s
                )
                still_served = (
                    model.name in self.registry and self.registry.get(model.name) is model
                )
                if idle and still_served:  # (an earlier unload in this round may have awaited)
                    self._idle_unloaded[model.name] = model.definition
                    report = await self._unload(model)
                    logger.info(
                        "model %s: unloaded after %.0f s idle (%d handler(s) released)",
                        model.name,
                        keep_alive_s,
                        report.handlers - report.handlers_alive,
                    )


async def wait_loaded(model: ServedModel) -> None:
    """Wait until every worker of ``model`` has loaded; raise if none can serve."""
    while not model.ready:
        if not model.can_serve:
            errors = "; ".join(sorted({w.error for w in model.workers if w.error}))
            raise ModelNotReady(f"model {model.name!r} failed to load: {errors or 'stopped'}")
        await model.wait_changed()
