"""tflite_gpu: LiteRT's GPU accelerator, run for real on whatever Vulkan adapter the machine has.

CI installs Mesa's llvmpipe (a software Vulkan GPU), so there these tests run the real GPU path and check
that its numbers are labelled as software. On a machine with no Vulkan driver at all, the end-to-end tests
skip with the backend's own reason, except under CI, where a missing driver is a broken install.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from backends.tflite_gpu import describe_adapter, failure_reason, parse_adapter
from tests.conftest import REPO, by_id, expand_file, run_cases, write_scenario

LLVMPIPE_LINE = ("I0000 00:00:1795753583.273248   10654 environment.cc:532] Selected adapter: llvmpipe (LLVM 15.0.6, "
                 "256 bits), arch=software, vendor=mesa, backend=Vulkan, adapterType=CPU / Software")


def test_adapter_line_is_parsed_and_software_is_named():
    adapter = parse_adapter(f"INFO: something\n{LLVMPIPE_LINE}\nINFO: more\n")
    assert adapter == {"name": "llvmpipe (LLVM 15.0.6, 256 bits)", "arch": "software", "vendor": "mesa",
                       "backend": "Vulkan", "adapter_type": "CPU / Software", "software": True}
    assert describe_adapter(adapter) == ("llvmpipe (LLVM 15.0.6, 256 bits) (mesa, Vulkan, SOFTWARE adapter on the CPU, "
                                         "not a GPU)")
    hardware = parse_adapter("Selected adapter: NVIDIA RTX 4090, arch=ada, vendor=nvidia, backend=Vulkan, "
                             "adapterType=Discrete GPU")
    assert hardware["software"] is False and "hardware adapter" in describe_adapter(hardware)
    assert parse_adapter("no adapter here") is None


def test_failure_reason_names_the_native_cause():
    log = ("WARNING: [npu_registry.cc:34] NPU accelerator could not be loaded\n"
           "Warning: vkCreateInstance: Found no drivers!\n"
           "ERROR: [delegate_webgpu.cc:359] Failed to initialize WebGPU environment: INTERNAL: No adapters found\n")
    assert failure_reason(log, "RuntimeError: ERROR: [x.h:1]").startswith(
        "Warning: vkCreateInstance: Found no drivers! (RuntimeError")
    static = "WARNING: Attempting to use a delegate that only supports static-sized tensors with a graph ..."
    assert "static tensor shapes" in failure_reason(static, "RuntimeError: x")
    assert failure_reason("", "") == "the GPU accelerator did not start"


def _availability(env: dict[str, str]) -> tuple[bool, str]:
    code = "from backends.tflite_gpu import TfliteGpu; a = TfliteGpu.available(); print(a.ok); print(a.reason)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    ok, reason = done.stdout.strip().splitlines()[-2:]
    return ok == "True", reason


def test_without_a_vulkan_driver_the_backend_is_unavailable_with_the_drivers_reason():
    # a real machine state, not a mock: the Vulkan loader is pointed at a driver manifest that does not exist
    ok, reason = _availability({**os.environ, "VK_ICD_FILENAMES": "/nonexistent/no_driver.json",
                                "VK_DRIVER_FILES": "/nonexistent/no_driver.json"})
    assert not ok
    assert reason.startswith("ai-edge-litert ") and ("no drivers" in reason.lower() or "adapter" in reason.lower())


@pytest.fixture(scope="module")
def gpu_available() -> str:
    ok, reason = _availability(dict(os.environ))
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(f"CI installs Mesa's Vulkan driver, yet tflite_gpu is unavailable: {reason}")
        pytest.skip(f"tflite_gpu is not available here: {reason}")
    return reason


@pytest.mark.e2e
def test_gpu_cases_run_for_real_and_are_labelled_software(tmp_path, gpu_available):
    path = write_scenario(tmp_path, """
        name: gpu_soft
        models:
          - {name: mobilenet_v2, input_shape: [32, 32, 3], precisions: [fp32], batch_sizes: [1, 2]}
          - {name: mobilenet_v2, input_shape: [32, 32, 3], label: mobilenet_v2_half, precisions: [fp16]}
          - {name: digits_cnn, precisions: [fp32, int8]}
        backends: [tflite_gpu]
        accuracy: {min_cosine: 0.999}
        measure: {warmup_runs: 2, warmup_seconds: 0, min_runs: 5, min_seconds: 0.2, max_seconds: 10, timeout_s: 300}
    """)
    records = by_id(run_cases(tmp_path / "run", expand_file(path)))
    software = "SOFTWARE adapter" in gpu_available
    # llvmpipe compiles its shaders on the first inference (20-30 s at 32x32 on 2 cores): few cases on purpose
    for case_id, precision, batch in (("mobilenet_v2-fp32-b1-tflite_gpu", "fp32", 1),
                                      ("mobilenet_v2-fp32-b2-tflite_gpu", "fp32", 2),
                                      ("mobilenet_v2_half-fp16-b1-tflite_gpu", "fp16", 1)):
        record = records[case_id]
        info = record["backend_info"]
        if precision == "fp32":  # fp32 is computed in fp32 on the GPU: it must track the CPU reference
            assert record["status"] == "passed", record["reason"]
            assert record["accuracy"]["cosine_min"] >= 0.999
            assert record["accuracy"]["reference"]["backend"] == "tensorflow"
        else:  # fp16 arithmetic: the figure is reported, the budget decides
            assert record["status"] in ("passed", "failed"), record["reason"]
            assert record["accuracy"]["cosine_min"] > 0.9  # fp16 arithmetic through 50 layers: 0.979 measured
        assert record["latency_ms"]["p50"] > 0 and record["outputs"][0]["shape"] == [batch, 1000]
        assert info["device"] == "gpu" and info["fully_accelerated"] is True and info["adapter_known"] is True
        assert info["software_device"] is software and info["adapter"] in gpu_available
        assert info["compute_precision"] == ("fp32 (enforce_f32)" if precision == "fp32" else "fp16")
    # int8 would not be integer arithmetic on this accelerator: skipped with the reason
    assert records["digits_cnn-int8-b1-tflite_gpu"]["status"] == "skipped"
    assert "floating point" in records["digits_cnn-int8-b1-tflite_gpu"]["reason"]
    # digits_cnn's Flatten computes a shape from the batch: the zoo bakes the case's batch into the GPU's file
    digits = records["digits_cnn-fp32-b1-tflite_gpu"]
    assert digits["status"] == "passed", digits["reason"]
    assert digits["inputs"][0]["shape"] == [1, 8, 8, 1] and digits["accuracy"]["cosine_min"] >= 0.999
    assert abs(digits["accuracy"]["top1_drop"]) <= 0.005  # task accuracy on the held-out split, fp32 on the GPU


COND_MODEL = """
import sys
import tensorflow as tf

class Cond(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32)], autograph=False)
    def f(self, x):
        return tf.cond(tf.reduce_sum(x) > 0, lambda: x * 2.0, lambda: x - 1.0)

module = Cond()
converter = tf.lite.TFLiteConverter.from_concrete_functions([module.f.get_concrete_function()], module)
open(sys.argv[1], "wb").write(converter.convert())
"""


@pytest.mark.e2e
def test_an_op_the_gpu_refuses_is_named_in_the_reason(tmp_path, gpu_available):
    """A real file with an IF op: LiteRT logs a heading line and, under it, the op it refuses; the reason keeps both
    (it kept the heading alone, which names no op)."""
    model = tmp_path / "cond.tflite"
    subprocess.run([sys.executable, "-c", COND_MODEL, str(model)], check=True, capture_output=True, timeout=300)
    path = write_scenario(tmp_path, """
        name: gpu_if
        models: [{path: cond.tflite}]
        backends: [tflite_gpu]
        measure: {warmup_runs: 1, warmup_seconds: 0, min_runs: 3, min_seconds: 0.01, max_seconds: 5, timeout_s: 300}
    """)
    record = by_id(run_cases(tmp_path / "run", expand_file(path)))["cond-fp32-b1-tflite_gpu"]
    assert record["status"] == "failed"
    assert "Following operations are not supported by GPU delegate: IF: Operation is not supported." \
        in record["reason"], record["reason"]
