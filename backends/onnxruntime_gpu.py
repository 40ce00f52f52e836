"""ONNX Runtime on an NVIDIA GPU: the CUDA execution provider (`onnxruntime_cuda`) and the TensorRT one
(`onnxruntime_trt`). Two registry entries, one module: they differ only in the provider and its options.

Two pitfalls decide the design (ARCHITECTURE.md):

- `get_available_providers()` lists CUDA and TensorRT whenever onnxruntime-gpu is installed, GPU or not; a
  session asked for them then falls back to the CPU *silently*. So availability compiles a one-node model in
  a subprocess and checks `session.get_providers()`, and `prepare` checks it again for the real model: a
  case never reports CPU numbers under a GPU name. The reason given is ONNX Runtime's own load error.
- onnxruntime and onnxruntime-gpu install the same module: the `gpu` extra replaces the CPU build.

Inputs are copied to the device once, when bound (as tflite_cpu writes its inputs once); outputs are bound
on the device and a call is `run_with_iobinding` plus the copy of the outputs to the host, which is what a
caller that needs the result pays. ONNX Runtime synchronises its stream at the end of a run, so the wall
clock covers the GPU's work.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from typing import Any, ClassVar

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
from backends.onnxruntime_cpu import _spec
from backends.op_profile import ProfilePass
from backends.ort_profile import ort_profile
from model_zoo.cache import cache_dir
from model_zoo.inputs import InputLayout
from sysinfo.gpu_telemetry import gpu_identity, nvidia_driver_status
from sysinfo.probe import run_probe

PROBE_TIMEOUT_S = 300  # a first TensorRT engine build for even one node can take a while


def probe_model_bytes() -> bytes:
    """A one-node ONNX model (Relu on float32[1, 4]) made in memory: enough for a provider to claim it."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _probe(provider: str) -> dict[str, Any]:
    """Run in a subprocess by `provider_probe`: does `provider` really take a model here?"""
    import onnxruntime as ort

    if provider not in ort.get_available_providers():
        build = "the CPU build of onnxruntime" if "CUDAExecutionProvider" not in ort.get_available_providers() \
            else f"this onnxruntime build (providers: {', '.join(ort.get_available_providers())})"
        return {"ok": False, "error": f"{provider} is not in {build}; install accelbench[gpu] (onnxruntime-gpu "
                                      "replaces onnxruntime)"}
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(probe_model_bytes(), sess_options=options,
                                       providers=[provider, "CPUExecutionProvider"])
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:400]}"}
    used = session.get_providers()
    if used[0] != provider:
        return {"ok": False, "error": f"ONNX Runtime fell back to {used[0]}", "providers": used}
    return {"ok": True, "providers": used}


def _last_error_line(stderr: str) -> str:
    """ONNX Runtime prints why a provider did not load (a missing libcudnn, no CUDA device) on stderr."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for marker in ("Failed to load", "cannot open shared object", "CUDA failure", "no CUDA-capable device",
                   "TensorRT", "cuda"):
        hit = next((line for line in lines if marker in line), None)
        if hit:
            return hit[:400]
    return lines[-1][:400] if lines else ""


@functools.cache
def provider_probe(provider: str) -> dict[str, Any]:
    """Whether `provider` takes a model on this machine (once per process, in a subprocess)."""
    result, stderr = run_probe("backends.onnxruntime_gpu", [provider], PROBE_TIMEOUT_S, f"the {provider} probe")
    detail = _last_error_line(stderr)
    if not result["ok"] and detail and detail not in result["error"]:
        result["error"] += f" ({detail})"
    return result


class OrtGpuSession(Session):
    def __init__(self, session: Any, provider: str, provider_options: dict[str, Any]) -> None:
        self._session = session
        self._provider = provider
        self._provider_options = provider_options
        self.inputs = [_spec(n) for n in session.get_inputs()]
        self.outputs = [_spec(n) for n in session.get_outputs()]

    def bind(self, feeds: list[np.ndarray]) -> Callable[[], list[np.ndarray]]:
        import onnxruntime as ort

        binding = self._session.io_binding()
        self._device_inputs = [ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a), "cuda", 0) for a in feeds]
        for spec, value in zip(self.inputs, self._device_inputs, strict=True):
            binding.bind_ortvalue_input(spec.name, value)
        for spec in self.outputs:
            binding.bind_output(spec.name, "cuda", 0)
        run, copy = self._session.run_with_iobinding, binding.copy_outputs_to_cpu

        def call() -> list[np.ndarray]:
            run(binding)
            return copy()

        return call

    def bare_loop(self, feeds: list[np.ndarray], runs: int) -> list[int]:
        call = self.bind(feeds)  # the plain IOBinding loop a user would write is exactly this call
        clock, samples = time.perf_counter_ns, []
        for _ in range(runs):
            start = clock()
            call()
            samples.append(clock() - start)
        return samples

    def info(self) -> dict[str, Any]:
        return {
            "runtime": "onnxruntime-gpu",
            "runtime_version": module_version("onnxruntime-gpu") or module_version("onnxruntime"),
            "device": "gpu",
            "providers": self._session.get_providers(),
            "provider_options": {k: str(v) for k, v in self._provider_options.items()},
            "io_binding": "inputs on the device, outputs copied to the host each call",
            "software_device": False,
            **gpu_identity(),
        }


class _OrtGpu(Backend):
    artifact_format = "onnx"
    provider: ClassVar[str]

    @classmethod
    def available(cls) -> Availability:
        version, problem = installed_and_importable(("onnxruntime-gpu", "onnxruntime"), "onnxruntime")
        if problem:
            return problem
        probe = provider_probe(cls.provider)
        if not probe["ok"]:
            return Availability(False, f"onnxruntime {version}: {probe['error']}; {nvidia_driver_status()}")
        return Availability(True, f"onnxruntime {version}, {cls.provider} takes models here")

    def provider_options(self, precision: str) -> dict[str, Any]:
        return {}

    def prepare(self, artifact: str, options: BackendOptions, batch_size: int,
                layout: InputLayout | None = None) -> Session:
        import onnxruntime as ort

        provider_options = self.provider_options(options.precision)
        session = ort.InferenceSession(artifact, sess_options=ort.SessionOptions(),
                                       providers=[(self.provider, provider_options), "CPUExecutionProvider"])
        used = session.get_providers()
        if used[0] != self.provider:
            raise RuntimeError(f"ONNX Runtime fell back to {used[0]} instead of {self.provider} for {artifact}; "
                               "this case would have measured the CPU")
        wrapped = OrtGpuSession(session, self.provider, provider_options)
        input_shapes(wrapped.inputs, batch_size, layout)
        return wrapped

    def profile(self, artifact: str, options: BackendOptions, batch_size: int, layout: InputLayout | None,
                feeds: list[np.ndarray], runs: int, trace_path: str) -> ProfilePass:
        """ONNX Runtime's profiler on this provider; under TensorRT's, the engine shows as one opaque node."""
        import onnxruntime as ort

        provider_options = self.provider_options(options.precision)
        providers = [(self.provider, provider_options), "CPUExecutionProvider"]
        return ort_profile(
            lambda session_options: ort.InferenceSession(artifact, sess_options=session_options, providers=providers),
            ort.SessionOptions(), artifact, feeds, runs, trace_path,
            lambda session, arrays: OrtGpuSession(session, self.provider, provider_options).bind(arrays),
            save_optimized=self.provider != "TensorrtExecutionProvider")


class OnnxRuntimeCuda(_OrtGpu):
    name = "onnxruntime_cuda"
    provider = "CUDAExecutionProvider"
    precisions = ("fp32", "fp16")
    description = "ONNX Runtime, CUDA execution provider, IOBinding with device-resident inputs"

    @classmethod
    def unsupported_reason(cls, precision: str, options: BackendOptions) -> str | None:
        if precision in ("int8", "int8_dynamic"):
            return (f"onnxruntime_cuda does not run {precision}: the CUDA provider executes QDQ and dynamic-range "
                    "models by dequantizing to float, so the case would not measure int8 kernels (use onnxruntime_trt "
                    "or tensorrt)")
        return super().unsupported_reason(precision, options)


class OnnxRuntimeTensorrt(_OrtGpu):
    name = "onnxruntime_trt"
    provider = "TensorrtExecutionProvider"
    precisions = ("fp32", "fp16", "int8")
    description = "ONNX Runtime, TensorRT execution provider (engine and timing caches on disk), IOBinding"

    def provider_options(self, precision: str) -> dict[str, Any]:
        """Engines and timing caches go to the zoo's cache folder: the first build of a big model takes
        minutes, and ONNX Runtime keys its engine files by model, shapes and GPU itself."""
        folder = cache_dir() / "ort_trt"
        folder.mkdir(parents=True, exist_ok=True)
        return {
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(folder),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(folder),
            "trt_fp16_enable": precision == "fp16",
            "trt_int8_enable": precision == "int8",  # the file is QDQ: explicit scales, no calibration table
        }


if __name__ == "__main__" and sys.argv[1:2] == ["--probe"]:
    print(json.dumps(_probe(sys.argv[2])))
