"""tflite_delegate with a real external delegate library, compiled here from tests/data/null_delegate.c (a
delegate that claims no nodes), and with libraries that are missing, are not delegates, or refuse options."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, by_id, expand_file, run_cases, write_scenario

NOT_A_DELEGATE = __import__("numpy._core._multiarray_umath", fromlist=["_"]).__file__  # a shared library, no delegate
FAST = "{warmup_runs: 2, warmup_seconds: 0, min_runs: 20, min_seconds: 0.1, max_seconds: 5, timeout_s: 120}"


@pytest.fixture(scope="module")
def null_delegate(tmp_path_factory) -> Path:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler to build the test delegate")
    out = tmp_path_factory.mktemp("delegate") / "libnull_delegate.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(out), str(REPO / "tests/data/null_delegate.c")],
                   check=True)
    return out


@pytest.mark.e2e
def test_external_delegate_runs_and_bad_libraries_are_skipped_with_reasons(tmp_path, null_delegate):
    path = write_scenario(tmp_path, f"""
        name: delegates
        models: [digits_cnn]
        backends:
          - {{name: tflite_delegate, library: {null_delegate}, options: {{mode: test, verbose: true}}}}
          - {{name: tflite_delegate, label: missing, library: {tmp_path}/libnot_there.so}}
          - {{name: tflite_delegate, label: not_a_delegate, library: {NOT_A_DELEGATE}}}
          - {{name: tflite_delegate, label: refuses, library: {null_delegate}, options: {{fail: yes}}}}
          - {{name: tflite_delegate, label: with_xnnpack, library: {null_delegate}, xnnpack: true}}
          - {{name: tflite_delegate, label: static_only, library: {null_delegate}, options: {{static_only: 1}}}}
        batch_sizes: [1, 2]
        measure: {FAST}
    """)
    records = by_id(run_cases(tmp_path / "run", expand_file(path)))
    for batch in (1, 2):
        record = records[f"digits_cnn-fp32-b{batch}-tflite_delegate"]
        assert record["status"] == "passed", record["reason"]
        info = record["backend_info"]
        assert info["device"] == "delegate" and info["delegate_library"] == str(null_delegate)
        assert info["delegate_options"] == {"mode": "test", "verbose": "true"}
        # the null delegate claims nothing: every node stays on the builtin CPU kernels, and the record says so
        assert info["delegate_kernels"] == 0 and info["kernels"].endswith("TFLite's builtin kernels")
        assert record["accuracy"]["cosine_min"] > 0.99999 and record["latency_ms"]["p50"] > 0
    # with XNNPACK allowed, XNNPACK's own kernels show up (and are said to be counted)
    xnn = records["digits_cnn-fp32-b1-with_xnnpack"]
    assert xnn["status"] == "passed" and xnn["backend_info"]["delegate_kernels"] > 0
    assert "XNNPACK" in xnn["backend_info"]["kernels"]
    reasons = {label: records[f"digits_cnn-fp32-b1-{label}"] for label in ("missing", "not_a_delegate", "refuses")}
    assert all(r["status"] == "skipped" for r in reasons.values())
    missing = f"{tmp_path}/libnot_there.so"
    assert reasons["missing"]["reason"] == f"tflite_delegate: the delegate library {missing} does not exist"
    assert "undefined symbol: tflite_plugin_create_delegate" in reasons["not_a_delegate"]["reason"]
    assert "told to fail by its options" in reasons["refuses"]["reason"]
    # a delegate that refuses dynamic-sized tensors, on digits_cnn's dynamic-batch Flatten: a failure that says so
    static = records["digits_cnn-fp32-b1-static_only"]
    assert static["status"] == "failed" and "needs static tensor shapes" in static["reason"]


def test_delegate_options_are_checked_at_their_line(scenario_file):
    from tests.conftest import assert_scenario_error

    path = scenario_file("name: bad\nmodels: [digits_cnn]\nbackends:\n  - {name: tflite_delegate, library: 3}\n",
                         name="bad.yaml")
    assert_scenario_error(path, 4, ["library takes the path of a delegate library"])
