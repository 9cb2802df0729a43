"""Unloading frees what a model held: its handlers, and its GPU memory on CUDA."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from localinfer.plugins import PluginSet
from localinfer.runtime.lifecycle import CatalogModels, LoadDefaults, ModelLifecycle, wait_loaded
from localinfer.runtime.registry import ModelRegistry
from localinfer.runtime.targets import user_code_definition

pytestmark = pytest.mark.anyio

MIB = 1024 * 1024


@asynccontextmanager
async def lifecycle(device: str) -> AsyncIterator[tuple[ModelRegistry, ModelLifecycle]]:
    async with (
        ModelRegistry(drain_timeout_s=5) as registry,
        ModelLifecycle(registry, CatalogModels(PluginSet(), LoadDefaults(device=device))) as life,
    ):
        yield registry, life


class Ballast:
    """A model whose weights are one big buffer."""

    def setup(self, device: str) -> None:
        if device.startswith("cuda"):
            import torch

            self.weights: Any = torch.ones(256 * MIB, dtype=torch.uint8, device=device)
        else:
            self.weights = bytearray(64 * MIB)

    def infer(self) -> int:
        return len(self.weights)


async def test_unload_releases_every_handler() -> None:
    async with lifecycle("cpu") as (registry, life):
        model = registry.add(user_code_definition(Ballast, devices=["cpu"], workers_per_device=2))
        await wait_loaded(model)
        refs = list(model.handler_refs)
        assert len(refs) == 2 and all(ref() is not None for ref in refs)
        del model

        report = await life.unload("Ballast")

    assert (report.handlers, report.handlers_alive) == (2, 0)
    assert report.device_memory == {}
    gc.collect()
    assert all(ref() is None for ref in refs)


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_available(), reason="needs a CUDA device")
async def test_unload_hands_cuda_memory_back() -> None:
    async with lifecycle("cuda:0") as (registry, life):
        model = registry.add(user_code_definition(Ballast, devices=["cuda:0"]))
        await wait_loaded(model)
        report = await life.unload(model.name)

    memory = report.device_memory["cuda:0"]
    assert memory["allocated_before"] >= 256 * MIB
    assert memory["allocated_after"] <= memory["allocated_before"] - 256 * MIB
    assert memory["reserved_after"] <= memory["reserved_before"] - 256 * MIB  # empty_cache ran
    assert report.handlers_alive == 0
