"""The nightly loop as a user drives it: `run --history`, `history add/list`, `compare` (run folders and
@latest), `trend` with its change points, and a history that survives a damaged file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from reporting.browser import find_chromium, open_report
from reporting.trend import build_trend
from results.history import add_run, read_history
from tests.conftest import FAST_MEASURE, run_cli, write_scenario
from tests.records import make_record

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def nightly(tmp_path_factory: pytest.TempPathFactory, digits_artifacts) -> tuple[Path, Path]:
    """A real two-case run through `accelbench run --history`: (run folder, history folder)."""
    folder = tmp_path_factory.mktemp("nightly")
    scenario = write_scenario(folder, f"""
        name: nightly-test
        models: [digits_cnn]
        backends: [{{name: tflite_cpu, threads: 1}}, {{name: onnxruntime_cpu, threads: 1}}]
        measure: {FAST_MEASURE}
    """)
    run, history = folder / "run", folder / "history"
    done = run_cli("run", str(scenario), "--out", str(run), "--history", str(history))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "history: " in done.stdout
    return run, history


def edited_copy(run: Path, target: Path, scale: float = 1.0, machine: dict | None = None) -> Path:
    """The run as if measured again later: samples scaled (an injected change: 2× stands out of any block noise
    of these short runs), or on another machine."""
    shutil.copytree(run, target)
    lines = []
    for line in (target / "results.jsonl").read_text().splitlines():
        record = json.loads(line)
        record["samples_ns"] = [int(v * scale) for v in record["samples_ns"]]
        if record.get("latency_ms"):
            record["latency_ms"] = {k: v * scale for k, v in record["latency_ms"].items()}
        lines.append(json.dumps(record))
    (target / "results.jsonl").write_text("\n".join(lines) + "\n")
    env = json.loads((target / "env.json").read_text())
    env["collected_at"] = "2099-01-01T00:00:00+00:00"
    if machine is not None:
        env.pop("machine_id", None)
        env["machine"] = {**env["machine"], **machine}
    (target / "env.json").write_text(json.dumps(env))
    return target


def test_identical_runs_are_unchanged(nightly, tmp_path) -> None:
    run, _ = nightly
    again = edited_copy(run, tmp_path / "again")
    done = run_cli("compare", str(run), str(again), "--fail-on-regression")
    assert done.returncode == 0, done.stdout + done.stderr
    # two runs and no history: how far runs move between sittings is unknown, so no verdict either way
    assert "2 cannot tell" in done.stdout and "regression" not in done.stdout and "accelbench ab" in done.stdout
    # a gate that passed without judging anything says so
    assert "2 of 2 case(s) could not be judged" in " ".join(done.stderr.split())
    done = run_cli("compare", str(run), str(again), "--fail-on-regression", "--no-noise-floor")
    assert done.returncode == 0 and "2 unchanged" in done.stdout and "could not be judged" not in done.stderr


def test_a_slower_run_is_a_regression_with_a_table_and_exit_1(nightly, tmp_path) -> None:
    run, _ = nightly
    slower = edited_copy(run, tmp_path / "slower", scale=2.0)
    regressions = tmp_path / "regressions.txt"
    done = run_cli("compare", str(run), str(slower), "--threshold", "5%", "--fail-on-regression",
                   "--regressions-out", str(regressions), "--no-noise-floor")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "2 slower" in done.stdout and "+100.00%" in done.stdout and "2 regression(s)" in done.stdout
    assert sorted(regressions.read_text().split()) == ["digits_cnn-fp32-b1-onnxruntime_cpu",
                                                       "digits_cnn-fp32-b1-tflite_cpu"]
    report = json.loads(run_cli("compare", str(run), str(slower), "--json", "--no-noise-floor").stdout)
    assert [case["verdict"] for case in report["cases"]] == ["slower", "slower"]
    assert all(case["timing"]["ci_low"] > 1.0 and case["timing"]["ratio"] == pytest.approx(2.0, abs=0.01)
               for case in report["cases"])


def test_runs_from_another_machine_are_not_comparable_unless_asked(nightly, tmp_path) -> None:
    run, _ = nightly
    other = edited_copy(run, tmp_path / "other", scale=2.0, machine={"cpu_model": "Another CPU"})
    done = run_cli("compare", str(run), str(other), "--fail-on-regression")
    assert done.returncode == 0 and "2 not comparable" in done.stdout
    assert "measured on different machines" in done.stdout
    assert run_cli("compare", str(run), str(other), "--any-machine", "--fail-on-regression",
                   "--no-noise-floor").returncode == 1


def test_history_add_list_and_compare_with_the_latest_run_of_this_machine(nightly, tmp_path) -> None:
    run, history = nightly
    done = run_cli("history", "add", str(run), "--history", str(history))
    assert done.returncode == 0 and "already in the history" in done.stdout  # `run --history` added it
    listed = run_cli("history", "list", "--history", str(history))
    assert listed.returncode == 0 and "nightly-test" not in listed.stderr and " 2 " in listed.stdout
    slower = edited_copy(run, tmp_path / "slower", scale=2.0)
    done = run_cli("compare", "@latest", str(slower), "--history", str(history), "--fail-on-regression",
                   "--no-noise-floor")  # two runs in the history: too few to know the run-to-run spread
    assert done.returncode == 1 and "(history)" in done.stdout and "2 slower" in done.stdout
    empty = tmp_path / "empty-history"
    regressions = tmp_path / "regressions.txt"
    done = run_cli("compare", "@latest", str(slower), "--history", str(empty), "--regressions-out", str(regressions))
    assert done.returncode == 0 and "nothing to compare" in done.stdout and regressions.read_text() == ""
    done = run_cli("compare", "@no-such-run", str(slower), "--history", str(history))
    assert done.returncode == 2 and "no run 'no-such-run'" in done.stderr and "Traceback" not in done.stderr

    added = run_cli("history", "add", str(slower), "--history", str(history))
    slower_id = added.stdout.split()[1]
    done = run_cli("compare", "@latest", f"@{slower_id}", "--history", str(history), "--fail-on-regression",
                   "--no-noise-floor")
    assert done.returncode == 1 and "2 slower" in done.stdout  # @latest: the run before it, on its machine
    done = run_cli("compare", f"@{slower_id}", f"@{slower_id}", "--history", str(history))
    assert done.returncode == 2 and "are the same run" in done.stderr
    done = run_cli("trend", "--history", str(empty))
    assert done.returncode == 2 and "no runs in the history" in done.stderr


def test_latest_is_the_last_run_of_the_same_scenario(nightly, tmp_path) -> None:
    run, _ = nightly
    other = edited_copy(run, tmp_path / "other-scenario", scale=2.0)  # a manual run of another scenario, later
    lines = [json.loads(line) for line in (other / "results.jsonl").read_text().splitlines()]
    (other / "results.jsonl").write_text("".join(json.dumps({**r, "scenario": "adhoc"}) + "\n" for r in lines))
    env = json.loads((other / "env.json").read_text())
    (other / "env.json").write_text(json.dumps({**env, "collected_at": "2099-01-01T00:00:00+00:00"}))
    mine = tmp_path / "history"  # the nightly, then the adhoc run (the module's history grows in other tests)
    add_run(mine, run)
    assert run_cli("history", "add", str(other), "--history", str(mine)).returncode == 0
    tonight = edited_copy(run, tmp_path / "tonight")
    env = json.loads((tonight / "env.json").read_text())
    (tonight / "env.json").write_text(json.dumps({**env, "collected_at": "2099-02-01T00:00:00+00:00"}))
    done = run_cli("compare", "@latest", str(tonight), "--history", str(mine), "--no-noise-floor")
    assert done.returncode == 0 and "2 unchanged" in done.stdout  # against the nightly, not the 2x adhoc run


def synthetic_history(root: Path, runs: int = 30, step_at: int = 17) -> Path:
    """Run folders of one case whose median steps up 5 % at run `step_at` (commit c17), 1 % noise."""
    rng = np.random.default_rng(3)
    machine = {"cpu_model": "CPU A", "cpu_logical": 2, "memory_gb": 24, "arch": "x86_64", "gpu": None}
    for index in range(runs):
        median = 2.0 * np.exp(rng.normal(0, 0.01)) * (1.05 if index >= step_at else 1.0)
        folder = root / f"night-{index:02d}"
        folder.mkdir(parents=True)
        env = {"env_id": "e", "machine": machine, "collected_at": f"2026-10-{index + 1:02d}T02:00:00+00:00",
               "git": {"id": f"c{index:02d}" + "0" * 38}}
        (folder / "env.json").write_text(json.dumps(env))
        sample = (median * 1e6 * np.exp(rng.normal(0, 0.02, 200))).astype(int).tolist()
        record = make_record("m-fp32-b1-tflite_cpu", samples_ns=sample)
        (folder / "results.jsonl").write_text(json.dumps(record.to_json()) + "\n")
    return root


def test_trend_finds_a_five_percent_step_at_the_right_commit(tmp_path) -> None:
    runs = synthetic_history(tmp_path / "runs")
    history = tmp_path / "history"
    folders = sorted(runs.iterdir())
    for folder in folders[:-1]:
        add_run(history, folder)
    assert run_cli("history", "add", str(folders[-1]), "--history", str(history)).returncode == 0
    _, problems = build_trend(history)
    assert problems == []
    done = run_cli("trend", "--history", str(history), "-o", str(tmp_path / "trend.html"))
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "trend.html").read_text()
    assert "1 change point" in text and "c16" in text and "c17" in text  # between c16 and c17
    assert "+5." in text or "+4." in text
    if find_chromium() is None:
        pytest.skip("no Chromium here for the page check")
    with open_report(tmp_path / "trend.html") as (page, check):
        assert check.console_errors == [] and check.page_errors == [] and check.external_requests == []
        assert check.chart_containers == 1 and check.rendered_charts == 1
        rows = page.eval_on_selector_all("#steps-table tbody tr", "rs => rs.map(r => r.textContent)")
        assert len(rows) == 1 and "c16" in rows[0] and "c17" in rows[0]


def test_a_damaged_history_file_is_skipped_with_a_warning(nightly, tmp_path) -> None:
    _, history = nightly
    damaged = tmp_path / "history"
    shutil.copytree(history, damaged)
    intact, _ = read_history(damaged)
    (damaged / "20990101000000-deadbeef-00000000.parquet").write_bytes(b"PAR1 torn")
    frame, problems = read_history(damaged)
    assert len(frame) == len(intact) > 0 and len(problems) == 1 and "unreadable, skipped" in problems[0]
    listed = run_cli("history", "list", "--history", str(damaged))
    assert listed.returncode == 0 and "unreadable, skipped" in listed.stdout
    done = run_cli("trend", "--history", str(damaged))
    assert done.returncode == 0 and (damaged / "trend.html").is_file() and "unreadable" in done.stderr
