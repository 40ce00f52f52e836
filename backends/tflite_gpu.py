"""TFLite on a GPU through LiteRT's CompiledModel and its GPU accelerator (WebGPU over Vulkan, Metal or D3D).

What runs is whatever adapter the GPU accelerator selects. On a machine without a GPU, Mesa's llvmpipe Vulkan
driver is a software GPU on the CPU: the path really runs there (CI uses it), but its numbers are not GPU
numbers, so `info()` and availability name the adapter and say whether it is software. LiteRT writes its
adapter choice only to native stderr ("Selected adapter: llvmpipe (...), arch=software, vendor=mesa,
backend=Vulkan, adapterType=CPU / Software"); the adapter parses that line.

Availability is decided by compiling a tiny bundled model (backends/data/gpu_probe.tflite) on the GPU in a
subprocess: only that shows whether a usable driver exists (Debian bookworm's Mesa 22.3 is refused, Mesa 25
works), and a failure there cannot hurt the calling process.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from backends.base import (
    Availability,
    Backend,
    BackendOptions,
    Session,
    input_shapes,
    installed_and_importable,
    module_version,
)
from backends.native_log import native_stderr_captured, static_shapes_reason
from backends.op_profile import ProfilePass
from backends.tflite_cpu import _spec as interpreter_spec
from model_zoo.inputs import InputLayout, TensorSpec
from sysinfo.probe import run_probe

PROBE_MODEL = Path(__file__).with_name("data") / "gpu_probe.tflite"
PROBE_TIMEOUT_S = 120
_ADAPTER_LINE = re.compile(r"Selected adapter: (?P<name>.*?), arch=(?P<arch>[^,]*), vendor=(?P<vendor>[^,]*), "
                           r"backend=(?P<backend>[^,]*), adapterType=(?P<type>.*)$", re.MULTILINE)
# Lines of LiteRT's native log that explain a failed GPU start, most specific first.
_FAILURE_HINTS = ("Found no drivers", "No adapters found", "VK_ERROR", "Failed to initialize WebGPU",
                  "Failed to get or create delegate", "not supported")


# An op line under such a heading: "IF: Operation is not supported.", "CUSTOM Foo: ..."
_OP_LINE = re.compile(r"^[A-Z][A-Z0-9_]*( [A-Za-z0-9_]+)?: ")
_MAX_OPS_LISTED = 8


def parse_adapter(native_log: str) -> dict[str, Any] | None:
    """The adapter LiteRT selected, from its native log; None when the log names none."""
    match = _ADAPTER_LINE.search(native_log)
    if match is None:
        return None
    adapter_type = match["type"].strip()
    software = "software" in adapter_type.lower() or match["arch"].strip().lower() == "software"
    return {"name": match["name"].strip(), "arch": match["arch"].strip(), "vendor": match["vendor"].strip(),
            "backend": match["backend"].strip(), "adapter_type": adapter_type, "software": software}


def failure_reason(native_log: str, error: str) -> str:
    """One line that says why the GPU did not start: the most telling native log line, then the error."""
    lines = [line.strip() for line in native_log.splitlines() if line.strip()]
    static = static_shapes_reason(native_log, "the GPU accelerator")
    if static:
        return static
    for hint in _FAILURE_HINTS:
        index = next((i for i, line in enumerate(lines) if hint in line), None)
        if index is not None:
            hit = lines[index][:300]
            if hit.endswith(":"):  # a heading ("Following operations are not supported by GPU delegate:"): the
                #                    lines under it name the ops ("IF: Operation is not supported.")
                listed = list(itertools.takewhile(_OP_LINE.match, lines[index + 1:index + 1 + _MAX_OPS_LISTED]))
                hit = f"{hit} {'; '.join(line[:120] for line in listed)}" if listed else hit
            return f"{hit} ({error.strip().splitlines()[0][:200] if error.strip() else 'no error text'})"
    return error.strip().splitlines()[0][:300] if error.strip() else "the GPU accelerator did not start"


def ensure_runtime_dir() -> None:
    """The WebGPU stack wants XDG_RUNTIME_DIR (a user's runtime folder); headless machines often lack one."""
    if not os.environ.get("XDG_RUNTIME_DIR"):
        folder = Path(tempfile.gettempdir()) / f"accelbench-xdg-{os.getuid()}"
        folder.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(folder)


def _gpu_options(precision: str) -> Any:
    """fp32 cases compute in fp32 (`enforce_f32`): LiteRT's GPU default computes in fp16, which would make
    an "fp32" number an fp16 one. fp16 cases run the fp16 artefact with the GPU's fp16 arithmetic."""
    from ai_edge_litert.gpu_options import GpuOptions
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator
    from ai_edge_litert.options import Options

    return Options(hardware_accelerators=HardwareAccelerator.GPU,
                   gpu_options=GpuOptions(enforce_f32=precision == "fp32"))


def compile_on_gpu(path: str, precision: str) -> tuple[Any, dict[str, Any] | None, str]:
    """(compiled model, adapter, native log); raises RuntimeError with the native reason when the GPU fails."""
    from ai_edge_litert.compiled_model import CompiledModel

    ensure_runtime_dir()
    with native_stderr_captured() as native_log:
        try:
            model = CompiledModel.from_file(path, options=_gpu_options(precision))
            error = None
        except Exception as exc:  # the binding raises RuntimeError; the why is in the native log
            model, error = None, f"{type(exc).__name__}: {exc}"
    log = native_log()
    if model is None:
        raise RuntimeError(f"LiteRT GPU accelerator: {failure_reason(log, error or '')}")
    return model, parse_adapter(log), log


def _probe() -> dict[str, Any]:
    """Run in a subprocess by `gpu_probe`: compile and run the probe model, report the adapter."""
    try:
        model, adapter, _ = compile_on_gpu(str(PROBE_MODEL), "fp32")
        inputs, outputs = model.create_input_buffers(0), model.create_output_buffers(0)
        inputs[0].write(np.ones((1, 8, 8, 1), np.float32))
        model.run_by_index(0, inputs, outputs)
        outputs[0].read(1, np.float32)
        return {"ok": True, "adapter": adapter, "fully_accelerated": bool(model.is_fully_accelerated())}
    except Exception as exc:
        return {"ok": False, "error": str(exc)}


@functools.cache
def gpu_probe() -> dict[str, Any]:
    """Whether the GPU accelerator starts here, and on which adapter (once per process, in a subprocess)."""
    result, stderr = run_probe("backends.tflite_gpu", [], PROBE_TIMEOUT_S, "the GPU probe")
    if not result["ok"] and "died" in result["error"]:
        result["error"] += f": {failure_reason(stderr, '')}"
    return result


def describe_adapter(adapter: dict[str, Any] | None) -> str:
    if adapter is None:
        return "adapter not named in LiteRT's log"
    kind = "SOFTWARE adapter on the CPU, not a GPU" if adapter["software"] else "hardware adapter"
    return f"{adapter['name']} ({adapter['vendor']}, {adapter['backend']}, {kind})"


def _spec(name: str, detail: dict[str, Any]) -> TensorSpec:
    return TensorSpec(name=detail.get("name", name), shape=tuple(int(d) for d in detail["shape"]),
                      dtype=np.dtype(detail["dtype"]).name)


class TfliteGpuSession(Session):
    def __init__(self, model: Any, adapter: dict[str, Any] | None, precision: str) -> None:
        self._model = model
        self._adapter = adapter
        self._precision = precision
        key = next(iter(model.get_signature_list()))
        self.inputs = [_spec(n, d) for n, d in model.get_input_tensor_details(key).items()]
        self.outputs = [_spec(n, d) for n, d in model.get_output_tensor_details(key).items()]
        self._input_buffers = model.create_input_buffers(0)
        self._output_buffers = model.create_output_buffers(0)
        self._sizes = [int(np.prod(spec.shape)) for spec in self.outputs]

    def bind(self, feeds: list[np.ndarray]) -> Callable[[], list[np.ndarray]]:
        """Inputs are written to their buffers once, like tflite_cpu; a call is run plus read-back.

        The read is part of the timed call on purpose: `run_by_index` returns before the GPU has finished, so
        timing it alone would report a fraction of the real latency.
        """
        for buffer, array in zip(self._input_buffers, feeds, strict=True):
            buffer.write(np.ascontiguousarray(array))
        model, ins, outs = self._model, self._input_buffers, self._output_buffers
        reads = [(buffer, size, np.dtype(spec.dtype), spec.shape)
                 for buffer, size, spec in zip(outs, self._sizes, self.outputs, strict=True)]

        def run() -> list[np.ndarray]:
            model.run_by_index(0, ins, outs)
            return [buffer.read(size, dtype).reshape(shape) for buffer, size, dtype, shape in reads]

        return run

    def bare_loop(self, feeds: list[np.ndarray], runs: int) -> list[int]:
        for buffer, array in zip(self._input_buffers, feeds, strict=True):
            buffer.write(np.ascontiguousarray(array))
        clock, samples = time.perf_counter_ns, []
        for _ in range(runs):
            start = clock()
            self._model.run_by_index(0, self._input_buffers, self._output_buffers)
            [buffer.read(size, np.float32) for buffer, size in zip(self._output_buffers, self._sizes, strict=True)]
            samples.append(clock() - start)
        return samples

    def info(self) -> dict[str, Any]:
        adapter = self._adapter or {}
        return {
            "runtime": "ai-edge-litert",
            "runtime_version": module_version("ai-edge-litert"),
            "device": "gpu",
            "accelerator": "LiteRT GPU (WebGPU)",
            "adapter": adapter.get("name"),
            "vendor": adapter.get("vendor"),
            "gpu_backend": adapter.get("backend"),
            "adapter_type": adapter.get("adapter_type"),
            "software_device": adapter.get("software") if adapter else None,  # None: LiteRT did not say
            "adapter_known": bool(adapter),
            "fully_accelerated": bool(self._model.is_fully_accelerated()),
            "compute_precision": "fp32 (enforce_f32)" if self._precision == "fp32" else "fp16",
        }


class TfliteGpu(Backend):
    name = "tflite_gpu"
    artifact_format = "tflite"
    precisions = ("fp32", "fp16")
    static_batch = True  # the accelerator compiles static shapes: the zoo bakes the case's batch into the file
    description = "LiteRT CompiledModel on the GPU accelerator (WebGPU over Vulkan/Metal/D3D); fp32 enforced for fp32"

    @classmethod
    def available(cls) -> Availability:
        version, problem = installed_and_importable(("ai-edge-litert",), "ai_edge_litert.compiled_model")
        if problem:
            return problem
        if not PROBE_MODEL.exists():
            return Availability(False, f"the GPU probe model {PROBE_MODEL} is missing from this installation")
        probe = gpu_probe()
        if not probe["ok"]:
            return Availability(False, f"ai-edge-litert {version}: {probe['error']}")
        if not probe.get("fully_accelerated", False):
            return Availability(False, f"ai-edge-litert {version}: the GPU accelerator started on "
                                       f"{describe_adapter(probe.get('adapter'))} but left the probe model on the CPU")
        return Availability(True, f"ai-edge-litert {version}, GPU accelerator on {describe_adapter(probe['adapter'])}")

    @classmethod
    def unsupported_reason(cls, precision: str, options: BackendOptions) -> str | None:
        if precision in ("int8", "int8_dynamic"):
            return (f"tflite_gpu does not run {precision}: LiteRT's GPU accelerator computes in floating point "
                    "(quantized weights are dequantized), so the case would not measure integer arithmetic")
        return super().unsupported_reason(precision, options)

    def prepare(self, artifact: str, options: BackendOptions, batch_size: int,
                layout: InputLayout | None = None) -> Session:
        from ai_edge_litert.interpreter import Interpreter

        precision = options.precision
        model, adapter, _ = compile_on_gpu(artifact, precision)
        key = next(iter(model.get_signature_list()))
        # CompiledModel's details show today's shapes, not which dimensions are dynamic: the file's shape
        # signatures say that, read once through the Interpreter (which only parses the flatbuffer here)
        declared = [interpreter_spec(d) for d in Interpreter(model_path=artifact).get_input_details()]
        wanted_shapes = input_shapes(declared, batch_size, layout)
        for index, (detail, wanted) in enumerate(zip(model.get_input_tensor_details(key).values(), wanted_shapes,
                                                     strict=True)):
            if tuple(detail["shape"]) != wanted:
                model.resize_input_tensor(index, list(wanted))
        return TfliteGpuSession(model, adapter, precision)

    def profile(self, artifact: str, options: BackendOptions, batch_size: int, layout: InputLayout | None,
                feeds: list[np.ndarray], runs: int, trace_path: str) -> ProfilePass:
        from backends.litert_profile import profile_or_refusal

        # as _gpu_options: fp32 cases compute in fp32 (precision 2 is LiteRT's kLiteRtDelegatePrecisionFp32)
        extra = ((b"gpu_options", b"precision = 2\n"),) if options.precision == "fp32" else ()
        return profile_or_refusal(
            ("not implemented",),
            lambda refusal: f"not exposed by ai-edge-litert {module_version('ai-edge-litert')}'s GPU accelerator: "
                            f"asked to profile, it answers \"{refusal}\"",
            artifact=artifact, feeds=feeds, runs=runs, threads=None, accelerator="gpu", trace_path=trace_path,
            timed_api="the Python CompiledModel", extra_options=extra)


if __name__ == "__main__" and sys.argv[1:] == ["--probe"]:
    print(json.dumps(_probe()))
