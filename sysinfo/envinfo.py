"""The machine and software a run was measured on: numbers from different fingerprints are not comparable."""

from __future__ import annotations

import hashlib
import json
import math
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
    """The CPU's model name; on Arm Linux, where /proc/cpuinfo has none, its implementer and part numbers (a
    Graviton 2, 3 and 4 would otherwise all read "aarch64" and be one machine)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, colon, value = line.partition(":")
            if colon:
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    if fields.get("model name"):
        return fields["model name"]
    if fields.get("CPU implementer") and fields.get("CPU part"):
        return f"{platform.machine()} implementer {fields['CPU implementer']} part {fields['CPU part']}"
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


def memory_class_gib(gib: float | None) -> float | None:
    """The memory class of a total in GiB: the total rounded up to a quarter of its power of two (23.5 and 23.6 are
    both 24; 27.4 and 27.8 both 28; 55.2 and 55.6 both 56). A machine reports a little less than its nominal size
    (the kernel and firmware keep some), and two VMs of one type differ in that little, so the class is the
    nominal size: rounding to the nearest step of a ladder split 28, 56 and 112 GiB types across a step."""
    if not isinstance(gib, int | float) or not math.isfinite(gib) or gib <= 0:
        return None
    step = 2.0 ** math.floor(math.log2(gib)) / 4
    return math.ceil(round(gib / step, 6)) * step


def os_family(os_text: str | None) -> str | None:
    """The OS as it matters for numbers: platform.platform() without the kernel release. A cloud's kernel build
    ("6.18.44-fc-v669" on one VM, "-fc-v1272" on the next of the same type) changes under a running fleet and is
    shown in env.json, never a reason to call two runners different; the C library stays (it is the software)."""
    if not isinstance(os_text, str):
        return None
    if os_text.startswith("Linux-"):
        _, with_, libc = os_text.partition("-with-")
        return f"Linux with {libc}" if with_ and libc else "Linux"
    return os_text


def _one_line(text: Any) -> Any:
    return " ".join(text.split()) if isinstance(text, str) else text


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def hardware_facts(machine: dict[str, Any]) -> dict[str, Any]:
    """What identifies the hardware, by the name a message uses: the CPU model, logical CPUs, architecture, the
    memory class and each GPU (name, memory in GiB). Not the physical core count (hypervisors report the topology
    of the host they run on: one VM type shows 1 or 2 "physical" cores), not the affinity (how the process was
    started), and not the GPU driver (software, upgraded on the same card)."""
    machine = _dict(machine)
    gpus = []
    for device in _dict(machine.get("gpu")).get("devices") or []:
        device = _dict(device)
        memory = device.get("memory_mb")
        memory_gib = round(memory / 1024) if isinstance(memory, int | float) and math.isfinite(memory) else None
        gpus.append(f"{_one_line(device.get('name'))} ({memory_gib} GiB)")
    memory = memory_class_gib(machine.get("memory_gb"))
    return {"CPU": _one_line(machine.get("cpu_model")), "logical CPUs": machine.get("cpu_logical"),
            "architecture": machine.get("arch"), "memory": None if memory is None else f"~{memory:g} GiB",
            "GPUs": ", ".join(gpus) if gpus else "none"}


def software_facts(env: dict[str, Any]) -> dict[str, Any]:
    """The software that matters for numbers: the OS family and C library, Python, the GPU and CUDA drivers and
    every library's version. Not the kernel build, the host name, paths or the git commit."""
    machine, gpu = _dict(env.get("machine")), _dict(_dict(env.get("machine")).get("gpu"))
    facts = {"OS": os_family(machine.get("os")), "Python": machine.get("python"),
             "GPU driver": gpu.get("driver_version"), "CUDA driver": gpu.get("cuda_driver_version")}
    facts.update({str(name): _dict(env.get("libraries")).get(name) for name in sorted(_dict(env.get("libraries")))})
    return facts


def _digest(facts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def machine_id(machine: dict[str, Any]) -> str:
    """The hardware part of the fingerprint (hardware_facts), without host name or software: two CI runners of one
    type are one machine, and a library or driver upgrade on it is still that machine. Derived from env.json's
    `machine`, so a run written by any version is grouped by what it ran on."""
    return _digest(hardware_facts(machine))


def env_id(env: dict[str, Any]) -> str:
    """The whole fingerprint: hardware and the software that matters for numbers (see env_differences)."""
    return _digest({**hardware_facts(_dict(env.get("machine"))), **software_facts(env)})


def env_machine_id(env: dict[str, Any]) -> str:
    """The machine of an env.json: derived from its `machine` where it has one (so that runs written before the
    machine was identified as it is now group with today's), else the id it stored."""
    machine = env.get("machine")
    if isinstance(machine, dict) and machine:
        return machine_id(machine)
    stored = env.get("machine_id")
    return stored if isinstance(stored, str) and stored else machine_id({})


def _shown(value: Any) -> str:
    return "none" if value is None else str(value)


def env_differences(there: dict[str, Any], here: dict[str, Any], names: tuple[str, str] = ("there", "here"),
                    hardware: bool = True, software: bool = True) -> list[str]:
    """What differs between two env.json objects, each as "onnxruntime 1.31.0 there, 1.32.0 here": what a
    refusal says instead of two opaque hashes. Empty when the fingerprints agree."""
    pairs = []
    if hardware:
        pairs.append((hardware_facts(_dict(there.get("machine"))), hardware_facts(_dict(here.get("machine")))))
    if software:
        pairs.append((software_facts(there), software_facts(here)))
    found = []
    for before, after in pairs:
        for name in dict.fromkeys([*before, *after]):
            if before.get(name) != after.get(name):
                found.append(f"{name} {_shown(before.get(name))} {names[0]}, {_shown(after.get(name))} {names[1]}")
    return found


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
    return {
        "env_id": env_id({"machine": machine, "libraries": libraries}),
        "machine_id": machine_id(machine),
        "collected_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "machine": machine,
        "libraries": libraries,
        "python_executable": sys.executable,
        "git": git_info(),
    }
