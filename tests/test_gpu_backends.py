"""The CUDA-side backends and GPU telemetry, tested against the real installed APIs on a machine without an
NVIDIA GPU: what must hold here is that nothing is faked (no CPU numbers under a GPU name) and every reason
says what is missing."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from backends.base import BackendOptions
from backends.onnxruntime_gpu import OnnxRuntimeCuda, OnnxRuntimeTensorrt, probe_model_bytes, provider_probe
from harness.gpu_telemetry import GpuSampler, gpu_environment, gpu_identity, nvml

NO_CUDA = "CUDAExecutionProvider" not in ort.get_available_providers()


def test_probe_model_is_a_valid_one_node_model():
    session = ort.InferenceSession(probe_model_bytes(), providers=["CPUExecutionProvider"])
    x = np.array([[-1.0, 0.0, 2.0, -3.0]], np.float32)
    np.testing.assert_array_equal(session.run(None, {"x": x})[0], np.maximum(x, 0))


@pytest.mark.skipif(not NO_CUDA, reason="this machine's onnxruntime has the CUDA provider")
@pytest.mark.parametrize("backend", [OnnxRuntimeCuda, OnnxRuntimeTensorrt])
def test_cpu_build_of_onnxruntime_makes_the_gpu_providers_unavailable_with_the_fix(backend):
    probe = provider_probe(backend.provider)
    assert probe["ok"] is False and "CPU build of onnxruntime" in probe["error"]
    state = backend.available()
    assert not state.ok and state.reason.startswith("onnxruntime ") and "accelbench[gpu]" in state.reason


@pytest.mark.skipif(not NO_CUDA, reason="this machine's onnxruntime has the CUDA provider")
def test_a_session_that_falls_back_to_the_cpu_is_refused(digits_artifacts):
    """ONNX Runtime, asked for CUDA it does not have, warns and runs on the CPU; prepare must refuse that."""
    with pytest.raises(RuntimeError, match="fell back to CPUExecutionProvider instead of CUDAExecutionProvider"):
        OnnxRuntimeCuda().prepare(str(digits_artifacts["onnxruntime_cpu"]), BackendOptions(), 1)


def test_precision_dispatch_of_the_onnxruntime_gpu_backends(tmp_path, monkeypatch):
    monkeypatch.setenv("ACCELBENCH_CACHE_DIR", str(tmp_path))
    cuda, trt = OnnxRuntimeCuda, OnnxRuntimeTensorrt
    assert cuda.unsupported_reason("fp16", BackendOptions()) is None
    assert "dequantizing to float" in cuda.unsupported_reason("int8", BackendOptions())
    assert trt.unsupported_reason("int8", BackendOptions()) is None
    assert "int8_dynamic" in trt.unsupported_reason("int8_dynamic", BackendOptions())
    fp16, int8 = trt().provider_options("fp16"), trt().provider_options("int8")
    assert fp16["trt_fp16_enable"] and not fp16["trt_int8_enable"]
    assert int8["trt_int8_enable"] and not int8["trt_fp16_enable"]
    assert int8["trt_engine_cache_enable"] and int8["trt_engine_cache_path"].startswith(str(tmp_path))
    assert int8["trt_timing_cache_enable"]


def test_telemetry_without_nvml_is_a_reason_not_an_error():
    lib, why_not = nvml()
    if lib is not None and gpu_environment()["devices"]:
        pytest.skip("this machine has an NVIDIA GPU: the telemetry has something to read")
    env = gpu_environment()
    assert env["devices"] == [] and env["nvml"]
    assert gpu_identity()["gpu"] is None and gpu_identity()["gpu_telemetry"] == env["nvml"]
    with GpuSampler() as sampler:
        sum(range(1000))
    result = sampler.result()
    assert set(result) == {"unavailable"} and result["unavailable"]
    if lib is None:
        assert why_not == result["unavailable"]
