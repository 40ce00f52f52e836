"""Per-operator profiles: the one shape every runtime's profiler is read into, and the timeline file.

Each runtime has its own profiler and format (ONNX Runtime's JSON trace, LiteRT's event buffer, TensorRT's
IProfiler callbacks). An adapter reads its runtime's into :class:`ProfilePass`: per op (or layer, or kernel)
its name, type, where it ran, how often and for how long, plus the profiling pass's own per-run latencies, so
that the sum of op times can be set against what the pass measured (coverage). The harness does the rest
(categories, shares, the comparison of two cases: results.profile), so no adapter repeats it.

A profile comes from a separate pass after the timed loop, never from the timed samples: profilers add a
callback or a timestamp per op, and a run with them on is not the run that was timed.

This module imports the standard library only: the worker imports it.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# how many runs the profiling pass makes by default, and how many of them it discards as warm-up: a second
# ONNX Runtime session (profiling cannot be switched on in an existing one) starts cold
DEFAULT_PROFILE_RUNS = 20
PROFILE_WARMUP_RUNS = 3


class ProfileUnavailable(Exception):
    """The backend cannot profile this case; the message says why, and goes into the record as it is."""


@dataclass
class OpTime:
    """One op (node, layer, kernel) of the profiling pass, summed over the pass's kept runs.

    ``fused``: the runtime merged several of the model's nodes into this one (ONNX Runtime's FusedConv, a
    TensorRT layer named after several nodes). ``opaque``: what ran inside is not visible at all (a TensorRT
    engine run as one ONNX Runtime node, a delegate's kernel without per-op events): its time is real, but it
    says nothing about which of the model's ops took it.
    """

    name: str
    op_type: str
    where: str  # provider, delegate or accelerator, as the runtime names it ("CPUExecutionProvider", "XNNPACK")
    calls: int
    total_ms: float
    fused: bool = False
    opaque: bool = False
    detail: str | None = None  # what the runtime or the model file says about the op ("group 32: depthwise")
    median_ms: float = 0.0  # its median call: one call preempted among twenty would be a tenth of the mean
    dtype: str | None = None  # its first input's element type where the runtime says ("float", "uint8"): in an
    # int8 profile, the ops that still ran in float are the ones the quantized graph converts around


@dataclass
class ProfilePass:
    """What one profiling pass measured.

    ``run_ms`` is the pass's own latency per kept run, as the runtime's profiler timed the whole run (or the
    wall clock around it where it does not): coverage is the sum of op times over its sum. ``route`` names the
    API that measured, ``note`` what a reader must know about it (a second session, another API than the timed
    loop's).
    """

    route: str
    note: str
    run_ms: list[float]
    ops: list[OpTime]
    trace_file: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)


def summed_ops(rows: list[tuple[str, str, str, float]]) -> list[OpTime]:
    """(name, op_type, where, ms) events, one per call, summed per op in first-seen order, with each op's median
    call."""
    ops: dict[tuple[str, str, str], OpTime] = {}
    calls: dict[tuple[str, str, str], list[float]] = {}
    for name, op_type, where, ms in rows:
        key = (name, op_type, where)
        if key not in ops:
            ops[key] = OpTime(name=name, op_type=op_type, where=where, calls=0, total_ms=0.0)
            calls[key] = []
        ops[key].calls += 1
        ops[key].total_ms += ms
        calls[key].append(ms)
    for key, op in ops.items():
        op.median_ms = statistics.median(calls[key])
    return list(ops.values())


def write_chrome_trace(path: str | os.PathLike[str], events: list[dict[str, Any]], metadata: dict[str, Any]) -> str:
    """A Chrome-trace (Perfetto, chrome://tracing) JSON file of the pass: "X" events in microseconds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps({"traceEvents": events, "displayTimeUnit": "ms", "otherData": metadata}))
    os.replace(tmp, target)
    return str(target)
