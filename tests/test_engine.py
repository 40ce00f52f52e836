"""The engine end to end: real model files, real backends, one real worker process per case.

Fault isolation uses the test doubles of tests/fault_backend.py (the real ONNX Runtime adapter plus an injected
segfault, hang or memory leak), registered the way external backends are: ACCELBENCH_BACKENDS.
"""

from __future__ import annotations

import gzip
import json
import signal
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from results.stats import latency_summary_ms
from scenario.load import ScenarioError, load_scenario
from tests.conftest import (
    FAST_MEASURE,
    LATENCY_FIELDS,
    RECORD_FIELDS,
    by_id,
    expand_file,
    read_jsonl,
    run_cases,
    write_scenario,
)
from tests.fault_backend import REGISTRATION

pytestmark = pytest.mark.e2e


def assert_contract(record: dict) -> None:
    """Every field of the results contract is present, whatever the status."""
    missing = [name for name in RECORD_FIELDS if name not in record]
    assert not missing, f"{record['case_id']} lacks {missing}"
    assert record["status"] in ("passed", "failed", "skipped", "invalid")
    assert isinstance(record["accuracy"], dict) and isinstance(record["backend_info"], dict)
    assert isinstance(record["samples_ns"], list)


def assert_measured(record: dict) -> None:
    """A passed record: numbers that are consistent with each other and with the raw samples."""
    assert_contract(record)
    assert record["status"] == "passed", record["reason"]
    assert record["reason"] is None
    latency = record["latency_ms"]
    assert set(LATENCY_FIELDS) <= latency.keys()
    assert latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    assert latency["min"] > 0 and latency["std"] >= 0
    samples = record["samples_ns"]
    assert len(samples) == record["runs"] >= record["measure"]["min_runs"]
    assert all(isinstance(s, int) and s > 0 for s in samples)
    assert latency == pytest.approx(latency_summary_ms(samples))  # the summary is of the kept raw samples
    assert record["measured_seconds"] >= record["measure"]["min_seconds"]
    assert record["throughput_ips"] == pytest.approx(len(samples) * record["batch_size"] / record["measured_seconds"])
    assert record["median_ci_ms"]["low"] <= latency["p50"] <= record["median_ci_ms"]["high"]
    assert record["init_ms"] > 0 and record["first_inference_ms"] > 0
    assert record["peak_rss_mb"] > 10  # a Python process with numpy loaded is far above this
    artifact = Path(record["artifact"])
    assert artifact.exists()
    files = sorted(p for p in artifact.rglob("*") if p.is_file()) if artifact.is_dir() else [artifact]
    assert record["model_size_bytes"] == sum(p.stat().st_size for p in files)
    assert record["model_size_gzip_bytes"] == sum(len(gzip.compress(p.read_bytes(), 6)) for p in files)
    worker = record["worker"]
    assert worker["exit_code"] == 0
    assert worker["fixed_cost_ms"] > 0 and worker["startup_ms"] > 0 and worker["import_ms"] >= 0
    assert record["warmup"]["runs"] >= record["measure"]["warmup_runs"]


# --- the two CPU backends, every mode ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory, digits_artifacts):
    folder = tmp_path_factory.mktemp("cpu")
    path = write_scenario(folder, f"""
        name: cpu
        models: [digits_cnn]
        backends: [tflite_cpu, {{name: onnxruntime_cpu, threads: 1}}]
        batch_sizes: [1, 4]
        mode: [latency, throughput, concurrent]
        measure: {FAST_MEASURE}
    """)
    cases = expand_file(path)
    run_dir = folder / "run"
    return cases, run_dir, run_cases(run_dir, cases)


def test_every_case_passes_with_the_full_record(cpu_run, digits_artifacts):
    cases, _, records = cpu_run
    assert [r["case_id"] for r in records] == [c.case_id for c in cases]
    assert len(records) == 2 * 2 * 3
    for record in records:
        assert_measured(record)
        assert record["model"] == "digits_cnn" and record["precision"] == "fp32"
        assert Path(record["artifact"]) == digits_artifacts[record["backend"]]
        assert record["inputs"] == [{"name": record["inputs"][0]["name"], "shape": [record["batch_size"], 8, 8, 1],
                                     "dtype": "float32"}]
        assert record["outputs"][0]["shape"] == [record["batch_size"], 10]


def test_backend_info_says_what_ran(cpu_run):
    _, _, records = cpu_run
    for record in records:
        info = record["backend_info"]
        if record["backend"] == "tflite_cpu":
            assert info["runtime"] == "ai-edge-litert" and info["kernels"] == "xnnpack"
        else:
            assert info["runtime"] == "onnxruntime" and info["providers"] == ["CPUExecutionProvider"]
            assert info["threads"] == 1 and record["backend_options"] == {"threads": 1}
        assert info["software_device"] is False


def test_run_folder_files(cpu_run):
    cases, run_dir, records = cpu_run
    lines = read_jsonl(run_dir / "results.jsonl")
    assert len(lines) == len(cases)  # one line per case, appended as each case finished
    assert lines == records
    env = json.loads((run_dir / "env.json").read_text())
    assert {r["env_id"] for r in records} == {env["env_id"]}
    assert env["machine"]["cpu_logical"] >= 1 and "onnxruntime" in env["libraries"]
    benchmark = json.loads((run_dir / "benchmark.json").read_text())
    assert [b["name"] for b in benchmark["benchmarks"]] == [r["case_id"] for r in records]
    for bench, record in zip(benchmark["benchmarks"], records, strict=True):
        assert bench["stats"]["rounds"] == len(record["samples_ns"])
        assert bench["stats"]["median"] == pytest.approx(record["latency_ms"]["p50"] / 1e3)


def test_modes(cpu_run):
    _, _, records = cpu_run
    for record in records:
        suffix = "" if record["mode"] == "latency" else f"-{record['mode']}"
        assert record["case_id"] == f"digits_cnn-fp32-b{record['batch_size']}-{record['backend_label']}{suffix}"
        if record["mode"] == "concurrent":
            per_stream = record["per_stream_runs"]
            assert len(per_stream) == 2 and all(runs > 0 for runs in per_stream)
            assert sum(per_stream) == len(record["samples_ns"])
            assert record["backend_info"]["streams"] == 2
        else:
            assert record["per_stream_runs"] is None


def test_peak_rss_is_the_workers_own_not_its_parents(tmp_path, digits_artifacts):
    """Linux carries ru_maxrss across fork and exec: a big parent must not inflate a small worker's peak."""
    import psutil

    path = write_scenario(tmp_path, f"""
        name: rss
        models: [digits_cnn]
        backends: [tflite_cpu]
        measure: {FAST_MEASURE}
    """)
    ballast = np.ones(1536 * 2**20 // 8)  # 1.5 GiB, touched, held by this (the parent) process
    parent_rss_mb = psutil.Process().memory_info().rss / 2**20
    (record,) = run_cases(tmp_path / "run", expand_file(path))
    del ballast
    assert record["status"] == "passed", record["reason"]
    assert parent_rss_mb > 1536
    # a LiteRT worker with a 60 kB model: numpy, LiteRT and the evaluation module, far below its parent
    assert 10 < record["peak_rss_mb"] < 600, (record["peak_rss_mb"], parent_rss_mb)


def test_case_that_cannot_reach_min_runs_is_invalid_not_hidden(tmp_path, digits_artifacts):
    path = write_scenario(tmp_path, """
        name: short
        models: [digits_cnn]
        backends: [onnxruntime_cpu]
        measure: {warmup_runs: 1, warmup_seconds: 0, min_runs: 1000000000, min_seconds: 0.05, max_seconds: 0.2}
    """)
    (record,) = run_cases(tmp_path / "run", expand_file(path))
    assert_contract(record)
    assert record["status"] == "invalid"
    assert "min_runs 1000000000" in record["reason"] and "max_seconds 0.2" in record["reason"]
    assert record["reason"].startswith(f"only {len(record['samples_ns'])} runs in ")
    # the numbers are kept, flagged, not hidden
    assert 0 < len(record["samples_ns"]) < 1_000_000_000
    assert record["latency_ms"]["p50"] > 0
    assert record["measured_seconds"] >= 0.2


def test_tensorflow_backend_runs_the_savedmodel(tmp_path, digits_artifacts):
    path = write_scenario(tmp_path, f"""
        name: tf
        models: [digits_cnn]
        backends: [tensorflow]
        batch_sizes: [2]
        measure: {FAST_MEASURE}
    """)
    (record,) = run_cases(tmp_path / "run", expand_file(path))
    assert_measured(record)
    assert Path(record["artifact"]) == digits_artifacts["tensorflow"]
    assert (Path(record["artifact"]) / "saved_model.pb").is_file()
    assert record["backend_info"]["runtime"] == "tensorflow"
    assert record["outputs"][0]["shape"] == [2, 10]


# --- fault isolation ---------------------------------------------------------------------------------------

FAULT_TIMEOUT_S = 3
FAULTS_SCENARIO = f"""
    name: faults
    models: [digits_cnn]
    backends:
      - {{name: fault_ort, fault: segv, fault_at: prepare, label: segv_prepare}}
      - {{name: fault_ort, fault: hang, fault_at: run, label: hang_run}}
      - onnxruntime_cpu
      - {{name: fault_ort, fault: oom, fault_at: run, label: oom_run}}
      - {{name: fault_ort, fault: segv, fault_at: run, label: segv_run}}
      - {{name: fault_ort, fault: hang, fault_at: prepare, label: hang_prepare}}
      - {{name: fault_ort, fault: oom, fault_at: prepare, label: oom_prepare}}
      - {{name: fault_ort, fault: raise, fault_at: run, label: raise_run}}
      - probe_ort
      - tflite_cpu
    measure: {{warmup_runs: 2, warmup_seconds: 0, min_runs: 20, min_seconds: 0.05, max_seconds: 2,
              timeout_s: {FAULT_TIMEOUT_S}, memory_limit_mb: 300}}
"""


@pytest.fixture(scope="module")
def fault_run(tmp_path_factory, digits_artifacts):
    from scenario.skips import cached_availability

    folder = tmp_path_factory.mktemp("faults")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ACCELBENCH_BACKENDS", REGISTRATION)
        cached_availability.cache_clear()
        cases = expand_file(write_scenario(folder, FAULTS_SCENARIO))
        records = run_cases(folder / "run", cases)
    cached_availability.cache_clear()
    return cases, folder / "run", by_id(records)


def _fault(records, label):
    record = records[f"digits_cnn-fp32-b1-{label}"]
    assert_contract(record)
    assert record["status"] == "failed"
    assert record["latency_ms"] is None and record["samples_ns"] == []
    return record


@pytest.mark.parametrize("phase", ["prepare", "run"])
def test_segfault_fails_the_case_only(fault_run, phase):
    _, _, records = fault_run
    record = _fault(records, f"segv_{phase}")
    assert "worker crashed with SIGSEGV" in record["reason"]
    assert record["worker"]["exit_code"] == -signal.SIGSEGV


@pytest.mark.parametrize("phase", ["prepare", "run"])
def test_hang_is_killed_at_the_timeout(fault_run, phase):
    _, _, records = fault_run
    record = _fault(records, f"hang_{phase}")
    assert record["reason"] == f"worker timed out after {FAULT_TIMEOUT_S} s (measure.timeout_s) and was killed"
    assert record["worker"]["exit_code"] == -signal.SIGKILL
    assert record["worker"]["wall_ms"] >= FAULT_TIMEOUT_S * 1000


@pytest.mark.parametrize("phase", ["prepare", "run"])
def test_memory_hog_is_killed_at_the_memory_limit(fault_run, phase):
    _, _, records = fault_run
    record = _fault(records, f"oom_{phase}")
    assert "ran out of memory" in record["reason"]
    assert "measure.memory_limit_mb (300 MB)" in record["reason"]
    assert record["worker"]["exit_code"] == -signal.SIGKILL


def test_python_error_is_a_one_line_reason_with_the_traceback_in_the_log(fault_run):
    _, _, records = fault_run
    record = _fault(records, "raise_run")
    assert record["reason"].startswith("first inference failed: injected failure (log: ")
    assert "\n" not in record["reason"]
    log = Path(record["worker"]["log"]).read_text()
    assert "Traceback" in log and "RuntimeError: injected failure" in log


def test_normal_cases_of_the_same_run_pass_and_are_recorded(fault_run):
    cases, run_dir, records = fault_run
    lines = read_jsonl(run_dir / "results.jsonl")
    assert [r["case_id"] for r in lines] == [c.case_id for c in cases]  # nothing lost after a crash
    for case_id in ("digits_cnn-fp32-b1-onnxruntime_cpu", "digits_cnn-fp32-b1-probe_ort",
                    "digits_cnn-fp32-b1-tflite_cpu"):
        assert_measured(records[case_id])
    statuses = [r["status"] for r in lines]
    assert statuses.count("passed") == 3 and statuses.count("failed") == 7


def test_onnxruntime_worker_never_imports_tensorflow(fault_run):
    _, _, records = fault_run
    record = records["digits_cnn-fp32-b1-probe_ort"]
    assert record["status"] == "passed", record["reason"]
    info = record["backend_info"]
    assert info["runtime"] == "onnxruntime"  # the real adapter ran
    assert info["probe_pid"] == record["worker"]["pid"]  # and the probe ran inside the measured worker
    assert info["tensorflow_imported"] is False
    assert record["worker"]["fixed_cost_ms"] > 0


# --- bad model files ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_files_run(tmp_path_factory, digits_artifacts):
    folder = tmp_path_factory.mktemp("badfiles")
    rng = np.random.default_rng(0)
    (folder / "models").mkdir()
    (folder / "models" / "corrupt.onnx").write_bytes(rng.bytes(3000))
    (folder / "models" / "broken.tflite").write_bytes(rng.bytes(3000))
    path = write_scenario(folder, f"""
        name: bad_files
        models:
          - path: models/corrupt.onnx
          - path: models/missing.onnx
          - path: models/broken.tflite
          - digits_cnn
        backends: [onnxruntime_cpu, tflite_cpu]
        measure: {FAST_MEASURE}
    """)
    (folder / "models" / "missing.onnx").write_bytes(b"")  # there when the scenario loads (else: exit 2, its line)
    cases = expand_file(path)
    (folder / "models" / "missing.onnx").unlink()  # and gone by the time it runs
    return folder, by_id(run_cases(folder / "run", cases))


def test_corrupt_onnx_file_fails_with_a_reason(bad_files_run):
    folder, records = bad_files_run
    record = records["corrupt-fp32-b1-onnxruntime_cpu"]
    assert_contract(record)
    assert record["status"] == "failed"
    assert "load model failed" in record["reason"]
    assert str(folder / "models" / "corrupt.onnx") in record["reason"]
    assert "protobuf" in record["reason"].lower()


def test_corrupt_tflite_file_fails_with_a_reason(bad_files_run):
    _, records = bad_files_run
    record = records["broken-fp32-b1-tflite_cpu"]
    assert record["status"] == "failed"
    assert "load model failed" in record["reason"] and "Flatbuffer" in record["reason"]


def test_missing_model_file_fails_with_a_reason(bad_files_run):
    folder, records = bad_files_run
    record = records["missing-fp32-b1-onnxruntime_cpu"]
    assert record["status"] == "failed"
    assert record["reason"] == f"{folder / 'models' / 'missing.onnx'}: no such file or directory"
    assert "worker" not in record  # no process was spawned for a model that does not exist


def test_impossible_conversions_are_skipped_without_a_worker(bad_files_run):
    folder, records = bad_files_run
    for case_id, reason in (("corrupt-fp32-b1-tflite_cpu", "cannot convert ONNX to TFLite"),
                            ("missing-fp32-b1-tflite_cpu", "cannot convert ONNX to TFLite"),
                            ("broken-fp32-b1-onnxruntime_cpu", "cannot convert TFLite to ONNX")):
        record = records[case_id]
        assert_contract(record)
        assert record["status"] == "skipped"
        assert reason in record["reason"]
        assert not (folder / "run" / "logs" / f"{case_id}.log").exists()


def test_bad_files_do_not_stop_the_others(bad_files_run):
    _, records = bad_files_run
    assert_measured(records["digits_cnn-fp32-b1-onnxruntime_cpu"])
    assert_measured(records["digits_cnn-fp32-b1-tflite_cpu"])


# --- a user's ONNX file with dynamic dimensions ------------------------------------------------------------


def _dynamic_onnx(path: Path) -> None:
    """y = relu(x) with x: float32[batch, features], both dimensions dynamic."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "features"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "features"])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "dynamic", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def test_user_onnx_with_dynamic_dimensions_runs_with_input_shape(tmp_path):
    _dynamic_onnx(tmp_path / "dynamic.onnx")
    path = write_scenario(tmp_path, f"""
        name: user
        models:
          - {{path: dynamic.onnx, input_shape: [16], label: with_shape}}
          - {{path: dynamic.onnx, inputs: {{x: {{shape: [8]}}}}, label: described}}
        backends: [onnxruntime_cpu]
        batch_sizes: [3]
        measure: {FAST_MEASURE}
    """)
    records = by_id(run_cases(tmp_path / "run", expand_file(path)))
    with_shape = records["with_shape-fp32-b3-onnxruntime_cpu"]
    assert_measured(with_shape)
    assert with_shape["inputs"] == [{"name": "x", "shape": [3, 16], "dtype": "float32"}]
    assert Path(with_shape["artifact"]) == tmp_path / "dynamic.onnx"  # a user's file is used in place
    described = records["described-fp32-b3-onnxruntime_cpu"]
    assert_measured(described)
    assert described["inputs"] == [{"name": "x", "shape": [3, 8], "dtype": "float32"}]
    # fidelity against an independent reference: the same file, ONNX Runtime without graph optimisation
    assert described["accuracy"]["reference"]["description"] == "onnxruntime_cpu fp32 (graph_optimization: disable)"
    assert described["accuracy"]["is_reference"] is False and described["accuracy"]["guard"]["min_cosine"] == 0.999
    assert described["backend_info"]["threads"] >= 1  # unset threads: the usable cores, stated
    # without a shape for its dynamic dimension the scenario stops at load time, at the model's line
    bad = write_scenario(tmp_path / "bad", """
        name: user
        models:
          - {path: ../dynamic.onnx}
        backends: [onnxruntime_cpu]
    """)
    with pytest.raises(ScenarioError, match=r"scenario.yaml:3: models\[0\].path: input 'x' has dynamic dimensions"):
        load_scenario(bad)


def _onnx_file(path: Path, x_shape: list, y_shape: list, op: str = "Relu") -> None:
    """A one-node model y = op(x); ReduceSum sums everything, batch included (an output with no batch axis)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"])], op.lower(), [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


def test_batch_sizes_a_file_cannot_take_are_skipped_at_expansion_naming_the_file_and_input(tmp_path):
    """A fixed batch of 1, or inputs that carry no batch at all (batch_axis: none): batch 4 is a skip known before
    anything is built, naming the user's file (not a cached artefact) and the input; batch 1 runs."""
    _onnx_file(tmp_path / "fixed.onnx", [1, 8], [1, 8])
    _onnx_file(tmp_path / "dynamic.onnx", ["batch", 8], ["batch", 8])
    path = write_scenario(tmp_path, f"""
        name: batches
        models:
          - {{path: fixed.onnx}}
          - {{path: dynamic.onnx, inputs: {{x: {{batch_axis: none, shape: [2, 8]}}}}, label: unbatched}}
          - {{path: dynamic.onnx}}
        backends: [onnxruntime_cpu]
        precisions: [fp32, int8_dynamic]
        batch_sizes: [1, 4]
        measure: {FAST_MEASURE}
    """)
    cases = {case.case_id: case for case in expand_file(path)}
    for precision in ("fp32", "int8_dynamic"):
        assert cases[f"fixed-{precision}-b1-onnxruntime_cpu"].skip_reason is None
        fixed = cases[f"fixed-{precision}-b4-onnxruntime_cpu"].skip_reason
        assert fixed.startswith(f"{tmp_path / 'fixed.onnx'}: input 'x' has a fixed batch dimension of 1"), fixed
        unbatched = cases[f"unbatched-{precision}-b4-onnxruntime_cpu"].skip_reason
        assert unbatched.startswith(f"{tmp_path / 'dynamic.onnx'}: batch size 4 needs an input that carries the "
                                    "batch, and no input does ('x'"), unbatched
        assert cases[f"dynamic-{precision}-b4-onnxruntime_cpu"].skip_reason is None
    records = by_id(run_cases(tmp_path / "run", [cases["fixed-int8_dynamic-b4-onnxruntime_cpu"]]))
    assert records["fixed-int8_dynamic-b4-onnxruntime_cpu"]["status"] == "skipped"
    assert not (tmp_path / "run" / "logs" / "artifacts.log").exists()  # nothing was converted for it



def test_a_file_that_fixes_batch_4_runs_at_4_against_a_reference_at_4(tmp_path):
    """Batch 4 is the only batch such a file takes: its reference runs at 4 too (it ran at 1 and failed every case
    with "fidelity could not be checked"), and its cases pass with their figures; batch 1 is the skip."""
    _onnx_file(tmp_path / "four.onnx", [4, 8], [4, 8], op="Sigmoid")
    path = write_scenario(tmp_path, f"""
        name: four
        models: [{{path: four.onnx}}]
        backends: [onnxruntime_cpu]
        precisions: [fp32, fp16]
        batch_sizes: [1, 4]
        measure: {FAST_MEASURE}
    """)
    cases = expand_file(path)
    assert {case.reference_batch for case in cases} == {4}
    records = by_id(run_cases(tmp_path / "run", cases))
    assert records["four-fp32-b1-onnxruntime_cpu"]["status"] == "skipped"
    for precision in ("fp32", "fp16"):
        record = records[f"four-{precision}-b4-onnxruntime_cpu"]
        assert record["status"] == "passed", record["reason"]
        assert record["accuracy"]["fidelity"]["score"] > 0.99 and record["accuracy"]["samples"] >= 16

def test_a_models_data_file_feeds_the_evaluation_and_the_calibration(tmp_path):
    """data: inputs.npz gives real samples for everything a model is fed: the fidelity evaluation set holds the
    file's samples and the int8 file is calibrated on them; a file that is not there is an error at its line."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])
    weights = numpy_helper.from_array(np.random.default_rng(0).normal(size=(8, 8)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mm", [x], [y], [weights])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
              tmp_path / "matmul.onnx")
    samples = np.linspace(-1, 1, 5 * 8, dtype=np.float32).reshape(5, 8)
    np.savez(tmp_path / "inputs.npz", x=samples)
    path = write_scenario(tmp_path, f"""
        name: data_file
        models: [{{path: matmul.onnx, data: inputs.npz}}]
        backends: [onnxruntime_cpu]
        precisions: [fp32, int8]
        measure: {FAST_MEASURE}
    """)
    records = by_id(run_cases(tmp_path / "run", expand_file(path)))
    assert_measured(records["matmul-fp32-b1-onnxruntime_cpu"])
    evaluated = np.load(tmp_path / "run" / "evaluation" / "matmul" / "inputs.npz")
    assert np.array_equal(evaluated["a0"].reshape(5, 8), samples)
    int8 = records["matmul-int8-b1-onnxruntime_cpu"]
    assert int8["artifact_meta"]["calibration_source"] == f"the model's data: {tmp_path / 'inputs.npz'}"
    assert int8["artifact_meta"]["calibration_samples"] == 5
    missing = write_scenario(tmp_path / "bad", """
        name: data_file
        models:
          - {path: ../matmul.onnx, data: nowhere.npz}
        backends: [onnxruntime_cpu]
    """)
    with pytest.raises(ScenarioError, match=r"scenario.yaml:3: models\[0\].data: no such data file"):
        load_scenario(missing)


def test_an_output_the_file_does_not_have_is_an_error_at_its_line(tmp_path):
    """outputs: {name: {classes: true}} with a name the file lacks would fall back silently to the guess."""
    _onnx_file(tmp_path / "model.onnx", ["batch", 8], ["batch", 8])
    path = write_scenario(tmp_path, """
        name: outputs
        models:
          - path: model.onnx
            outputs: {logits: {classes: true}}
        backends: [onnxruntime_cpu]
    """)
    with pytest.raises(ScenarioError, match=r"scenario.yaml:4: models\[0\].outputs: model.onnx has no output named "
                                            r"'logits' \(its outputs: 'y'\)"):
        load_scenario(path)


def test_two_files_of_one_name_are_told_apart_by_their_folders(tmp_path):
    """det/model.onnx and cls/model.onnx label their cases det_model and cls_model, not model_default_0 and _1."""
    for folder in ("det", "cls"):
        (tmp_path / folder).mkdir()
        _onnx_file(tmp_path / folder / "model.onnx", ["batch", 8], ["batch", 8])
    path = write_scenario(tmp_path, """
        name: same_names
        models: [{path: det/model.onnx}, {path: cls/model.onnx}]
        backends: [onnxruntime_cpu]
    """)
    assert sorted(case.model_label for case in expand_file(path)) == ["cls_model", "det_model"]


def test_an_fp32_case_whose_fidelity_cannot_be_evaluated_fails(tmp_path):
    """An output that sums over the batch cannot be cut into samples at batch 4: the fp32 case's fidelity cannot be
    evaluated, and a case nobody could check is not a pass, fp32 included; batch 1 is checked and passes."""
    _onnx_file(tmp_path / "total.onnx", ["batch", 8], [1, 1], op="ReduceSum")
    path = write_scenario(tmp_path, f"""
        name: total
        models: [{{path: total.onnx}}]
        backends: [onnxruntime_cpu]
        batch_sizes: [1, 4]
        measure: {FAST_MEASURE}
    """)
    records = by_id(run_cases(tmp_path / "run", expand_file(path)))
    assert_measured(records["total-fp32-b1-onnxruntime_cpu"])
    failed = records["total-fp32-b4-onnxruntime_cpu"]
    assert failed["status"] == "failed" and failed["latency_ms"]["p50"] > 0  # measured, and not a result to choose
    assert failed["reason"].startswith("fidelity could not be checked: evaluation on the reference inputs failed: "
                                       "output 'y' of shape [1, 1] at batch 4 has no single batch axis"), failed


# --- the artefact cache ------------------------------------------------------------------------------------


def test_a_files_compressed_size_is_kept_across_runs_and_recomputed_when_the_file_changes(tmp_path, monkeypatch):
    """gzip of resnet50's 300 MB of artefacts took ~10 s a run: each file's compressed size is kept on disk, keyed
    by its path, size, mtime and inode, so a second run reads it back, and a file changed since is gzipped again."""
    import os

    from harness.engine import file_sizes

    monkeypatch.setenv("ACCELBENCH_CACHE_DIR", str(tmp_path / "cache"))
    model = tmp_path / "model.onnx"
    model.write_bytes(b"abc" * 1000)
    assert file_sizes(str(model)) == (3000, len(gzip.compress(b"abc" * 1000, 6)))
    [memo] = (tmp_path / "cache" / "file-facts").iterdir()
    memo.write_text("7")  # what a second run reads back, not recomputed
    assert file_sizes(str(model)) == (3000, 7)
    model.write_bytes(os.urandom(3000))  # same size, new bytes and mtime: a new key, gzipped again
    os.utime(model, ns=(model.stat().st_atime_ns, model.stat().st_mtime_ns + 1))
    assert file_sizes(str(model)) == (3000, len(gzip.compress(model.read_bytes(), 6)))
    # a memo that cannot be written costs a recompute only: a cache "folder" that is a file (chmod would not stop
    # root, whom CI runs as)
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("ACCELBENCH_CACHE_DIR", str(tmp_path / "not-a-folder"))
    other = tmp_path / "other.onnx"
    other.write_bytes(b"x" * 10)
    assert file_sizes(str(other)) == (10, len(gzip.compress(b"x" * 10, 6)))
    assert file_sizes(str(other)) == (10, len(gzip.compress(b"x" * 10, 6)))


def test_second_run_reuses_the_cached_artefact(tmp_path, monkeypatch):
    """A fresh cache: the first run builds digits_cnn for TFLite, the second builds nothing."""
    monkeypatch.setenv("ACCELBENCH_CACHE_DIR", str(tmp_path / "cache"))
    path = write_scenario(tmp_path, f"""
        name: cache
        models: [digits_cnn]
        backends: [tflite_cpu]
        measure: {FAST_MEASURE}
    """)
    (first,) = run_cases(tmp_path / "run1", expand_file(path))
    assert_measured(first)
    artifact = Path(first["artifact"])
    assert artifact.is_relative_to(tmp_path / "cache")
    build_log = tmp_path / "run1" / "logs" / "artifacts.log"
    assert build_log.exists() and build_log.stat().st_size > 0  # it really built
    built_at = artifact.stat().st_mtime_ns

    (second,) = run_cases(tmp_path / "run2", expand_file(path))
    assert_measured(second)
    assert second["artifact"] == first["artifact"]
    assert artifact.stat().st_mtime_ns == built_at
    assert not (tmp_path / "run2" / "logs" / "artifacts.log").exists()  # no build process was started
