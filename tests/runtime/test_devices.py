from __future__ import annotations

import subprocess
import sys

import pytest

from localinfer.errors import ConfigurationError
from localinfer.runtime import devices
from localinfer.runtime.devices import resolve_devices


def test_cpu_and_lists() -> None:
    assert resolve_devices("cpu") == ["cpu"]
    assert resolve_devices(["cpu", "cpu"]) == ["cpu"]
    assert resolve_devices(" CPU ") == ["cpu"]


def test_auto_without_gpu_is_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "_cuda_count", lambda: 0)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)
    assert resolve_devices("auto") == ["cpu"]


def test_auto_and_cuda_with_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "_cuda_count", lambda: 2)
    assert resolve_devices("auto") == ["cuda:0", "cuda:1"]
    assert resolve_devices("cuda") == ["cuda:0", "cuda:1"]
    assert resolve_devices("cuda:1,cpu") == ["cuda:1", "cpu"]
    with pytest.raises(ConfigurationError, match="only 2 CUDA device"):
        resolve_devices("cuda:2")


def test_missing_or_unknown_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "_cuda_count", lambda: 0)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)
    with pytest.raises(ConfigurationError, match="no CUDA device"):
        resolve_devices("cuda")
    with pytest.raises(ConfigurationError, match="MPS is not available"):
        resolve_devices("mps")
    with pytest.raises(ConfigurationError, match="unknown device 'tpu'"):
        resolve_devices("tpu")
    with pytest.raises(ConfigurationError, match="no device"):
        resolve_devices(",")


def test_a_gpu_driver_is_looked_for_before_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices.sys, "platform", "linux")
    monkeypatch.setattr(devices.os.path, "exists", lambda path: False)
    assert devices.gpu_driver_absent() and devices._cuda_count() == 0
    monkeypatch.setattr(devices.os.path, "exists", lambda path: path == "/dev/nvidiactl")
    assert not devices.gpu_driver_absent()  # then torch counts the devices, as before
    monkeypatch.setattr(devices.sys, "platform", "win32")
    assert not devices.gpu_driver_absent()  # no such nodes to look at: torch decides


def test_auto_on_a_machine_without_a_gpu_driver_leaves_torch_unloaded() -> None:
    if not devices.gpu_driver_absent():
        pytest.skip("this machine has a GPU driver: torch counts its devices")
    code = (
        "import sys; from localinfer.runtime.devices import resolve_devices; "
        "print(resolve_devices('auto'), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["['cpu']", "False"]  # libgomp not loaded by the device count
