"""The CUDA-side backends and GPU telemetry, tested against the real installed APIs on a machine without an
NVIDIA GPU: what must hold here is that nothing is faked (no CPU numbers under a GPU name) and every reason
says what is missing."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from backends.base import BackendOptions
from backends.onnxruntime_gpu import OnnxRuntimeCuda, OnnxRuntimeTensorrt, probe_model_bytes, provider_probe
from sysinfo.gpu_telemetry import GpuSampler, gpu_environment, gpu_identity, nvml

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


# --- tensorrt: what can be checked without TensorRT ---------------------------------------------------------

from backends.tensorrt import Tensorrt, build_recipe, engine_key  # noqa: E402

TRT10_FLAGS = {"FP16", "INT8", "SPARSE_WEIGHTS", "TF32", "REFIT"}  # names TensorRT 10's BuilderFlag has
TRT11_FLAGS = {"SPARSE_WEIGHTS", "TF32", "REFIT"}  # 11 removed FP16 / INT8
CREATION = {"STRONGLY_TYPED"}


@pytest.mark.parametrize(("version", "flags", "precision", "compression", "expected"), [
    ("10.13.0", TRT10_FLAGS, "fp32", "none", {"strongly_typed": False, "flags": []}),
    ("10.13.0", TRT10_FLAGS, "fp16", "none", {"strongly_typed": False, "flags": ["FP16"]}),
    ("10.13.0", TRT10_FLAGS, "int8", "none", {"strongly_typed": False, "flags": ["INT8", "FP16"]}),
    ("10.13.0", TRT10_FLAGS, "fp16", "prune:2:4", {"strongly_typed": False, "flags": ["SPARSE_WEIGHTS", "FP16"]}),
    ("11.4.0", TRT11_FLAGS, "fp16", "none", {"strongly_typed": True, "flags": []}),
    ("11.4.0", TRT11_FLAGS, "int8", "prune:2:4", {"strongly_typed": True, "flags": ["SPARSE_WEIGHTS"]}),
])
def test_tensorrt_precision_follows_the_version(version, flags, precision, compression, expected):
    assert build_recipe(version, precision, compression, flags, CREATION) == expected


def test_tensorrt_recipe_reasons():
    assert "older than 10" in build_recipe("8.6.1", "fp16", "none", {"FP16", "INT8"}, CREATION)["error"]
    assert "SPARSE_WEIGHTS" in build_recipe("11.4.0", "fp32", "prune:2:4", {"TF32"}, CREATION)["error"]
    assert "strongly typed" in build_recipe("11.4.0", "fp16", "none", set(), set())["error"]
    assert "FP16" in build_recipe("10.1.0", "fp16", "none", {"INT8"}, CREATION)["error"]


def test_tensorrt_engine_key_changes_with_everything_that_makes_another_engine():
    base = dict(onnx_sha256="a" * 64, trt_version="10.13.0", gpu="NVIDIA H100 sm_90", precision="fp16",
                compression="none", shapes={"x": (8, 224, 224, 3)}, recipe={"strongly_typed": False, "flags": ["FP16"]})
    key = engine_key(**base)
    assert key == engine_key(**base) and len(key) == 64
    for field, other in (("onnx_sha256", "b" * 64), ("trt_version", "11.4.0"), ("gpu", "NVIDIA L4 sm_89"),
                         ("precision", "int8"), ("compression", "prune:2:4"), ("shapes", {"x": (1, 224, 224, 3)}),
                         ("recipe", {"strongly_typed": True, "flags": []})):
        assert engine_key(**{**base, field: other}) != key, field


def test_tensorrt_is_unavailable_here_with_the_reason():
    state = Tensorrt.available()
    if state.ok:
        pytest.skip(f"TensorRT runs here: {state.reason}")
    assert state.reason.startswith("tensorrt ") and state.reason != "tensorrt "
    assert "int8_dynamic" in Tensorrt.unsupported_reason("int8_dynamic", BackendOptions())


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA: the cases would run")
def test_gpu_scenario_collects_every_case_and_skips_each_cuda_case_with_its_reason(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    selection = "tensorrt or onnxruntime_cuda or onnxruntime_trt"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                           str(REPO / "scenarios" / "gpu.yaml"), "-k", selection,
                           "--accelbench-out", str(tmp_path / "run")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # 3 CUDA backends x 2 models x 3 precisions x 3 batch sizes x 2 modes, none dropped, none run on the CPU
    assert "108 skipped" in done.stdout.splitlines()[-1], done.stdout[-2000:]
    assert "error" not in done.stdout.splitlines()[-1] and "Traceback" not in done.stdout
    for reason in ("tensorrt is not available: tensorrt", "onnxruntime_cuda is not available: onnxruntime ",
                   "onnxruntime_trt is not available: onnxruntime "):
        assert reason in done.stdout, reason


@pytest.mark.parametrize(("action", "expected"), [
    ("ok", {"ok": True, "said": "ok"}),
    ("no", {"ok": False, "said": "no"}),
    ("segfault", {"ok": False, "error": "the test probe died (signal 11)"}),
    ("hang", {"ok": False, "error": "the test probe did not finish in 2 s"}),
])
def test_probe_children_answer_crash_or_hang_without_hurting_the_caller(action, expected):
    from sysinfo.probe import run_probe

    answer, stderr = run_probe("tests.probe_faults", [action], 2, "the test probe")
    assert answer == expected
    if action == "segfault":
        assert "about to crash" in stderr


def test_cuda_reasons_say_what_the_driver_looks_like():
    import ctypes

    from sysinfo.gpu_telemetry import nvidia_driver_status

    try:
        ctypes.CDLL("libcuda.so.1")
        has_driver = True
    except OSError:
        has_driver = False
    status = nvidia_driver_status()
    missing = "no NVIDIA driver here (libcuda.so.1 not found)"
    assert status.startswith("NVIDIA driver") if has_driver else status == missing
    for backend in (Tensorrt, OnnxRuntimeCuda, OnnxRuntimeTensorrt):
        state = backend.available()
        if not state.ok:
            assert state.reason.endswith(f"; {status}"), (backend.name, state.reason)
