"""accelbench inside a user's own code: the Python API (accelbench.run, accelbench.load_runs), the ``accelbench``
pytest fixture, and ``pytest -n`` refused.

Speed differences are made by construction (``slowed_tflite`` with ``slowdown: 2.0`` is about three times slower
than without, on any machine), so nothing here depends on this machine's speed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import accelbench
from reporting.frame import COLUMNS
from tests.conftest import FAST_MEASURE, cli_env, write_scenario
from tests.fault_backend import REGISTRATION

FAST = {"warmup_runs": 2, "warmup_seconds": 0, "min_runs": 20, "min_seconds": 0.05, "max_seconds": 10, "timeout_s": 60}
RACE = {"max_seconds": 12, "round_seconds": 0.2, "slice_ms": 20, "fresh": "session"}


def env() -> dict[str, str]:
    return {**cli_env(), "ACCELBENCH_BACKENDS": REGISTRATION}


@pytest.fixture
def test_backends_here(monkeypatch: pytest.MonkeyPatch) -> None:
    from scenario.skips import cached_availability

    monkeypatch.setenv("ACCELBENCH_BACKENDS", REGISTRATION)
    cached_availability.cache_clear()


@pytest.mark.e2e
def test_run_a_dict_scenario_and_load_its_folders_as_the_reports_table(tmp_path: Path, digits_artifacts,
                                                                        test_backends_here) -> None:
    scenario = {"name": "api", "models": ["digits_cnn"], "measure": FAST, "race": RACE,
                "backends": [{"name": "slowed_tflite", "threads": 1, "slowdown": 0, "label": "quick"},
                             {"name": "slowed_tflite", "threads": 1, "slowdown": 2.0, "label": "laggard"}],
                "budgets": [{"select": {"backend": "laggard"}, "max_slowdown": 1.5}]}
    lines: list[str] = []
    result = accelbench.run(scenario, out=tmp_path / "run", progress=lines.append)
    assert [r.case_id for r in result.records] == ["digits_cnn-fp32-b1-quick", "digits_cnn-fp32-b1-laggard"]
    assert all(isinstance(r, accelbench.Record) and r.status == "passed" for r in result.records)
    assert [race.status for race in result.races] == ["raced"]
    [verdict] = result.budgets
    assert verdict.status == "missed" and not result.ok  # what `accelbench run` would exit 1 on
    assert result.report is not None and result.report.exists()
    assert any(line.startswith("[2/2] digits_cnn-fp32-b1-laggard passed") for line in lines), lines
    frame = accelbench.load_runs(tmp_path / "run")
    assert list(frame.columns) == list(COLUMNS)
    assert list(frame["case_id"]) == [r.case_id for r in result.records]
    assert list(frame["baseline"]) == ["quick fp32", "quick fp32"]
    assert frame.loc[1, "speedup"] < 1  # the laggard, against the quick baseline
    copy = tmp_path / "copy" / "run"
    shutil.copytree(tmp_path / "run", copy)
    both = accelbench.load_runs([tmp_path / "run", copy])
    assert len(both) == 4 and both["run"].nunique() == 2 and list(both.columns) == list(COLUMNS)


def test_a_bad_dict_scenario_names_the_key_and_a_missing_folder_names_itself(tmp_path: Path) -> None:
    with pytest.raises(accelbench.ScenarioError) as caught:
        accelbench.run({"name": "x", "models": ["digit_cnn"], "backends": ["tflite_cpu"],
                        "budgets": [{"max_p5_ms": 3}]}, out=tmp_path / "never")
    message = str(caught.value)
    assert "<scenario dict>" in message and "unknown zoo model 'digit_cnn' (did you mean 'digits_cnn'?)" in message
    assert "budgets[0]: unknown key 'max_p5_ms' (did you mean 'max_p50_ms'?)" in message
    assert not (tmp_path / "never").exists()
    from results.runs import RunFolderError

    with pytest.raises(RunFolderError, match="nowhere"):
        accelbench.load_runs(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no case of <scenario dict> matches k='tensorrt'"):
        accelbench.run({"name": "x", "models": ["digits_cnn"], "backends": ["tflite_cpu"]}, k="tensorrt",
                       out=tmp_path / "never")
    assert not (tmp_path / "never").exists()


USER_TESTS = f"""
    import os

    FAST = {FAST!r}
    RACE = {RACE!r}
    QUICK = {{"backend": "slowed_tflite", "threads": 1, "slowdown": 0}}
    LAGGARD = {{"backend": "slowed_tflite", "threads": 1, "slowdown": 2.0}}


    def test_the_quick_one_pays(accelbench):
        r = accelbench.compare("digits_cnn", base=LAGGARD, new=QUICK, measure=FAST, race=RACE,
                               budgets={{"min_speedup": 1.5}})
        print("COMPARISON", r, r.speedup_low, r.speedup_high)
        assert r.ratio_low <= r.ratio <= r.ratio_high < 0.7
        assert [v.status for v in r.budgets] == ["passed"]


    def test_a_p50_budget_missed(accelbench):
        accelbench.measure("digits_cnn", backend="slowed_tflite", threads=1, slowdown=0, measure=FAST,
                           budgets={{"max_p50_ms": 0.000001}})


    def test_a_pipeline_in_a_worker(accelbench):
        record = accelbench.measure_callable("pipeline:make_runner", batch_size=2, measure=FAST)
        assert record.worker is not None and record.worker.pid != os.getpid()
        assert "isolation" not in record.backend_info and record.backend_info["target"] == "pipeline:make_runner"
        assert record.p50_ms >= 2.0  # it sleeps 2 ms a call


    def test_a_closure_here(accelbench):
        record = accelbench.measure_callable(lambda: (lambda: sum(range(1000))), measure=FAST,
                                             budgets={{"max_p50_ms": 1000}})
        assert record.worker is None and record.backend_info["isolation"].startswith("not isolated")
"""

PIPELINE = """
import time


def make_runner(batch_size):
    data = list(range(1000 * batch_size))

    def run():
        time.sleep(0.002)
        return sum(data)

    return run
"""


@pytest.mark.e2e
def test_the_fixture_compares_in_one_sitting_judges_budgets_and_records_as_scenario_cases_do(tmp_path: Path,
                                                                                            digits_artifacts) -> None:
    (tmp_path / "test_user.py").write_text(textwrap.dedent(USER_TESTS))
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    scenario = write_scenario(tmp_path, f"""
        name: beside
        models: [digits_cnn]
        backends: [{{name: slowed_tflite, threads: 1, slowdown: 0}}]
        measure: {FAST_MEASURE}
    """)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "pytest", str(scenario), "test_user.py", "-p", "no:cacheprovider",
                           "-v", "-rP", "--accelbench-out", str(out)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env=env())
    text = done.stdout
    assert done.returncode == 1, text[-4000:]
    assert "test_user.py::test_the_quick_one_pays PASSED" in text, text[-4000:]
    assert "test_user.py::test_a_pipeline_in_a_worker PASSED" in text, text[-4000:]
    assert "test_user.py::test_a_closure_here PASSED" in text, text[-4000:]
    assert "[not isolated]" in text
    assert "test_user.py::test_a_p50_budget_missed FAILED" in text, text[-4000:]
    assert "BUDGET MISSED: digits_cnn-fp32-b1-slowed_tflite: max_p50_ms 1e-06: MISSED" in text, text[-4000:]
    [comparison] = [line for line in text.splitlines() if line.startswith("COMPARISON")]
    assert "digits_cnn-fp32-b1-new / digits_cnn-fp32-b1-base" in comparison and "paired rounds in one sitting" in \
        comparison
    # every record in the session's run folder, each with the fields of a scenario case's record
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    by_scenario = {(r["scenario"], r["case_id"]): r for r in records}
    test = "test_user.py_{}".format  # each test's cases are a scenario named by its node id
    assert set(by_scenario) == {("beside", "digits_cnn-fp32-b1-slowed_tflite"),
                                (test("test_the_quick_one_pays"), "digits_cnn-fp32-b1-base"),
                                (test("test_the_quick_one_pays"), "digits_cnn-fp32-b1-new"),
                                (test("test_a_p50_budget_missed"), "digits_cnn-fp32-b1-slowed_tflite"),
                                (test("test_a_pipeline_in_a_worker"), "make_runner-b2-python_callable"),
                                (test("test_a_closure_here"), "lambda-b1-not-isolated")}
    shapes = {tuple(sorted(r)) for r in records}
    assert len(shapes) == 1, shapes
    assert all(r["status"] == "passed" and r["samples_ns"] for r in records)
    races = [json.loads(line) for line in (out / "race.jsonl").read_text().splitlines()]
    assert [(r["scenario"], r["baseline"]) for r in races] == [(test("test_the_quick_one_pays"), "base fp32")]
    budgets = [json.loads(line) for line in (out / "budgets.jsonl").read_text().splitlines()]
    assert {(b["case_id"], b["status"]) for b in budgets} == {("digits_cnn-fp32-b1-new", "passed"),
                                                              ("digits_cnn-fp32-b1-slowed_tflite", "missed"),
                                                              ("lambda-b1-not-isolated", "passed")}
    assert (out / "report.html").exists()


def test_pytest_n_is_refused_in_one_line_on_scenarios_and_the_fixture_and_left_alone_elsewhere(tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path, "name: s\nmodels: [digits_cnn]\nbackends: [tflite_cpu]\n")
    (tmp_path / "test_user.py").write_text("def test_measures(accelbench):\n    accelbench.measure('digits_cnn')\n")
    (tmp_path / "test_plain.py").write_text("def test_one():\n    assert 1 + 1 == 2\n\n\n"
                                            "def test_two():\n    assert 2 * 2 == 4\n")

    def pytest_n(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", *args],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env())

    refused = pytest_n(str(scenario))
    assert refused.returncode == pytest.ExitCode.USAGE_ERROR, refused.stdout + refused.stderr
    [line] = [line for line in refused.stderr.splitlines() if "accelbench" in line]
    assert line == ("ERROR: accelbench: pytest -n runs tests in parallel on this machine, which would make every "
                    "timing wrong; run scenarios and accelbench tests without -n (across machines: --shard K/N)")
    fixture = pytest_n("test_user.py")
    assert fixture.returncode == 1 and "accelbench: pytest -n runs tests in parallel" in fixture.stdout
    assert not (tmp_path / "reports").exists()  # nothing was measured
    plain = pytest_n("test_plain.py")
    assert plain.returncode == 0 and "2 passed" in plain.stdout, plain.stdout[-2000:]


def test_a_fixture_call_a_user_gets_wrong_fails_in_one_line(pytester) -> None:
    pytester.makepyfile(test_wrong="""
        def test_bad_budget(accelbench):
            accelbench.measure("digits_cnn", budgets={"max_p5_ms": 3})

        def test_relative_on_measure(accelbench):
            accelbench.measure("digits_cnn", budgets={"min_speedup": 1.2})

        def test_bad_race(accelbench):
            accelbench.compare("digits_cnn", base={}, new={"threads": 2}, race={"max_second": 5})

        def test_unknown_backend(accelbench):
            accelbench.measure("digits_cnn", backend="onnxruntime_cpus")
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "--accelbench-out", str(pytester.path / "out"))
    result.assert_outcomes(failed=4)
    text = result.stdout.str()
    assert "Traceback" not in text and "accelbench/fixture.py" not in text, text[-3000:]
    for expected in ("budgets={'max_p5_ms': 3}: max_p5_ms: Extra inputs are not permitted",
                     "min_speedup and max_slowdown need a same-sitting comparison: use compare()",
                     "compare(race={'max_second': 5}): max_second: Extra inputs are not permitted",
                     "unknown backend 'onnxruntime_cpus' (did you mean 'onnxruntime_cpu'?)"):
        assert expected in text, (expected, text[-3000:])
