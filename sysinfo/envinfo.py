"""The machine and software a run was measured on: numbers from different fingerprints are not comparable."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psutil

from sysinfo.gpu_telemetry import gpu_environment

LIBRARIES = ("accelbench", "numpy", "ai-edge-litert", "onnxruntime", "onnxruntime-gpu", "onnx", "tensorflow-cpu",
             "tensorflow", "keras", "tf2onnx", "tensorrt")
REPO_ROOT = Path(__file__).resolve().parent.parent


def _gpus() -> dict[str, Any] | None:
    """NVIDIA GPUs with driver and CUDA versions (part of the fingerprint: numbers from another GPU or driver
    are not comparable); None where NVML is not there to ask."""
    env = gpu_environment()
    if not env["devices"]:
        return None
    return {"driver_version": env["driver_version"], "cuda_driver_version": env["cuda_driver_version"],
            "devices": [{"name": d["name"], "memory_mb": d["memory_mb"]} for d in env["devices"]]}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


def git_info(root: Path = REPO_ROOT) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {}
    return {"id": commit, "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
            "time": git("show", "-s", "--format=%cI", "HEAD"),
            "author_time": git("show", "-s", "--format=%aI", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


MACHINE_KEYS = ("cpu_model", "cpu_logical", "cpu_physical", "memory_gb", "arch", "gpu")


def machine_id(machine: dict[str, Any]) -> str:
    """The hardware part of the fingerprint (CPU, cores, memory, GPUs and their driver), without host name or
    software: two CI runners of one type are one machine, and a library upgrade on it is still that machine."""
    hardware = {key: machine.get(key) for key in MACHINE_KEYS}
    return hashlib.sha256(json.dumps(hardware, sort_keys=True).encode()).hexdigest()[:12]


def collect_env() -> dict[str, Any]:
    memory = psutil.virtual_memory()
    machine = {
        "cpu_model": cpu_model(),
        "cpu_logical": psutil.cpu_count(logical=True),
        "cpu_physical": psutil.cpu_count(logical=False),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": round(memory.total / 2**30, 1),
        "os": platform.platform(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "gpu": _gpus(),
    }
    libraries = library_versions()
    fingerprint = json.dumps({"machine": {k: v for k, v in machine.items() if k != "cpu_affinity"},
                              "libraries": libraries}, sort_keys=True)
    return {
        "env_id": hashlib.sha256(fingerprint.encode()).hexdigest()[:12],
        "machine_id": machine_id(machine),
        "collected_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "machine": machine,
        "libraries": libraries,
        "python_executable": sys.executable,
        "git": git_info(),
    }
