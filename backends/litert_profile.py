"""LiteRT's op profiler, reached through the C API of the libLiteRt.so that ai-edge-litert ships.

ai-edge-litert 2.3.0's Python API has no op profiler: its Interpreter offers none, and its CompiledModel wrapper
does not expose the one the runtime has. The runtime's C API does: a CompiledModel made with the runtime option
``enable_profiling = true`` (an opaque option "runtime_options_string" holding that TOML line, as LiteRT's own
C++ helpers build it) hands out a profiler whose events carry, per run, the whole "Invoke" and, per op, either a
TFLite builtin kernel (OPERATOR_INVOKE_EVENT) or one operator of a delegate (DELEGATE_OPERATOR_INVOKE_EVENT,
which XNNPACK reports op by op: "Convolution (NHWC, F32) IGEMM"). So the pass runs the same .tflite file through
LiteRT's CompiledModel API on the same accelerator and threads; the timed loop used the Interpreter, and the
record says so.

Delegate op events carry a duration but no start time: the Chrome trace lays them end to end from their run's
start, which is how they ran (one after another) but not where the gaps between them fell.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from backends.native_log import native_stderr_captured
from backends.op_profile import (
    PROFILE_WARMUP_RUNS,
    ProfilePass,
    ProfileUnavailable,
    summed_ops,
    write_chrome_trace,
)

MAX_RANK = 8
# tflite::Profiler::EventType
DEFAULT_EVENT, OPERATOR_EVENT, DELEGATE_OPERATOR_EVENT = 1, 2, 8
# LiteRtHwAccelerator
ACCELERATORS = {"cpu": 1, "gpu": 2}
# numpy dtype name -> LiteRtElementType
ELEMENT_TYPES = {"bool": 6, "int8": 9, "int16": 7, "int32": 2, "int64": 4, "uint8": 3, "uint16": 17,
                 "uint32": 16, "float16": 10, "float32": 1, "float64": 11}


class _Layout(ctypes.Structure):
    _fields_ = [("bits", ctypes.c_uint32), ("dims", ctypes.c_int32 * MAX_RANK),
                ("strides", ctypes.c_uint32 * MAX_RANK)]


class _RankedTensorType(ctypes.Structure):
    _fields_ = [("element_type", ctypes.c_int32), ("layout", _Layout)]


class _MemoryUsage(ctypes.Structure):
    _fields_ = [("a", ctypes.c_size_t), ("b", ctypes.c_size_t), ("c", ctypes.c_size_t)]


class _Event(ctypes.Structure):
    """litert/c/litert_profiler_event.h's ProfiledEventData."""

    _fields_ = [("tag", ctypes.c_char_p), ("event_type", ctypes.c_int32), ("start_us", ctypes.c_uint64),
                ("elapsed_us", ctypes.c_uint64), ("begin_memory", _MemoryUsage), ("end_memory", _MemoryUsage),
                ("metadata1", ctypes.c_int64), ("metadata2", ctypes.c_int64), ("source", ctypes.c_int32)]


def _library() -> Any:
    import ai_edge_litert

    path = Path(ai_edge_litert.__file__).parent / "libLiteRt.so"
    if not path.is_file():
        raise ProfileUnavailable(f"not exposed by this ai-edge-litert: it ships no {path.name} with the C API")
    library = ctypes.CDLL(str(path))
    needed = ("LiteRtCompiledModelGetProfiler", "LiteRtGetProfilerEvents", "LiteRtCreateOpaqueOptions")
    if missing := [name for name in needed if not hasattr(library, name)]:
        raise ProfileUnavailable(f"not exposed by this ai-edge-litert: {path.name} lacks {', '.join(missing)}")
    return library


class _Api:
    """The handful of C calls the pass makes, each checked: a failing one names itself."""

    def __init__(self) -> None:
        self.lib = _library()
        self._libc = ctypes.CDLL(None)
        self._libc.strdup.restype = ctypes.c_void_p
        self._libc.strdup.argtypes = [ctypes.c_char_p]

    def __call__(self, name: str, *args: Any) -> None:
        status = getattr(self.lib, name)(*args)
        if status != 0:
            raise RuntimeError(f"LiteRT's {name} returned status {status}")

    def handle(self, name: str, *args: Any) -> ctypes.c_void_p:
        out = ctypes.c_void_p()
        self(name, *args, ctypes.byref(out))
        return out

    def add_toml(self, options: ctypes.c_void_p, identifier: bytes, toml: bytes) -> None:
        """An opaque option as LiteRT's C++ helpers make one: a malloc'd TOML string the runtime frees."""
        payload = ctypes.c_void_p(self._libc.strdup(toml))
        opaque = self.handle("LiteRtCreateOpaqueOptions", ctypes.c_char_p(identifier), payload,
                             ctypes.cast(self._libc.free, ctypes.c_void_p))
        self("LiteRtAddOpaqueOptions", options, opaque)


def _buffers(api: _Api, env: Any, compiled: Any, signature: Any, feeds: list[np.ndarray]) -> tuple[Any, Any]:
    """Input buffers holding ``feeds`` (inputs resized to their shapes first) and output buffers to match."""
    count = ctypes.c_size_t()
    api("LiteRtGetNumSignatureInputs", signature, ctypes.byref(count))
    if count.value != len(feeds):
        raise RuntimeError(f"the signature has {count.value} inputs, the case feeds {len(feeds)}")
    inputs = []
    for index, feed in enumerate(feeds):
        dims = (ctypes.c_int * feed.ndim)(*feed.shape)
        api("LiteRtCompiledModelResizeInputTensor", compiled, 0, index, dims, feed.ndim)
        tensor_type = _RankedTensorType(element_type=ELEMENT_TYPES[feed.dtype.name])
        tensor_type.layout.bits = feed.ndim
        for axis, size in enumerate(feed.shape):
            tensor_type.layout.dims[axis] = size
        requirements = api.handle("LiteRtGetCompiledModelInputBufferRequirements", compiled, 0, index)
        buffer = api.handle("LiteRtCreateManagedTensorBufferFromRequirements", env, ctypes.byref(tensor_type),
                            requirements)
        memory = ctypes.c_void_p()
        api("LiteRtLockTensorBuffer", buffer, ctypes.byref(memory), 1)  # write
        data = np.ascontiguousarray(feed)
        ctypes.memmove(memory, data.ctypes.data, data.nbytes)
        api("LiteRtUnlockTensorBuffer", buffer)
        inputs.append(buffer)
    api("LiteRtGetNumSignatureOutputs", signature, ctypes.byref(count))
    layouts = (_Layout * count.value)()
    api("LiteRtGetCompiledModelOutputTensorLayouts", compiled, 0, count.value, layouts, True)
    outputs = []
    for index in range(count.value):
        tensor = api.handle("LiteRtGetSignatureOutputTensorByIndex", signature, index)
        tensor_type = _RankedTensorType()
        api("LiteRtGetRankedTensorType", tensor, ctypes.byref(tensor_type))
        tensor_type.layout = layouts[index]
        requirements = api.handle("LiteRtGetCompiledModelOutputBufferRequirements", compiled, 0, index)
        outputs.append(api.handle("LiteRtCreateManagedTensorBufferFromRequirements", env,
                                  ctypes.byref(tensor_type), requirements))
    return (ctypes.c_void_p * len(inputs))(*inputs), (ctypes.c_void_p * len(outputs))(*outputs)


def litert_profile(artifact: str, feeds: list[np.ndarray], runs: int, threads: int | None, accelerator: str,
                   trace_path: str, timed_api: str, builtin_kernels: bool = False,
                   extra_options: tuple[tuple[bytes, bytes], ...] = ()) -> ProfilePass:
    """Profile ``runs`` runs (after PROFILE_WARMUP_RUNS) of ``artifact`` in a CompiledModel on ``accelerator``;
    ``builtin_kernels`` runs the CPU's TFLite builtin kernels instead of XNNPACK (CpuKernelMode BUILTIN);
    ``extra_options`` are further (identifier, TOML) opaque options, the GPU's precision say."""
    api = _Api()
    env = api.handle("LiteRtCreateEnvironment", 0, None)
    model = api.handle("LiteRtCreateModelFromFile", env, os.fsencode(artifact))
    options = api.handle("LiteRtCreateOptions")
    api("LiteRtSetOptionsHardwareAccelerators", options, ACCELERATORS[accelerator])
    api.add_toml(options, b"runtime_options_string", b"enable_profiling = true\n")
    cpu_toml = (f"num_threads = {int(threads)}\n" if threads else "")
    cpu_toml += 'kernel_mode = "builtin"\n' if builtin_kernels else ""
    if cpu_toml:
        api.add_toml(options, b"xnnpack", cpu_toml.encode())
    for identifier, toml in extra_options:
        api.add_toml(options, identifier, toml)
    compiled = api.handle("LiteRtCreateCompiledModel", env, model, options)
    signature = api.handle("LiteRtGetModelSignature", model, 0)
    inputs, outputs = _buffers(api, env, compiled, signature, feeds)
    profiler = api.handle("LiteRtCompiledModelGetProfiler", compiled)
    if not profiler:
        raise ProfileUnavailable("not exposed by ai-edge-litert 2.3.0 here: the CompiledModel gave no profiler")

    def run() -> None:
        api("LiteRtRunCompiledModel", compiled, 0, len(inputs), inputs, len(outputs), outputs)

    for _ in range(PROFILE_WARMUP_RUNS):
        run()
    api("LiteRtResetProfiler", profiler)
    api("LiteRtStartProfiler", profiler)
    walls = []
    for _ in range(runs):
        started = time.perf_counter_ns()
        run()
        walls.append((time.perf_counter_ns() - started) / 1e6)
    api("LiteRtStopProfiler", profiler)
    count = ctypes.c_int()
    api("LiteRtGetNumProfilerEvents", profiler, ctypes.byref(count))
    events = (_Event * count.value)()
    api("LiteRtGetProfilerEvents", profiler, count, events)
    return _read_events(list(events), walls, accelerator, trace_path, timed_api)


def profile_or_refusal(markers: tuple[str, ...], unavailable: Callable[[str], str], **kwargs: Any) -> ProfilePass:
    """``litert_profile(**kwargs)``, LiteRT's native log read when it fails: a line holding one of ``markers``
    (any case) is the runtime refusing, said as ProfileUnavailable(``unavailable(that line)``); any other failure
    is raised as it came."""
    with native_stderr_captured() as native_log:
        try:
            return litert_profile(**kwargs)
        except RuntimeError as error:
            failure = error
    wanted = tuple(marker.lower() for marker in markers)
    refusal = next((line.split("] ", 1)[-1].strip() for line in native_log().splitlines()
                    if any(marker in line.lower() for marker in wanted)), None)
    if refusal is None:
        raise failure
    raise ProfileUnavailable(unavailable(refusal)) from failure


# control flow whose event spans the ops of the subgraphs it runs, which have events of their own
CONTAINER_OPS = frozenset({"WHILE", "IF", "CALL_ONCE"})


def _read_events(events: list[_Event], walls: list[float], accelerator: str, trace_path: str,
                 timed_api: str) -> ProfilePass:
    invokes = [e for e in events if e.event_type == DEFAULT_EVENT and e.tag == b"Invoke"]
    where_delegate = "XNNPACK" if accelerator == "cpu" else f"LiteRT {accelerator.upper()} accelerator"
    rows, trace = [], []
    cursor, position = 0, 0
    for event in events:
        tag = event.tag.decode(errors="replace") if event.tag else "?"
        if event.event_type == DEFAULT_EVENT and tag == "Invoke":
            cursor, position = event.start_us, 0
            trace.append({"name": "run", "cat": "run", "ph": "X", "ts": event.start_us, "dur": event.elapsed_us,
                          "pid": 1, "tid": 0})
            continue
        if event.event_type == OPERATOR_EVENT:
            where = "TFLite builtin kernel (CPU)"
        elif event.event_type == DELEGATE_OPERATOR_EVENT:
            where = where_delegate
        else:
            continue
        # named by position in the run: XNNPACK numbers its ops from 0 again in each delegated partition, so
        # "#metadata1" alone would merge different ops of a model with builtin ops between partitions
        position += 1
        name = f"{tag} #{event.metadata1} (op {position} of the run)"
        ms = event.elapsed_us / 1e3
        if tag not in CONTAINER_OPS:  # their subgraphs' ops are timed on their own: counted once
            rows.append((name, tag, where, ms))
        start = event.start_us or cursor
        trace.append({"name": name, "cat": tag, "ph": "X", "ts": start, "dur": event.elapsed_us, "pid": 1,
                      "tid": 1, "args": {"where": where}})
        cursor = start + event.elapsed_us
    if not invokes:
        raise ProfileUnavailable("not exposed by ai-edge-litert 2.3.0 here: its profiler recorded no Invoke event")
    ops = summed_ops(rows)
    for op in ops:
        # a delegate node that reports no operators of its own hides the model's ops behind it
        if op.op_type in ("DELEGATE", "TfLiteXNNPackDelegate") or op.op_type.startswith("TfLite"):
            op.opaque, op.detail = True, "a delegate kernel without per-operator events: its ops are not visible"
    run_ms = [e.elapsed_us / 1e3 for e in invokes]
    metadata = {"runtime": "ai-edge-litert", "api": "CompiledModel (C API)", "accelerator": accelerator,
                "wall_ms_per_run": walls}
    return ProfilePass(
        route="LiteRT CompiledModel C API profiler (libLiteRt.so, runtime option enable_profiling)",
        note=f"the same .tflite file through LiteRT's CompiledModel on the {accelerator.upper()} accelerator, after "
             f"the timed loop; the timed loop used {timed_api}",
        run_ms=run_ms, ops=ops, trace_file=write_chrome_trace(trace_path, trace, metadata))
