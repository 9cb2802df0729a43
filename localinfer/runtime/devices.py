"""Turn a device request (``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``mps``, a list) into devices."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from collections.abc import Sequence

from localinfer.errors import ConfigurationError

_CUDA_INDEX = re.compile(r"^cuda:(\d+)$")


#: on Linux, what a GPU driver that torch can use leaves behind: NVIDIA's, WSL's, ROCm's
GPU_DRIVER_NODES = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/dxg", "/dev/kfd")


def gpu_driver_absent() -> bool:
    """Linux with no GPU driver at all: no CUDA device to count, so torch need not load
    (importing it loads libgomp, which reads how OpenMP threads wait once: see
    :func:`localinfer.openmp.fit_to_engines`; and takes a second or two)."""
    return sys.platform == "linux" and not any(os.path.exists(p) for p in GPU_DRIVER_NODES)


def _cuda_count() -> int:
    if importlib.util.find_spec("torch") is None or gpu_driver_absent():
        return 0
    import torch

    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def _mps_available() -> bool:
    if sys.platform != "darwin" or importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.backends.mps.is_available())


def resolve_devices(request: str | Sequence[str]) -> list[str]:
    """Resolve a device request to concrete device names, checking that they exist.

    ``auto`` means every CUDA device, else MPS, else the CPU. A comma-separated string
    and a sequence are both accepted as lists.
    """
    parts = request.split(",") if isinstance(request, str) else list(request)
    parts = [p.strip().lower() for p in parts if p.strip()]
    if not parts:
        raise ConfigurationError("no device given", param="device")
    devices: list[str] = []
    for part in parts:
        devices.extend(_resolve_one(part))
    # keep order, drop repeats
    return list(dict.fromkeys(devices))


def _resolve_one(part: str) -> list[str]:
    if part == "cpu":
        return ["cpu"]
    if part == "auto":
        count = _cuda_count()
        if count:
            return [f"cuda:{i}" for i in range(count)]
        return ["mps"] if _mps_available() else ["cpu"]
    if part == "cuda":
        count = _cuda_count()
        if not count:
            raise ConfigurationError("device 'cuda' requested but no CUDA device is available")
        return [f"cuda:{i}" for i in range(count)]
    match = _CUDA_INDEX.match(part)
    if match:
        index, count = int(match.group(1)), _cuda_count()
        if index >= count:
            raise ConfigurationError(
                f"device {part!r} requested but only {count} CUDA device(s) are available"
            )
        return [part]
    if part == "mps":
        if not _mps_available():
            raise ConfigurationError("device 'mps' requested but MPS is not available")
        return ["mps"]
    raise ConfigurationError(
        f"unknown device {part!r}: use auto, cpu, cuda, cuda:N, mps or a comma-separated list",
        param="device",
    )
