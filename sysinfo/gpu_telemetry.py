"""NVIDIA GPU telemetry through NVML (nvidia-ml-py): which GPU, and what a case used of it.

Everything here degrades to a reason, never to an error: NVML is absent on most machines (no driver, or the
`gpu` extra not installed), and a benchmark must not fail because telemetry could not be read. Readings are
the driver's own: utilisation is its sampled "percent of time a kernel ran" (over its own ~1/6 s to 1 s
window), memory is what the driver accounts to this process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import threading
import time
from typing import Any

SAMPLE_INTERVAL_S = 0.05


@functools.cache
def nvml() -> tuple[Any | None, str]:
    """(the initialised pynvml module, "") or (None, why not)."""
    try:
        import pynvml
    except ImportError:
        return None, "nvidia-ml-py is not installed (pip install accelbench[gpu])"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...
        return None, f"NVML did not start: {type(exc).__name__}: {exc}"
    return pynvml, ""


def nvidia_driver_status() -> str:
    """One phrase on the NVIDIA driver, for reasons: found (with its version where NVML answers) or missing.

    libcuda.so.1 is the driver's user-space library every CUDA runtime loads; its absence is the most common
    reason a CUDA backend cannot run, and a different fix (install the driver) from a missing Python package.
    """
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        if ctypes.util.find_library("cuda") is None:
            return "no NVIDIA driver here (libcuda.so.1 not found)"
    env = gpu_environment()
    if env["devices"]:
        names = ", ".join(d["name"] for d in env["devices"])
        return f"NVIDIA driver {env['driver_version']} (CUDA {env['cuda_driver_version']}) with {names}"
    return f"NVIDIA driver library present; {env['nvml']}" if env["nvml"] != "ok" else "NVIDIA driver, no GPU"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def gpu_environment() -> dict[str, Any]:
    """For env.json: every NVIDIA GPU with its name, memory and the driver and CUDA driver versions."""
    lib, why_not = nvml()
    if lib is None:
        return {"nvml": why_not, "devices": []}
    try:
        cuda = lib.nvmlSystemGetCudaDriverVersion_v2()
        devices = []
        for index in range(lib.nvmlDeviceGetCount()):
            handle = lib.nvmlDeviceGetHandleByIndex(index)
            devices.append({"index": index, "name": _text(lib.nvmlDeviceGetName(handle)),
                            "memory_mb": lib.nvmlDeviceGetMemoryInfo(handle).total / 2**20,
                            "uuid": _text(lib.nvmlDeviceGetUUID(handle))})
        return {"nvml": "ok", "driver_version": _text(lib.nvmlSystemGetDriverVersion()),
                "cuda_driver_version": f"{cuda // 1000}.{cuda % 1000 // 10}", "devices": devices}
    except Exception as exc:
        return {"nvml": f"NVML query failed: {type(exc).__name__}: {exc}", "devices": []}


def gpu_identity(index: int = 0) -> dict[str, Any]:
    """For a session's backend_info: the GPU it ran on, in a few fields."""
    env = gpu_environment()
    device = next((d for d in env["devices"] if d["index"] == index), None)
    if device is None:
        return {"gpu": None, "gpu_telemetry": env["nvml"]}
    return {"gpu": device["name"], "gpu_driver": env.get("driver_version"),
            "cuda_driver": env.get("cuda_driver_version")}


class GpuSampler:
    """Samples GPU utilisation and this process's GPU memory on a thread while a block runs.

    `result()` is {"gpu_util_mean_pct", "gpu_util_max_pct", "gpu_memory_peak_mb", "samples"} or
    {"unavailable": reason}. The thread sleeps between samples, so it costs the measured loop next to nothing.
    """
    def __init__(self, index: int = 0, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self._index, self._interval = index, interval_s
        self._utilisation: list[float] = []
        self._memory: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._why_not = ""

    def __enter__(self) -> GpuSampler:
        lib, self._why_not = nvml()
        if lib is None:
            return self
        try:
            handle = lib.nvmlDeviceGetHandleByIndex(self._index)
        except Exception as exc:
            self._why_not = f"no GPU {self._index}: {exc}"
            return self
        self._thread = threading.Thread(target=self._sample, args=(lib, handle), daemon=True)
        self._thread.start()
        return self

    def _sample(self, lib: Any, handle: Any) -> None:
        pid = os.getpid()
        while not self._stop.is_set():
            try:
                self._utilisation.append(float(lib.nvmlDeviceGetUtilizationRates(handle).gpu))
                mine = [p.usedGpuMemory for p in lib.nvmlDeviceGetComputeRunningProcesses(handle)
                        if p.pid == pid and p.usedGpuMemory is not None]
                if mine:
                    self._memory.append(sum(mine) / 2**20)
            except Exception as exc:  # a sample that fails ends sampling, with the reason kept
                self._why_not = f"NVML sampling failed: {type(exc).__name__}: {exc}"
                return
            time.sleep(self._interval)

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def result(self) -> dict[str, Any]:
        if not self._utilisation:
            return {"unavailable": self._why_not or "no sample was taken"}
        return {"gpu_util_mean_pct": sum(self._utilisation) / len(self._utilisation),
                "gpu_util_max_pct": max(self._utilisation),
                "gpu_memory_peak_mb": max(self._memory) if self._memory else None,
                "samples": len(self._utilisation)}
