"""The two front doors (``pytest scenario.yaml`` and ``accelbench run``) and the other CLI commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scenario.load import expand, load_scenario
from scenario.selection import select
from tests.conftest import FAST_MEASURE, cli_env, read_jsonl, run_cli, write_scenario
from tests.fault_backend import REGISTRATION, UNAVAILABLE_REASON

# pytester's in-process runs re-register the installed plugin; its modules are already imported by then
QUIET = ("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")

SCENARIO = f"""
    name: doors
    models:
      - digits_cnn
      - path: corrupt.onnx
    backends: [tflite_cpu, onnxruntime_cpu]
    precisions: [fp32, fp16]
    measure: {FAST_MEASURE}
    race: {{max_seconds: 8}}  # the items and counts are checked here; what a race finds, in tests/test_race.py
"""
PASSED = {"digits_cnn-fp32-b1-tflite_cpu", "digits_cnn-fp32-b1-onnxruntime_cpu", "digits_cnn-fp16-b1-tflite_cpu",
          "digits_cnn-fp16-b1-onnxruntime_cpu"}
FAILED = {"corrupt-fp32-b1-onnxruntime_cpu", "corrupt-fp16-b1-onnxruntime_cpu"}


def make_scenario(folder: Path) -> Path:
    (folder / "corrupt.onnx").write_bytes(np.random.default_rng(0).bytes(2000))
    return write_scenario(folder, SCENARIO, "doors.yaml")


def collected_ids(result: pytest.RunResult) -> list[str]:
    return [line.split("::", 1)[1].strip() for line in result.outlines if "::" in line]


# --- pytest front door, in-process ----------------------------------------------------------------------------


@pytest.fixture
def doors(pytester: pytest.Pytester) -> Path:
    return make_scenario(pytester.path)


def test_one_item_per_case_with_the_stable_id(pytester, doors):
    result = pytester.runpytest("--collect-only", "-q", *QUIET, str(doors))
    assert result.ret == 0
    ids = collected_ids(result)
    # each case, then one race item per (model, batch size, mode) group of two or more cases
    assert ids == [case.case_id for case in expand(load_scenario(doors))] + ["race-digits_cnn-b1", "race-corrupt-b1"]
    assert len(ids) == 2 * 2 * 2 + 2


@pytest.mark.parametrize(("marker", "expected"), [
    ("onnxruntime_cpu", {"digits_cnn-fp32-b1-onnxruntime_cpu", "digits_cnn-fp16-b1-onnxruntime_cpu",
                         "corrupt-fp32-b1-onnxruntime_cpu", "corrupt-fp16-b1-onnxruntime_cpu"}),
    ("fp16 and tflite_cpu", {"digits_cnn-fp16-b1-tflite_cpu", "corrupt-fp16-b1-tflite_cpu"}),
    ("latency and not fp16 and not onnxruntime_cpu", {"digits_cnn-fp32-b1-tflite_cpu",
                                                      "corrupt-fp32-b1-tflite_cpu"}),
    ("throughput", set()),
], ids=["backend", "precision-and-backend", "mode", "absent-mode"])
def test_markers_per_backend_precision_and_mode(pytester, doors, marker, expected):
    result = pytester.runpytest("--collect-only", "-q", *QUIET, "--strict-markers", str(doors), "-m", marker)
    assert set(collected_ids(result)) == expected


def test_k_matches_the_model_and_scenario_name_like_the_cli(pytester, doors):
    result = pytester.runpytest("--collect-only", "-q", *QUIET, str(doors), "-k", "doors and digits_cnn and fp16")
    assert set(collected_ids(result)) == {"digits_cnn-fp16-b1-tflite_cpu", "digits_cnn-fp16-b1-onnxruntime_cpu"}
    cli = {case.case_id for case in select(expand(load_scenario(doors)), "doors and digits_cnn and fp16",
                                           extra_names=("doors", doors.name, doors.parent.name))}
    assert cli == set(collected_ids(result))


@pytest.mark.e2e
def test_k_selection_runs_only_the_selected_cases(pytester, doors):
    out = pytester.path / "run"
    result = pytester.runpytest(*QUIET, str(doors), "-k", "onnxruntime and b1 and not corrupt",
                                "--accelbench-out", str(out))
    result.assert_outcomes(passed=2, deselected=8)  # and both groups' race items: a race is of a whole group
    records = read_jsonl(out / "results.jsonl")
    assert {r["case_id"]: r["status"] for r in records} == {
        "digits_cnn-fp32-b1-onnxruntime_cpu": "passed", "digits_cnn-fp16-b1-onnxruntime_cpu": "passed"}


def test_malformed_scenario_is_a_collection_error_naming_file_and_line(pytester):
    write_scenario(pytester.path, "name: bad\nmodels: [digits_cn]\nbackends: [tflite_cpu]\nmesure: {}\n", "bad.yaml")
    result = pytester.runpytest(*QUIET, "bad.yaml")
    assert result.ret == pytest.ExitCode.INTERRUPTED  # errors during collection stop the session
    output = result.stdout.str()
    assert "bad.yaml:2: models[0]: unknown zoo model 'digits_cn' (did you mean 'digits_cnn'?)" in output
    assert "bad.yaml:4: unknown key 'mesure' (did you mean 'measure'?)" in output
    assert "Traceback" not in output and "scenario.py" not in output
    assert "1 error" in result.outlines[-1]


def test_files_outside_a_scenarios_folder_are_collected_only_when_named(pytester):
    write_scenario(pytester.path, "name: x\nmodels: [digits_cnn]\nbackends: [tflite_cpu]\n", "config.yaml")
    write_scenario(pytester.path / "scenarios", "name: y\nmodels: [digits_cnn]\nbackends: [tflite_cpu]\n",
                   "found.yaml")
    result = pytester.runpytest("--collect-only", "-q", *QUIET, str(pytester.path))
    assert collected_ids(result) == ["digits_cnn-fp32-b1-tflite_cpu"]
    assert "scenarios/found.yaml::" in result.stdout.str() and "config.yaml" not in result.stdout.str()


# --- both front doors over one scenario, as a user runs them -------------------------------------------------


@pytest.fixture(scope="module")
def both_doors(tmp_path_factory, digits_artifacts):
    folder = tmp_path_factory.mktemp("doors")
    path = make_scenario(folder)
    cli = run_cli("run", str(path), "--out", str(folder / "cli"), cwd=folder)
    pytest_done = subprocess.run(
        [sys.executable, "-m", "pytest", str(path), "-p", "no:cacheprovider", "--accelbench-out",
         str(folder / "pytest"), "-rs"], cwd=folder, capture_output=True, text=True, env=cli_env(), timeout=300)
    return folder, cli, pytest_done


@pytest.mark.e2e
def test_cli_and_pytest_produce_the_same_cases_and_statuses(both_doors):
    folder, cli, pytest_done = both_doors
    assert cli.returncode == 1, cli.stderr  # a failed case
    assert pytest_done.returncode == 1, pytest_done.stdout[-3000:]
    from_cli = [(r["case_id"], r["status"]) for r in read_jsonl(folder / "cli" / "results.jsonl")]
    from_pytest = [(r["case_id"], r["status"]) for r in read_jsonl(folder / "pytest" / "results.jsonl")]
    assert from_cli == from_pytest
    statuses = dict(from_cli)
    assert {k for k, v in statuses.items() if v == "passed"} == PASSED
    assert {k for k, v in statuses.items() if v == "failed"} == FAILED
    assert sum(v == "skipped" for v in statuses.values()) == 2
    for run in ("cli", "pytest"):
        assert (folder / run / "env.json").is_file() and (folder / run / "benchmark.json").is_file()
    # the CLI prints the summary table and the run folder on stdout, progress on stderr, no traceback
    assert "accelbench results" in cli.stdout and f"results: {folder / 'cli'}" in cli.stdout
    assert "Traceback" not in cli.stdout + cli.stderr


@pytest.mark.e2e
def test_pytest_output_skips_failures_and_summary(both_doors):
    folder, _, pytest_done = both_doors
    output = pytest_done.stdout
    lines = output.splitlines()
    # skipped cases carry their reason in -rs output
    skip_lines = [line for line in lines if line.startswith("SKIPPED")]
    assert any("corrupt.onnx is an ONNX file; accelbench cannot convert ONNX to TFLite" in line
               for line in skip_lines), skip_lines
    assert all("doors.yaml: " in line and "pytest_plugin" not in line for line in skip_lines), skip_lines
    # the failure is one readable line: the case, its status and the reason; no Python traceback
    failure = [line for line in lines if line.startswith("corrupt-fp32-b1-onnxruntime_cpu: FAILED: ")]
    assert len(failure) == 1, output[-4000:]
    assert "load model failed" in failure[0] and str(folder / "corrupt.onnx") in failure[0]
    assert "Traceback" not in output and "raise CaseFailure" not in output and "pytest_plugin.py:" not in \
        output.split("= FAILURES =")[1].split("= accelbench =")[0]
    # the accelbench summary table closes the run, after the failures
    assert output.index("= FAILURES =") < output.index("= accelbench =") < output.index("accelbench results")
    summary = output[output.index("= accelbench ="):]
    for case_id in PASSED | FAILED:
        assert case_id in summary
    assert "4 passed, 2 failed, 2 skipped" in summary
    # pytest's count has the groups' race items too: digits_cnn's raced, corrupt's had one case that passed
    assert "2 failed, 5 passed, 3 skipped" in lines[-1]


@pytest.mark.e2e
def test_pytest_benchmark_compare_reads_benchmark_json(both_doors):
    folder, _, _ = both_doors
    compare = Path(sys.executable).with_name("pytest-benchmark")
    done = subprocess.run([str(compare), "compare", str(folder / "cli" / "benchmark.json")], capture_output=True,
                          text=True, timeout=120, cwd=folder)
    assert done.returncode == 0, done.stderr
    for case_id in PASSED:
        assert case_id in done.stdout
    assert "corrupt" not in done.stdout  # no samples, no benchmark entry


@pytest.mark.e2e
def test_cli_k_selection(tmp_path, digits_artifacts):
    path = make_scenario(tmp_path)
    done = run_cli("run", str(path), "--out", str(tmp_path / "run"), "-k", "onnxruntime and b1 and fp32 and digits")
    assert done.returncode == 0, done.stderr
    assert [(r["case_id"], r["status"]) for r in read_jsonl(tmp_path / "run" / "results.jsonl")] == [
        ("digits_cnn-fp32-b1-onnxruntime_cpu", "passed")]
    nothing = run_cli("run", str(path), "--out", str(tmp_path / "none"), "-k", "tensorrt")
    assert nothing.returncode == 2 and "matches -k 'tensorrt'" in nothing.stderr
    assert not (tmp_path / "none").exists()
    malformed = run_cli("run", str(path), "-k", "onnxruntime and")
    assert malformed.returncode == 2 and "Traceback" not in malformed.stderr


# --- doctor, zoo, overhead -----------------------------------------------------------------------------------


def test_doctor_json_lists_every_backend_with_a_reason():
    env = {k: v for k, v in cli_env().items() if k != "ACCELBENCH_BACKENDS"}
    done = run_cli("doctor", "--json", env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)["backends"]}
    assert list(rows) == ["tflite_cpu", "tflite_gpu", "tflite_delegate", "onnxruntime_cpu", "onnxruntime_cuda",
                          "onnxruntime_trt", "tensorrt", "tensorflow", "python_callable"]
    callable_row = rows.pop("python_callable")  # the fixture's measure_callable: any Python runs it
    assert callable_row["available"] is True and callable_row["artifact_format"] == "python"
    assert rows.pop("tflite_delegate")["reason"].endswith("each scenario names its delegate library (library:)")
    trt = rows.pop("tensorrt")
    assert (trt["reason"].startswith("tensorrt ") and ("tensorrt " in trt["reason"] and " on " in trt["reason"]) \
        is trt["available"]) or not trt["available"]
    for name in ("onnxruntime_cuda", "onnxruntime_trt"):  # available only where ONNX Runtime really takes them
        row = rows.pop(name)
        assert row["reason"].startswith("onnxruntime ") and row["artifact_format"] == "onnx"
        assert ("takes models here" in row["reason"]) is row["available"]
    gpu = rows.pop("tflite_gpu")  # depends on the machine's Vulkan driver: either way, the reason says what it found
    assert gpu["reason"].startswith("ai-edge-litert ") and gpu["artifact_format"] == "tflite"
    assert ("GPU accelerator on " in gpu["reason"]) is gpu["available"]
    expected = {"tflite_cpu": ("ai-edge-litert ", "tflite"), "onnxruntime_cpu": ("onnxruntime ", "onnx"),
                "tensorflow": ("tensorflow ", "savedmodel")}
    for name, (reason_start, fmt) in expected.items():
        assert rows[name]["available"] is True
        assert rows[name]["reason"].startswith(reason_start)
        assert rows[name]["artifact_format"] == fmt
    probe = json.loads(done.stdout)["cpu_stability"]
    assert probe["windows"] >= 4 and len(probe["window_medians_us"]) == probe["windows"]
    assert probe["slowest_over_fastest"] >= 1 and probe["steady"] == (probe["cv"] <= 0.03)


def test_doctor_reports_unavailable_and_broken_registered_backends():
    env = {**cli_env(), "ACCELBENCH_BACKENDS": REGISTRATION + ",broken=tests.no_such_module:Nothing"}
    done = run_cli("doctor", "--json", env=env, timeout=120)
    assert done.returncode == 0 and "Traceback" not in done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)["backends"]}
    assert rows["never_here"] == {"name": "never_here", "available": False, "reason": UNAVAILABLE_REASON,
                                  "artifact_format": "onnx", "description": ""}
    assert rows["broken"]["available"] is False
    assert "adapter failed to load" in rows["broken"]["reason"] and "no_such_module" in rows["broken"]["reason"]
    assert rows["fault_ort"]["available"] is True


def test_doctor_table(tmp_path):
    done = run_cli("doctor", cwd=tmp_path, timeout=120)
    assert done.returncode == 0
    for name in ("tflite_cpu", "onnxruntime_cpu", "tensorflow"):
        assert name in done.stdout
    assert "accelbench[gpu]" in done.stdout or "tensorrt " in done.stdout  # brackets survive rich's markup
    assert "CPU speed steady (CV" in done.stdout or "CPU speed unsteady (CV" in done.stdout


def test_zoo_list_json_lists_the_five_models_with_shapes():
    done = run_cli("zoo", "list", "--json", timeout=120)
    assert done.returncode == 0, done.stderr
    shapes = {row["name"]: row["input_shape"] for row in json.loads(done.stdout)}
    assert shapes == {"digits_cnn": [8, 8, 1], "mobilenet_v2": [224, 224, 3], "resnet50": [224, 224, 3],
                      "efficientnet_b0": [224, 224, 3], "tiny_transformer": [64]}


@pytest.mark.e2e
def test_overhead_json_gives_a_ratio_per_backend(digits_artifacts):
    done = run_cli("overhead", "--json", "--rounds", "2", "--runs", "200", timeout=300)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert set(results) == {"tflite_cpu", "onnxruntime_cpu"}
    for row in results.values():
        assert isinstance(row["ratio"], float) and row["ratio"] > 0
        assert row["ratio"] == pytest.approx(row["harness_median_us"] / row["bare_median_us"])
        assert row["samples_each"] == 2 * 200
        assert row["model"] == "digits_cnn"


def test_cli_usage_errors_exit_2():
    done = run_cli("frobnicate", timeout=60)
    assert done.returncode == 2 and "invalid choice" in done.stderr
