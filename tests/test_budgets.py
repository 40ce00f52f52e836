"""Performance budgets (scenario ``budgets:``): the schema's errors, the judging rules on synthetic figures, and both
front doors end to end.

The end-to-end tests rest on one speed difference made by construction, never on this machine's speed:
``slowed_tflite`` with ``slowdown: 2.0`` busy-waits twice each inference's own time, so G is about three times
slower than A on any machine (tests/test_race.py relies on the same). A budget of "at most 5× slower" holds and one
of "at most 1.5× slower" misses, each by the whole paired interval, wherever the tests run.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from results.budgets import judge_absolute, judge_relative, relative_outcome
from results.race_record import PairFigures, RaceEntry, RaceRecord, RaceRound
from results.record import Latency, MedianInterval, Record
from results.store import read_budget_verdicts
from scenario.load import expand, load_scenario
from tests.conftest import FAST_MEASURE, assert_scenario_error, run_cli, write_scenario
from tests.fault_backend import REGISTRATION
from tests.test_race import FAST_RACE, QUIET, backends_env

HEAD = "name: x\nmodels: [digits_cnn]\nbackends: [tflite_cpu, {name: onnxruntime_cpu, label: ort}]\n"

# Quick and Laggard (three times slower by construction): Quick's budget against Laggard holds, Laggard's misses
TWO = f"""
    name: budgeted
    models: [digits_cnn]
    backends:
      - {{name: slowed_tflite, threads: 1, slowdown: 0, label: Quick}}
      - {{name: slowed_tflite, threads: 1, slowdown: 2.0, label: Laggard}}
    measure: {FAST_MEASURE}
    race: {{max_seconds: 20, {FAST_RACE}, gross_factor: 2}}
    budgets:
      - select: {{backend: Quick}}
        min_speedup: 1.5
        against: {{backend: Laggard}}
      - select: {{backend: Laggard}}
        max_slowdown: 1.5
        against: {{backend: Quick}}
"""


# --- the schema -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "line", "fragments"), [
    ("budgets:\n  - {select: {precision: fp32}}", 6, ["budgets[0]: a budget sets at least one limit: min_speedup"]),
    ("budgets:\n  - {max_p50_ms: 5, against: {backend: ort}}", 6,
     ["budgets[0]: against names what min_speedup or max_slowdown compare with"]),
    ("budgets:\n  - {min_speedup: 2, machine: ci}", 6, ["budgets[0]: machine ties absolute limits to a machine"]),
    ("budgets:\n  - {min_speedup: 2, against: {backend: trt}}", 6,
     ["budgets[0].against.backend: 'trt' is not a backend of this scenario (its backends: tflite_cpu, ort,"]),
    ("budgets:\n  - min_speedup: 2\n    select: {precision: int8}", 7, ["budgets[0]: its select matches no case"]),
    ("budgets:\n  - {max_p99_ms: 2, select: {model: digit_cnn}}", 6,
     ["budgets[0].select.model: 'digit_cnn' is not a model of this scenario", "did you mean 'digits_cnn'?"]),
    ("budgets:\n  - {max_p99_m: 2}", 6, ["budgets[0]: unknown key 'max_p99_m' (did you mean 'max_p99_ms'?)"]),
    ("budgets:\n  - {min_speedup: 0}", 6, ["budgets[0].min_speedup: Input should be greater than 0"]),
    ("budgets:\n  - {max_p50_ms: 2, select: {backnd: ort}}", 6,
     ["budgets[0].select: unknown key 'backnd' (did you mean 'backend'?)"]),
    ("budgets:\n  - {min_speedup: 2, against: {backend: ort, precision: int8}}", 6,
     ["budgets[0].against.precision: 'int8' is not a precision of this scenario (its precisions: fp32)"]),
    ("race: false\nbudgets:\n  - {min_speedup: 2, select: {backend: ort}}", 7,
     ["budgets[0]: min_speedup and max_slowdown are judged on a race, and the race of the models it selects is off"]),
], ids=["no-limit", "against-alone", "machine-relative", "unknown-against", "selects-nothing", "unknown-model",
        "unknown-key", "zero", "unknown-select-key", "against-precision-not-run", "race-off"])
def test_a_bad_budget_is_one_error_at_its_line(scenario_file, text: str, line: int, fragments: list[str]) -> None:
    path = scenario_file(HEAD + "precisions: [fp32]\n" + text + "\n")
    assert_scenario_error(path, line, fragments)


def test_a_models_budget_selects_within_its_model_and_ab_scenarios_take_none(scenario_file) -> None:
    path = scenario_file(HEAD.replace("models: [digits_cnn]", "models:\n  - name: digits_cnn\n    budgets:\n"
                                      "      - {max_p50_ms: 1, select: {model: digits_cnn}}"))
    assert_scenario_error(path, 5, ["models[0].budgets[0].select.model: a model's own budgets hold for its cases"])
    path = scenario_file(HEAD + "ab: {base: {}, new: {}}\nbudgets:\n  - {max_p50_ms: 1}\n")
    assert_scenario_error(path, 6, ["budgets[0]: budgets judge a run's cases; a scenario with ab:"])


def test_a_relative_budget_that_would_only_compare_the_baseline_with_itself_is_an_error(scenario_file) -> None:
    path = scenario_file(HEAD + "budgets:\n  - select: {backend: tflite_cpu}\n    min_speedup: 1.2\n")
    from scenario.load import ScenarioError

    with pytest.raises(ScenarioError) as caught:
        expand(load_scenario(path))
    assert str(caught.value) == (f"{path}:5: budgets[0]: its min_speedup / max_slowdown would compare every case "
                                 "it selects with itself (the configuration it compares with): select other cases, "
                                 "or name another against")


def test_each_case_carries_the_budgets_its_selection_matches_and_never_one_against_itself(scenario_file) -> None:
    path = scenario_file(HEAD + """precisions: [fp32, fp16]
budgets:
  - {min_speedup: 1.2, max_peak_rss_mb: 900}
  - {max_slowdown: 1.1, against: {backend: ort, precision: fp16}, select: {backend: tflite_cpu}}
  - {max_p99_ms: 4, select: {precision: fp16}, machine: ci-box}
""")
    budgets = {case.case_id: [(b["where"], sorted(b["limits"]), b["line"]) for b in case.budgets]
               for case in expand(load_scenario(path))}
    assert budgets == {
        # the baseline (first fp32 case) keeps the absolute limit of budgets[0] only
        "digits_cnn-fp32-b1-tflite_cpu": [("budgets[0]", ["max_peak_rss_mb"], 6),
                                          ("budgets[1]", ["max_slowdown"], 7)],
        "digits_cnn-fp16-b1-tflite_cpu": [("budgets[0]", ["max_peak_rss_mb", "min_speedup"], 6),
                                          ("budgets[1]", ["max_slowdown"], 7), ("budgets[2]", ["max_p99_ms"], 8)],
        "digits_cnn-fp32-b1-ort": [("budgets[0]", ["max_peak_rss_mb", "min_speedup"], 6)],
        "digits_cnn-fp16-b1-ort": [("budgets[0]", ["max_peak_rss_mb", "min_speedup"], 6),
                                   ("budgets[2]", ["max_p99_ms"], 8)],
    }


# --- the rules, on synthetic figures ----------------------------------------------------------------------------


def pair(ratio: float, low: float, high: float) -> PairFigures:
    return PairFigures(against="B fp32", rounds=12, ratio=ratio, ci_low=low, ci_high=high, p_value=0.01,
                       verdict="cannot tell")


@pytest.mark.parametrize(("limit_name", "limit", "figures", "expected"), [
    ("min_speedup", 1.5, (0.5, 0.45, 0.55), "passed"),  # speed-up 2.0 (1.82–2.22): all of it ≥ 1.5
    ("min_speedup", 1.5, (0.8, 0.75, 0.85), "missed"),  # speed-up 1.25 (1.18–1.33): all of it < 1.5
    ("min_speedup", 1.5, (0.66, 0.6, 0.7), "cannot tell"),  # 1.43–1.67 straddles 1.5
    ("max_slowdown", 1.1, (1.02, 0.99, 1.05), "passed"),
    ("max_slowdown", 1.1, (1.3, 1.2, 1.4), "missed"),
    ("max_slowdown", 1.1, (1.1, 1.05, 1.15), "cannot tell"),
    ("max_slowdown", 1.1, (1.0, 0.5, math.inf), "cannot tell"),  # too few rounds for an upper end
])
def test_a_relative_limit_passes_or_misses_only_by_its_whole_interval(limit_name: str, limit: float,
                                                                      figures: tuple[float, float, float],
                                                                      expected: str) -> None:
    status, value, low, high = relative_outcome(limit_name, limit, pair(*figures))
    assert status == expected
    assert low <= value <= high  # a point estimate inside its own interval, in the budget's own terms


def record(**fields: object) -> Record:
    base = {"case_id": "m-fp32-b1-A", "scenario": "s", "model": "m", "backend": "tflite_cpu", "backend_label": "A",
            "precision": "fp32", "batch_size": 1, "status": "passed", "latency_ms": Latency(
                p50=10.0, p90=11.0, p95=12.0, p99=14.0, mean=10.4, std=0.5, min=9.0, max=15.0),
            "median_ci_ms": MedianInterval(low=9.8, high=10.2), "throughput_ips": 100.0, "peak_rss_mb": 300.0,
            "model_size_bytes": 5_000_000}
    return Record(**{**base, **fields})


def budget(**limits: float) -> dict[str, object]:
    return {"where": "budgets[0]", "limits": limits, "against": None, "machine": None, "cannot_tell": "skip"}


def test_an_absolute_miss_shows_its_numbers_its_limit_and_whether_it_is_inside_the_noise() -> None:
    verdicts = judge_absolute(record(), budget(max_p50_ms=9.0, max_p99_ms=20.0, min_throughput_ips=150.0,
                                               max_peak_rss_mb=250.0, max_model_size_mb=6.0), "id1", None)
    by_name = {v.limit_name: v for v in verdicts}
    assert {name: v.status for name, v in by_name.items()} == {
        "max_p50_ms": "missed", "max_p99_ms": "passed", "min_throughput_ips": "missed", "max_peak_rss_mb": "missed",
        "max_model_size_mb": "passed"}
    p50 = by_name["max_p50_ms"]
    assert p50.fails and "p50 10 ms" in p50.message and "9.8–10.2 ms" in p50.message and "clear" in p50.message
    noisy = judge_absolute(record(), budget(max_p50_ms=9.9), "id1", None)[0]
    assert noisy.status == "missed" and "inside the noise" in noisy.message, noisy.message
    close = judge_absolute(record(), budget(max_p50_ms=10.1), "id1", None)[0]
    assert close.status == "passed" and not close.fails and "inside the noise" in close.message, close.message
    assert "throughput 100 items/s" in by_name["min_throughput_ips"].message


def test_an_absolute_budget_tied_to_another_machine_says_so_and_fails_nothing(monkeypatch) -> None:
    tied = {**budget(max_p50_ms=5.0), "machine": "ci-box"}
    [elsewhere] = judge_absolute(record(), tied, "abc123", None)
    assert elsewhere.status == "other machine" and not elsewhere.fails
    assert "set for machine 'ci-box', measured on abc123" in elsewhere.message and "outside the limit here" in \
        elsewhere.message
    [by_label] = judge_absolute(record(), tied, "abc123", "ci-box")
    [by_id] = judge_absolute(record(), {**tied, "machine": "abc123"}, "abc123", None)
    assert by_label.status == by_id.status == "missed" and "on machine" in by_id.message


@pytest.mark.parametrize("status", ["invalid", "failed"])
def test_a_measurement_that_did_not_pass_is_never_judged_a_pass(status: str) -> None:
    broken = record(status=status, reason="the clock went backwards")
    verdicts = judge_absolute(broken, budget(max_p50_ms=1000.0), "id1", None)
    verdicts += judge_relative(broken, budget(min_speedup=0.01), [broken], None, raced=True)
    assert [v.status for v in verdicts] == ["not judged", "not judged"]
    assert all("the clock went backwards" in v.message and v.status != "passed" for v in verdicts)


def test_a_relative_budget_without_a_same_sitting_ratio_cannot_tell() -> None:
    fast, slow = record(), record(case_id="m-fp32-b1-B", backend_label="B", latency_ms=None)
    spec = {**budget(min_speedup=1.2), "against": {"backend": "B", "precision": "fp32", "compression": "none"}}
    [off] = judge_relative(fast, spec, [fast, slow], None, raced=False)
    assert off.status == "cannot tell" and "race: false" in off.message and not off.fails
    [strict] = judge_relative(fast, {**spec, "cannot_tell": "fail"}, [fast, slow], None, raced=False)
    assert strict.status == "cannot tell" and strict.fails
    race = RaceRecord(scenario="s", model="m", batch_size=1, mode="latency", status="raced", entries=[
        RaceEntry(name="A fp32", case_id=fast.case_id, backend="tflite_cpu", backend_label="A", precision="fp32",
                  status="survived"),
        RaceEntry(name="B fp32", case_id=slow.case_id, backend="tflite_cpu", backend_label="B", precision="fp32",
                  status="survived")],
        rounds=[RaceRound(index=i, at_s=float(i), slices={"A fp32": [1.0 + 0.003 * i, 1.01],
                                                          "B fp32": [2.0 + 0.01 * (i % 3), 2.1]})
                for i in range(12)])
    [judged] = judge_relative(fast, spec, [fast, slow], race, raced=True)
    assert judged.status == "passed" and judged.value is not None and judged.low <= judged.value <= judged.high
    assert judged.against == "B fp32" and judged.rounds == 12 and "99 % CI" in judged.message
    # the race ran B with options of its own: the verdict says so
    race.entries[1].race_options = {"spinning": "within_runs"}
    [noted] = judge_relative(fast, spec, [fast, slow], race, raced=True)
    assert "B fp32 raced with spinning: within_runs (its own p50 was measured without)" in noted.message
    race.entries[1].race_options = {}
    # five rounds: no 99 % interval at all, and the verdict says what would give one
    short = race.model_copy(update={"rounds": race.rounds[:5]})
    [few] = judge_relative(fast, spec, [fast, slow], short, raced=True)
    assert few.status == "cannot tell" and "5 rounds are too few for a 99 % interval, which takes 8" in few.message
    # the partner the scenario planned failed: never re-targeted at another case
    failed = slow.model_copy(update={"status": "failed", "reason": "it crashed"})
    [no_partner] = judge_relative(fast, spec, [fast, failed], race, raced=True)
    assert no_partner.status == "cannot tell" and "B fp32 failed" in no_partner.message
    # the partner's worker failed in a round run for budgets: whatever the rounds before say, it cannot tell
    race.entries[1].budget_failure = "its worker failed in a round for budgets: killed"
    [cut] = judge_relative(fast, spec, [fast, slow], race, raced=True)
    assert cut.status == "cannot tell" and "killed" in cut.message


# --- both front doors, end to end -------------------------------------------------------------------------------


@pytest.mark.e2e
def test_one_budget_that_holds_and_one_that_misses_fail_exactly_one_item_with_the_numbers(
        tmp_path: Path, digits_artifacts) -> None:
    scenario = write_scenario(tmp_path, TWO)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "pytest", str(scenario), *QUIET, "-v", "-rA",
                           "--accelbench-out", str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=backends_env())
    text = done.stdout
    assert done.returncode == 1, text[-4000:]
    outcomes = dict(re.findall(r"::(\S+) (PASSED|FAILED|SKIPPED)", text))
    assert outcomes == {"digits_cnn-fp32-b1-Quick": "PASSED", "digits_cnn-fp32-b1-Laggard": "PASSED",
                        "race-digits_cnn-b1": "PASSED", "digits_cnn-fp32-b1-Quick-budget": "PASSED",
                        "digits_cnn-fp32-b1-Laggard-budget": "FAILED"}, text[-4000:]
    [failure] = [line for line in text.splitlines() if line.startswith("digits_cnn-fp32-b1-Laggard-budget: ")]
    assert re.search(r"BUDGET MISSED: max_slowdown 1\.5× against Quick fp32: MISSED .*slow-down [\d.]+× \(99 % CI "
                     r"[\d.]+–[\d.]+×, paired, \d+ rounds in one sitting\)", failure), failure
    verdicts = {v.case_id: v for v in read_budget_verdicts(out / "budgets.jsonl")}
    assert verdicts["digits_cnn-fp32-b1-Quick"].status == "passed"
    assert verdicts["digits_cnn-fp32-b1-Laggard"].status == "missed"
    assert verdicts["digits_cnn-fp32-b1-Laggard"].rounds >= 2
    # left out after the first round (far outside the noise), Laggard raced on for the budgets
    [race] = [json.loads(line) for line in (out / "race.jsonl").read_text().splitlines()]
    [laggard] = [entry for entry in race["entries"] if entry["backend_label"] == "Laggard"]
    if laggard["status"] == "excluded":
        assert sum("Laggard fp32" in one["slices"] for one in race["rounds"]) >= 2, race["rounds"]
        assert any(one["for_budgets"] for one in race["rounds"]), race["rounds"]
    assert "performance budgets" in text
    page = (out / "report.html").read_text()
    assert "Performance budgets (1 missed of 2)" in page and 'href="#budgets"' in page


@pytest.mark.e2e
def test_accelbench_run_exits_1_on_a_miss_and_a_selection_pulls_in_the_partner(tmp_path: Path,
                                                                               digits_artifacts) -> None:
    scenario = write_scenario(tmp_path, TWO)
    done = run_cli("run", str(scenario), "-k", "Laggard", "--out", str(tmp_path / "run"), env=backends_env())
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "also running digits_cnn-fp32-b1-Quick: the selected cases' budgets compare with them" in done.stderr
    verdicts = read_budget_verdicts(tmp_path / "run" / "budgets.jsonl")
    assert {(v.case_id, v.status) for v in verdicts} == {("digits_cnn-fp32-b1-Quick", "passed"),
                                                         ("digits_cnn-fp32-b1-Laggard", "missed")}
    assert "MISSED" in done.stdout and "performance budgets" in done.stdout
    holding = write_scenario(tmp_path, TWO.replace("max_slowdown: 1.5", "max_slowdown: 5"), "holds.yaml")
    done = run_cli("run", str(holding), "--out", str(tmp_path / "holds"), env=backends_env())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.e2e
def test_lf_reruns_a_missed_budget_with_its_case_its_partner_and_their_race(tmp_path: Path, digits_artifacts) -> None:
    path = write_scenario(tmp_path, TWO.replace("race: {", "race: {looks: 1, ") + """
      - select: {backend: Quick}
        max_p50_ms: 100000
        machine: some-other-box
    """, "budgets.yaml")

    def pytest_run(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "pytest", str(path), "-v", "-W",
                               "ignore::pytest.PytestAssertRewriteWarning", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300, env=backends_env())
        assert done.returncode == 1, done.stdout[-4000:]
        return done.stdout

    first = pytest_run("--accelbench-out", str(tmp_path / "first"))
    assert "1 failed, 4 passed, 1 warning" in first.splitlines()[-1], first[-3000:]
    assert "set for machine 'some-other-box'" in first
    again = pytest_run("--lf", "--accelbench-out", str(tmp_path / "again"))
    assert "also running 3 deselected item(s) the selected budgets need: digits_cnn-fp32-b1-Quick, " \
           "digits_cnn-fp32-b1-Laggard, race-digits_cnn-b1" in again, again[-3000:]
    ran = re.findall(r"::(\S+) (PASSED|FAILED)", again)
    assert ran == [("digits_cnn-fp32-b1-Quick", "PASSED"), ("digits_cnn-fp32-b1-Laggard", "PASSED"),
                   ("race-digits_cnn-b1", "PASSED"), ("digits_cnn-fp32-b1-Laggard-budget", "FAILED")], again[-3000:]


def test_a_selection_takes_back_what_its_budgets_need_and_markers_select_budget_items(pytester, monkeypatch) -> None:
    from scenario.skips import cached_availability

    monkeypatch.setenv("ACCELBENCH_BACKENDS", REGISTRATION)
    cached_availability.cache_clear()
    path = write_scenario(pytester.path, TWO, "budgets.yaml")

    def collected(*args: str) -> tuple[list[str], str]:
        result = pytester.runpytest(str(path), "--collect-only", "-q", *QUIET, *args)
        return [line.split("::", 1)[1] for line in result.outlines if "::" in line], result.stdout.str()

    everything, _ = collected()
    assert everything == ["digits_cnn-fp32-b1-Quick", "digits_cnn-fp32-b1-Laggard", "race-digits_cnn-b1",
                          "digits_cnn-fp32-b1-Quick-budget", "digits_cnn-fp32-b1-Laggard-budget"]
    ids, text = collected("-k", "Laggard")
    assert ids == ["digits_cnn-fp32-b1-Quick", "digits_cnn-fp32-b1-Laggard", "race-digits_cnn-b1",
                   "digits_cnn-fp32-b1-Laggard-budget"], text
    assert "also running 2 deselected item(s) the selected budgets need: digits_cnn-fp32-b1-Quick, " \
           "race-digits_cnn-b1" in text
    assert collected("-m", "slowed_tflite and fp32")[0] == everything
    # --lf on a folder drops the passed items of a file without telling anyone (no pytest_deselected): still back
    write_scenario(pytester.path / "scenarios", TWO, "budgets.yaml")
    cache = pytester.path / ".pytest_cache" / "v" / "cache"
    cache.mkdir(parents=True)
    failed = "scenarios/budgets.yaml::digits_cnn-fp32-b1-Laggard-budget"
    (cache / "lastfailed").write_text(json.dumps({failed: True}))
    result = pytester.runpytest(str(pytester.path / "scenarios"), "--collect-only", "-q", "--lf", "-W",
                                "ignore::pytest.PytestAssertRewriteWarning")
    ids = [line.split("::", 1)[1] for line in result.outlines if "::" in line]
    assert ids == ["digits_cnn-fp32-b1-Quick", "digits_cnn-fp32-b1-Laggard", "race-digits_cnn-b1",
                   "digits_cnn-fp32-b1-Laggard-budget"], result.stdout.str()


@pytest.mark.e2e
def test_x_stops_at_the_first_case_that_misses_its_budget(tmp_path: Path, digits_artifacts) -> None:
    path = write_scenario(tmp_path, TWO + """
      - select: {backend: Quick}
        max_p50_ms: 0.000001
    """)
    done = subprocess.run([sys.executable, "-m", "pytest", str(path), *QUIET, "-v", "-x", "--accelbench-out",
                           str(tmp_path / "out")], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=backends_env())
    assert done.returncode == 1, done.stdout[-3000:]
    ran = re.findall(r"::(\S+) (PASSED|FAILED)", done.stdout)
    assert ran == [("digits_cnn-fp32-b1-Quick", "FAILED")], done.stdout[-3000:]
    assert "stopping after 1 failures" in done.stdout
    assert "BUDGET MISSED: max_p50_ms 1e-06: MISSED (clear: the whole interval misses it): p50 " in done.stdout


def test_an_id_with_a_dot_is_shown_as_it_is_so_that_it_can_be_selected_again(pytester, monkeypatch) -> None:
    """pytest's verbose line reads a headline that ends the node id as a Python path ("v0.1" → "v0::1")."""
    from scenario.skips import cached_availability

    monkeypatch.setenv("ACCELBENCH_BACKENDS", REGISTRATION)
    cached_availability.cache_clear()
    path = write_scenario(pytester.path, "name: dots\nmodels: [{name: digits_cnn, label: net_v0.1}]\n"
                                         "backends: [never_here]\n", "dots.yaml")
    result = pytester.runpytest(str(path), "-v", *QUIET, "--accelbench-out", str(pytester.path / "out"))
    assert "dots.yaml::net_v0.1-fp32-b1-never_here SKIPPED" in result.stdout.str(), result.stdout.str()[-2000:]


def test_the_shipped_budgets_scenario_reads_and_each_of_its_budgets_holds_for_some_case() -> None:
    from pathlib import Path as _Path

    cases = expand(load_scenario(_Path(__file__).resolve().parent.parent / "scenarios" / "budgets.yaml"))
    held = {budget["where"] for case in cases for budget in case.budgets}
    assert held == {"budgets[0]", "budgets[1]", "budgets[2]", "budgets[3]"}
    [int8_ort] = [case for case in cases if case.case_id == "digits_cnn-int8-b1-ort"]
    assert int8_ort.budgets[0]["against"] == {"backend": "tflite_cpu", "precision": "fp32", "compression": "none"}


def test_a_p99_verdict_shows_how_far_the_tail_moved_within_the_run() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    # 20 blocks of 200 samples around 10 ms, the last ten blocks with a heavier tail: block p99s from ~11 to ~16 ms
    blocks = [rng.normal(10e6, 0.3e6, 200) + (rng.exponential(1.5e6, 200) if b >= 10 else 0) for b in range(20)]
    samples = [int(v) for v in np.concatenate(blocks)]
    p99 = float(np.percentile(samples, 99)) / 1e6
    measured = record(samples_ns=samples, latency_ms=Latency(p50=10.0, p99=p99))
    [inside] = judge_absolute(measured, budget(max_p99_ms=p99 - 0.5), "id1", None)
    assert inside.status == "missed" and "its 20 time blocks' p99s" in inside.message, inside.message
    assert inside.low < inside.limit < inside.high and "inside the noise" in inside.message
    [clear] = judge_absolute(measured, budget(max_p99_ms=5.0), "id1", None)
    assert clear.status == "missed" and "clear: the whole interval misses it" in clear.message, clear.message
