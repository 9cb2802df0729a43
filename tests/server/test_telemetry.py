"""Device telemetry for ``/v1/stats``: NVML when importable (a fake one here), torch's
counters otherwise, psutil for the CPU; and the route serving it with the model stats."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import localinfer
from localinfer import openmp
from localinfer.handlers.base import CacheUsage, Handler
from localinfer.runtime.definition import ModelDefinition
from localinfer.server import telemetry
from localinfer.server.app import create_app, local_registry
from tests import models
from tests.client.fakes import SlowChat
from tests.support import ThreadedServer, define, running_server, settings


class FakeNVML(types.ModuleType):
    """Two GPUs; the second cannot report its temperature."""

    NVML_TEMPERATURE_GPU = 0

    class NVMLError(Exception):
        pass

    def __init__(self) -> None:
        super().__init__("pynvml")
        self.initialised = 0

    def nvmlInit(self) -> None:
        self.initialised += 1

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUUID(self, handle: int) -> bytes:
        return f"GPU-{handle}aaaa".encode()

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        return b"NVIDIA Fake 80GB"

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        return types.SimpleNamespace(gpu=30 + handle, memory=5)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return types.SimpleNamespace(used=(handle + 1) * 10**9, total=80 * 10**9, free=0)

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        if handle == 1:
            raise self.NVMLError("not supported")
        return 40


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNVML]:
    fake = FakeNVML()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    telemetry._nvml.cache_clear()
    yield fake
    telemetry._nvml.cache_clear()


def test_the_cpu_comes_first_with_ram_from_psutil() -> None:
    cpu = telemetry.device_telemetry()[0]
    assert (cpu["name"], cpu["kind"], cpu["source"]) == ("cpu", "cpu", "psutil")
    assert 0 < cpu["memory_used_bytes"] < cpu["memory_total_bytes"]
    assert 0.0 <= cpu["utilization_percent"] <= 100.0


def test_gpus_from_nvml(nvml: FakeNVML) -> None:
    _, first, second = telemetry.device_telemetry()
    assert first == {
        "name": "cuda:0",
        "kind": "cuda",
        "description": "NVIDIA Fake 80GB",
        "utilization_percent": 30.0,
        "memory_used_bytes": 10**9,
        "memory_total_bytes": 80 * 10**9,
        "temperature_c": 40.0,
        "source": "nvml",
    }
    assert second["name"] == "cuda:1" and second["temperature_c"] is None  # unsupported
    telemetry.device_telemetry()
    assert nvml.initialised == 1  # once per process


@pytest.mark.parametrize(("visible", "expected"), [("1", [1]), ("GPU-1", [1]), ("1,0", [1, 0]),
                                                   ("", []), ("0,7,1", [0])])  # fmt: skip
def test_cuda_visible_devices_names_gpus_as_cuda_does(
    nvml: FakeNVML, monkeypatch: pytest.MonkeyPatch, visible: str, expected: list[int]
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    gpus = telemetry.device_telemetry()[1:]
    assert [g["name"] for g in gpus] == [f"cuda:{i}" for i in range(len(expected))]
    assert [g["memory_used_bytes"] for g in gpus] == [(i + 1) * 10**9 for i in expected]


def test_without_nvml_or_a_gpu_only_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    telemetry._nvml.cache_clear()
    try:
        devices = telemetry.device_telemetry()
    finally:
        telemetry._nvml.cache_clear()
    import torch

    if not torch.cuda.is_available():
        assert [d["name"] for d in devices] == ["cpu"]


@pytest.mark.anyio
async def test_stats_carry_devices_task_and_tokens_per_second() -> None:
    server = localinfer.Server({"chat": SlowChat(delay_s=0.0)}, device="cpu")
    async with server, server.client() as client:
        await client.chat("hi", max_tokens=5)
        stats = await client.stats()
    assert stats.devices[0].name == "cpu" and stats.devices[0].memory_total_bytes
    chat = stats["chat"]
    assert chat.task == "chat" and chat.succeeded == 1
    assert chat.tokens_per_second is not None and chat.tokens_per_second > 0
    assert chat.raw["chunks_per_second"] == chat.tokens_per_second  # the old keys stay
    assert stats.openmp == openmp.describe()  # how this process's OpenMP threads wait


def test_stats_name_the_openmp_wait_only_where_the_models_run() -> None:
    ingress = create_app([], settings(), registry_factory=local_registry)  # as Ray's ingress
    assert ingress.state.models_run_here is False
    with ThreadedServer([define(models.Echo)]) as server:
        assert httpx.get(server.url + "/v1/stats").json()["openmp"] == openmp.describe()
        server.app.state.models_run_here = False  # its models elsewhere: their wait, not ours
        assert httpx.get(server.url + "/v1/stats").json()["openmp"] is None


class Remembering(Handler):
    """Keeps 10 bytes per input served, in a cache bounded at 100 bytes per worker."""

    def __init__(self, broken: bool = False) -> None:
        self.kept = 0
        self.broken = broken

    def run_batch(self, inputs: list[Any]) -> list[Any]:
        self.kept = min(100, self.kept + 10 * len(inputs))
        return inputs

    def cache_usage(self) -> dict[str, CacheUsage]:
        if self.broken:
            raise RuntimeError("no numbers today")
        return {"answers": CacheUsage(bytes=self.kept, limit_bytes=100, entries=self.kept // 10)}


@pytest.mark.anyio
async def test_stats_sum_each_cache_over_the_workers_and_survive_a_broken_one() -> None:
    kept = ModelDefinition(
        name="kept", create_handler=lambda i, d: Remembering(), workers_per_device=2
    )
    broken = ModelDefinition(name="broken", create_handler=lambda i, d: Remembering(True))
    async with running_server([kept, broken]) as client:
        for _ in range(3):
            assert (await client.post("/v1/infer/kept", json={"args": [1]})).status_code == 200
        assert (await client.post("/v1/infer/broken", json={"args": [1]})).status_code == 200
        models = (await client.get("/v1/stats")).json()["models"]
    assert models["kept"]["caches"] == {"answers": {"bytes": 30, "limit_bytes": 200, "entries": 3}}
    assert models["broken"]["caches"] == {}
    assert models["broken"]["succeeded"] == 1
