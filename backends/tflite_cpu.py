"""TFLite on the CPU through LiteRT's Interpreter, with XNNPACK (the default) or the plain builtin kernels."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

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
from backends.op_profile import ProfilePass
from model_zoo.inputs import TensorSpec
from model_zoo.requests import PRECISIONS

if TYPE_CHECKING:
    from model_zoo.inputs import InputLayout


def _spec(detail: dict[str, Any]) -> TensorSpec:
    signature = detail.get("shape_signature", detail["shape"])
    return TensorSpec(
        name=detail["name"],
        shape=tuple(None if int(d) < 0 else int(d) for d in signature),
        dtype=np.dtype(detail["dtype"]).name,
    )


def shape_for_batch(interpreter: Any, batch_size: int, layout: InputLayout | None) -> None:
    """Resize every input to the case's shape (dynamic batch, and dynamic dims the scenario describes), then
    allocate: the interpreter is ready to run at that shape."""
    details = interpreter.get_input_details()
    for detail, shape in zip(details, input_shapes([_spec(d) for d in details], batch_size, layout), strict=True):
        if tuple(detail["shape"]) != shape:
            interpreter.resize_tensor_input(detail["index"], list(shape), strict=False)
    interpreter.allocate_tensors()


class TfliteCpuSession(Session):
    def __init__(self, interpreter: Any, options: BackendOptions, xnnpack: bool) -> None:
        self._interpreter = interpreter
        input_details = interpreter.get_input_details()
        output_details = interpreter.get_output_details()
        self.inputs = [_spec(d) for d in input_details]
        self.outputs = [_spec(d) for d in output_details]
        self._input_indices = [d["index"] for d in input_details]
        self._output_indices = [d["index"] for d in output_details]
        self._threads = options.threads
        self._xnnpack = xnnpack

    def bind(self, feeds: list[np.ndarray]) -> Callable[[], list[np.ndarray]]:
        """Inputs are written into the interpreter once, here; a call is invoke plus output read-back.

        That is what benchmark_model and litert-benchmark time, and it matches ONNX Runtime, which reads
        numpy inputs in place: a per-call ``set_tensor`` would charge TFLite alone for an input copy.
        """
        interpreter = self._interpreter
        for index, array in zip(self._input_indices, feeds, strict=True):
            interpreter.set_tensor(index, array)
        invoke, get_tensor, outputs = interpreter.invoke, interpreter.get_tensor, self._output_indices

        def run() -> list[np.ndarray]:
            invoke()
            return [get_tensor(index) for index in outputs]

        return run

    def bare_loop(self, feeds: list[np.ndarray], runs: int) -> list[int]:
        interpreter, clock = self._interpreter, time.perf_counter_ns
        for index, array in zip(self._input_indices, feeds, strict=True):
            interpreter.set_tensor(index, array)
        samples = []
        for _ in range(runs):
            start = clock()
            interpreter.invoke()
            [interpreter.get_tensor(index) for index in self._output_indices]
            samples.append(clock() - start)
        return samples

    def info(self) -> dict[str, Any]:
        return {
            "runtime": "ai-edge-litert",
            "runtime_version": module_version("ai-edge-litert"),
            "device": "cpu",
            "kernels": "xnnpack" if self._xnnpack else "builtin (no XNNPACK)",
            "threads": self._threads,
            "software_device": False,
        }


class TfliteCpu(Backend):
    name = "tflite_cpu"
    artifact_format = "tflite"
    threads_are_its_cores = True
    precisions = PRECISIONS  # the zoo makes each as a file of this format
    description = "LiteRT Interpreter on the CPU (XNNPACK by default; xnnpack: false for the builtin kernels)"

    @classmethod
    def available(cls) -> Availability:
        version, problem = installed_and_importable(("ai-edge-litert",), "ai_edge_litert.interpreter")
        if problem:
            return problem
        return Availability(True, f"ai-edge-litert {version}")

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return ("xnnpack",)

    @classmethod
    def option_problem(cls, name: str, value: Any) -> str | None:
        if name == "xnnpack" and not isinstance(value, bool):
            return f"xnnpack takes true or false, not {value!r}"
        return None

    def prepare(self, artifact: str, options: BackendOptions, batch_size: int,
                layout: InputLayout | None = None) -> Session:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        xnnpack = bool(options.extra.get("xnnpack", True))
        # BUILTIN_WITHOUT_DEFAULT_DELEGATES keeps the optimised builtin kernels but skips XNNPACK, which
        # is what "XNNPACK off" means in benchmark_model (--use_xnnpack=false).
        resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        interpreter = Interpreter(
            model_path=artifact, num_threads=options.threads, experimental_op_resolver_type=resolver
        )
        shape_for_batch(interpreter, batch_size, layout)
        return TfliteCpuSession(interpreter, options, xnnpack)

    def profile(self, artifact: str, options: BackendOptions, batch_size: int, layout: InputLayout | None,
                feeds: list[np.ndarray], runs: int, trace_path: str) -> ProfilePass:
        from backends.litert_profile import profile_or_refusal

        xnnpack = bool(options.extra.get("xnnpack", True))
        # the profiler's only route is LiteRT's CompiledModel, which refuses some files the Interpreter runs (it
        # cannot bind its own buffers to outputs whose shapes are dynamic): say so with LiteRT's own words
        return profile_or_refusal(
            ("Failed to set custom allocation", "Failed to register"),
            lambda refusal: f"not exposed for this file by ai-edge-litert {module_version('ai-edge-litert')}: its "
                            f"profiler runs through the CompiledModel API, which refuses it (\"{refusal}\"); the "
                            "Interpreter that timed it has no op profiler",
            artifact=artifact, feeds=feeds, runs=runs, threads=options.threads, accelerator="cpu",
            trace_path=trace_path,
            timed_api="the Interpreter (XNNPACK)" if xnnpack else "the Interpreter (builtin kernels)",
            builtin_kernels=not xnnpack)
