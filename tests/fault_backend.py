"""Test doubles of misbehaving runtimes, registered with ``ACCELBENCH_BACKENDS`` (see backends/registry.py).

They subclass the real ONNX Runtime adapter, so everything but the injected fault is the real code path.
Worker processes import this module as ``tests.fault_backend`` (the repo root is on their PYTHONPATH).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from backends.base import Availability, Backend, BackendOptions, Session
from backends.onnxruntime_cpu import OnnxRuntimeCpu
from backends.tflite_cpu import TfliteCpu

CHUNK_BYTES = 50 * 2**20
ALLOCATION_CAP_BYTES = 4 * 2**30  # never more than this, even if the harness fails to kill the worker

SLOW_CALL_S = 8.0  # fault "slow": each call's delay, far beyond any slice or round the A/B tests plan, under the
# 10 s after which a slice's silence is a hang
SESSIONS = [0]  # sessions this process has prepared (a worker serving rounds with fresh: session renews its own)
CALLS = [0]  # inferences this process has run through a faulty session
UNAVAILABLE_REASON = "the frobnicator driver is not loaded (test backend)"

# name=module:Class entries for ACCELBENCH_BACKENDS
REGISTRATION = ",".join([
    "fault_ort=tests.fault_backend:FaultyOnnxRuntime",
    "probe_ort=tests.fault_backend:ProbeOnnxRuntime",
    "never_here=tests.fault_backend:UnavailableBackend",
    "slowed_tflite=tests.fault_backend:SlowedTfliteCpu",
])


GATE_WAIT_S = 300.0  # fault "wait": the most a worker waits at its gate before it fails the case


def wait_at_gate(gate: str) -> None:
    """Fault "wait": say so (a file ``waiting-<pid>`` in the folder ``gate``), then wait until the test opens the
    gate (a file ``go`` there). A test holds a worker, and with it its runner, mid-case for as long as it needs,
    whatever the machine's speed, and sees how many runners got that far."""
    folder = Path(gate)
    (folder / f"waiting-{os.getpid()}").touch()
    deadline = time.monotonic() + GATE_WAIT_S
    while not (folder / "go").exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the gate {gate} was not opened within {GATE_WAIT_S:g} s")
        time.sleep(0.02)


def inject(fault: str, gate: str | None = None) -> None:
    """Misbehave as a broken native runtime would."""
    if fault == "wait":
        wait_at_gate(str(gate))
    elif fault == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif fault == "hang":
        while True:
            time.sleep(3600)
    elif fault == "oom":
        hoard = []
        while len(hoard) * CHUNK_BYTES < ALLOCATION_CAP_BYTES:
            hoard.append(b"\x01" * CHUNK_BYTES)  # bytes multiplication writes every page
            time.sleep(0.01)
        while True:
            time.sleep(3600)
    elif fault == "slow":  # a side that turns slow (a throttled CPU, a swapping machine): every call from here on
        time.sleep(SLOW_CALL_S)
    elif fault == "raise":
        raise RuntimeError("injected failure")
    elif fault == "raise_lines":  # a native library's message, wrapped and ending on a newline (seen under load)
        raise RuntimeError("pthread_create failed, error code: 11\n   Resource temporarily   unavailable\n")
    else:
        raise ValueError(f"unknown fault {fault!r}")


class _FaultySession(Session):
    def __init__(self, inner: Session, fault: str, after: int = 0) -> None:
        self._inner, self._fault, self._after = inner, fault, after
        self.inputs, self.outputs = inner.inputs, inner.outputs

    def bind(self, feeds: list[np.ndarray]) -> Callable[[], list[np.ndarray]]:
        call = self._inner.bind(feeds)

        def run() -> list[np.ndarray]:
            CALLS[0] += 1  # per process, so that a fresh session in the same worker goes on counting
            if CALLS[0] > self._after:
                inject(self._fault)
            return call()

        return run

    def info(self) -> dict[str, Any]:
        return self._inner.info()


class FaultyOnnxRuntime(OnnxRuntimeCpu):
    """``fault: segv|hang|oom|raise|slow|wait`` injected at ``fault_at: prepare|run`` (at run: after ``fault_after``
    calls that went well, so that a fault can strike in the middle of a measurement; from the
    ``fault_from_session``-th session of the worker on, so that it strikes in a given round whatever the machine's
    speed; ``fault_after`` then counts that session's calls). ``wait`` waits at the gate folder ``fault_gate``
    (wait_at_gate): at prepare only."""

    name = "fault_ort"

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return (*super().option_names(), "fault", "fault_at", "fault_after", "fault_from_session", "fault_gate")

    def prepare(self, artifact: str, options: BackendOptions, batch_size: int,
                sample_shape: tuple[int, ...] | None = None) -> Session:
        fault, where = options.extra.get("fault"), options.extra.get("fault_at", "prepare")
        SESSIONS[0] += 1
        after, from_session = int(options.extra.get("fault_after", 0)), int(options.extra.get("fault_from_session", 1))
        fault = fault if SESSIONS[0] >= from_session else None
        if "fault_from_session" in options.extra:  # then fault_after counts this session's calls
            after += CALLS[0]
        if fault and where == "prepare":
            inject(fault, options.extra.get("fault_gate"))
        session = super().prepare(artifact, options, batch_size, sample_shape)
        return _FaultySession(session, fault, after) if fault and where == "run" else session


class _ProbeSession(Session):
    def __init__(self, inner: Session) -> None:
        self._inner = inner
        self.inputs, self.outputs = inner.inputs, inner.outputs

    def bind(self, feeds: list[np.ndarray]) -> Callable[[], list[np.ndarray]]:
        return self._inner.bind(feeds)

    def info(self) -> dict[str, Any]:
        # info() is called after the steady state, so this sees every import the whole case made.
        return {**self._inner.info(), "tensorflow_imported": "tensorflow" in sys.modules,
                "probe_pid": os.getpid()}


class ProbeOnnxRuntime(OnnxRuntimeCpu):
    """The real ONNX Runtime adapter, reporting whether TensorFlow was imported in its process."""

    name = "probe_ort"

    def prepare(self, artifact: str, options: BackendOptions, batch_size: int,
                sample_shape: tuple[int, ...] | None = None) -> Session:
        return _ProbeSession(super().prepare(artifact, options, batch_size, sample_shape))


class UnavailableBackend(Backend):
    name = "never_here"
    artifact_format = "onnx"

    @classmethod
    def available(cls) -> Availability:
        return Availability(False, UNAVAILABLE_REASON)

    def prepare(self, artifact: str, options: BackendOptions, batch_size: int,
                sample_shape: tuple[int, ...] | None = None) -> Session:
        raise AssertionError("an unavailable backend must never be prepared")


class _SlowedSession(Session):
    def __init__(self, inner: Session, slowdown: float) -> None:
        self._inner, self._slowdown = inner, slowdown
        self.inputs, self.outputs = inner.inputs, inner.outputs

    def bind(self, feeds: list[np.ndarray]) -> Callable[[], list[np.ndarray]]:
        call, share, clock = self._inner.bind(feeds), self._slowdown, time.perf_counter_ns

        def run() -> list[np.ndarray]:
            start = clock()
            outputs = call()
            until = start + (clock() - start) * (1.0 + share)
            while clock() < until:  # busy, not asleep: the CPU stays as occupied as during inference
                pass
            return outputs

        return run

    def info(self) -> dict[str, Any]:
        return {**self._inner.info(), "injected_slowdown": self._slowdown}


class SlowedTfliteCpu(TfliteCpu):
    """The real TFLite CPU adapter with ``slowdown: 0.05`` added to every inference as a busy-wait of 5 % of that
    inference's own time: a slowdown of exactly that share whatever the machine's speed at the moment (the
    injected regression of benchmarks/regression_detection.py). With ``slowdown: 0`` the call path is the same."""

    name = "slowed_tflite"

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return (*super().option_names(), "slowdown")

    @classmethod
    def option_problem(cls, name: str, value: Any) -> str | None:
        if name == "slowdown":
            return None if isinstance(value, int | float) and value >= 0 else "slowdown is a share, 0 or more"
        return super().option_problem(name, value)

    def prepare(self, artifact: str, options: BackendOptions, batch_size: int,
                sample_shape: tuple[int, ...] | None = None) -> Session:
        session = super().prepare(artifact, options, batch_size, sample_shape)
        return _SlowedSession(session, float(options.extra.get("slowdown", 0.0)))
