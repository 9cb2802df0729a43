"""What the server's machine is doing, for ``/v1/stats``: CPU and RAM, and each GPU.

The TUI may watch a remote server, so these numbers are read here, on the server, not
where the TUI runs. GPUs come from NVML (``nvidia-ml-py``, optional) when it can be
imported: utilisation, memory and temperature of the whole device, whoever uses it.
Without it, torch's own counters (when torch is already loaded) give the memory this
process holds on each device; utilisation and temperature are then unknown (``None``).
CPU and RAM come from psutil. Every call here is quick (no sampling interval, no
subprocess), but it touches the OS and drivers, so the route runs it in a thread.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import threading
from functools import lru_cache
from typing import Any

logger = logging.getLogger(__name__)

_nvml_lock = threading.Lock()


def device_telemetry() -> list[dict[str, Any]]:
    """One entry per device: the CPU first, then the GPUs."""
    devices = [_cpu()]
    gpus = _nvml_gpus()
    devices += gpus if gpus is not None else _torch_gpus()
    return devices


def _entry(
    name: str,
    kind: str,
    description: str,
    *,
    source: str,
    utilization: float | None = None,
    used: int | None = None,
    total: int | None = None,
    temperature: float | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "kind": kind,
        "description": description,
        "utilization_percent": utilization,
        "memory_used_bytes": used,
        "memory_total_bytes": total,
        "temperature_c": temperature,
        "source": source,
    }


# -- CPU and RAM -----------------------------------------------------------------------------


def _cpu() -> dict[str, Any]:
    cores = os.cpu_count() or 1
    description = f"{platform.machine() or 'cpu'} · {cores} cores"
    try:
        import psutil
    except ImportError:  # a core dependency, but a missing one must not break /v1/stats
        return _entry("cpu", "cpu", description, source="none")
    # interval=None: the use since the previous call (no sleeping); the first call says 0
    memory = psutil.virtual_memory()
    return _entry(
        "cpu",
        "cpu",
        description,
        source="psutil",
        utilization=float(psutil.cpu_percent(interval=None)),
        used=int(memory.total - memory.available),
        total=int(memory.total),
    )


# -- GPUs through NVML -----------------------------------------------------------------------


@lru_cache(maxsize=1)
def _nvml() -> Any | None:
    """The initialised ``pynvml`` module, or None without the package or a driver."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        logger.debug("NVML unavailable: %s", exc)
        return None
    return pynvml


def _visible_indices(nvml: Any, count: int) -> list[int]:
    """NVML indices of the GPUs this process sees, in CUDA order (``CUDA_VISIBLE_DEVICES``:
    physical indices or UUIDs; NVML itself always counts every GPU of the machine)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return list(range(count))
    uuids: dict[str, int] = {}
    chosen: list[int] = []
    for part in (p.strip() for p in visible.split(",")):
        if not part:
            continue
        if part.isdigit():
            if int(part) >= count:
                break  # CUDA stops at the first invalid entry
            chosen.append(int(part))
            continue
        if not uuids:
            for index in range(count):
                uuid = nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(index))
                uuids[uuid.decode() if isinstance(uuid, bytes) else str(uuid)] = index
        match = next((i for u, i in uuids.items() if u.startswith(part)), None)
        if match is None:
            break
        chosen.append(match)
    return chosen


def _nvml_gpus() -> list[dict[str, Any]] | None:
    nvml = _nvml()
    if nvml is None:
        return None
    with _nvml_lock:
        try:
            indices = _visible_indices(nvml, int(nvml.nvmlDeviceGetCount()))
        except Exception as exc:
            logger.debug("NVML cannot list devices: %s", exc)
            return None
        return [_nvml_gpu(nvml, cuda_index, index) for cuda_index, index in enumerate(indices)]


def _nvml_gpu(nvml: Any, cuda_index: int, index: int) -> dict[str, Any]:
    def read(call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except Exception:  # one counter a GPU does not support: that field is unknown
            return None

    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    name = read(nvml.nvmlDeviceGetName, handle) or "GPU"
    rates = read(nvml.nvmlDeviceGetUtilizationRates, handle)
    memory = read(nvml.nvmlDeviceGetMemoryInfo, handle)
    temperature = read(nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU)
    return _entry(
        f"cuda:{cuda_index}",
        "cuda",
        name.decode() if isinstance(name, bytes) else str(name),
        source="nvml",
        utilization=None if rates is None else float(rates.gpu),
        used=None if memory is None else int(memory.used),
        total=None if memory is None else int(memory.total),
        temperature=None if temperature is None else float(temperature),
    )


# -- GPUs through torch ----------------------------------------------------------------------


def _torch_gpus() -> list[dict[str, Any]]:
    """torch's counters, only when a handler has already imported torch (never imported
    here: that would cost seconds, and a server without torch has no torch devices)."""
    torch: Any = sys.modules.get("torch")
    if torch is None:
        return []
    devices: list[dict[str, Any]] = []
    try:
        if torch.cuda.is_available():
            for index in range(torch.cuda.device_count()):
                devices.append(
                    _entry(
                        f"cuda:{index}",
                        "cuda",
                        str(torch.cuda.get_device_name(index)),
                        source="torch",
                        # what this process holds (torch cannot see other processes)
                        used=int(torch.cuda.memory_reserved(index)),
                        total=int(torch.cuda.get_device_properties(index).total_memory),
                    )
                )
        elif torch.backends.mps.is_available():
            devices.append(
                _entry(
                    "mps",
                    "mps",
                    "Apple GPU (unified memory)",
                    source="torch",
                    used=int(torch.mps.driver_allocated_memory()),
                )
            )
    except Exception as exc:  # a driver error reads as "no numbers", never as a failed route
        logger.debug("torch device counters unavailable: %s", exc)
    return devices
