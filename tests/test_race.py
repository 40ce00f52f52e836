"""Races (harness.race) end to end: through `accelbench run` and the pytest front door, with a known gross
difference; `race:` settings; a worker that fails mid-race; a resumed run; heats; and the Sitting with three
sides (balanced block orders, aligned slices, a time cap or a failure inside a round taken back out).

Nothing here depends on this machine's speed. The only speed difference a test relies on is gross and made by
construction: ``slowed_tflite`` with ``slowdown: 2.0`` busy-waits twice each inference's own time, so it is three
times slower whatever the machine does. Identical configurations (A and A2: the same file and settings under two
labels) may end a short race "tie" or "cannot tell"; what the design guarantees, and what is asserted, is that
neither is set apart from the other and that the slow one never wins. The statistics themselves are
tests/test_race_stats.py's, on synthetic rounds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.race import RaceSettings, race_run
from harness.sitting.channel import SideFailure
from harness.sitting.methods import block_orders, physical_cores, shared_cores
from harness.sitting.rounds import Sitting
from results.race_record import RaceRecord
from results.race_stats import min_rounds
from results.store import read_race_records
from scenario.load import expand, load_scenario
from tests.conftest import FAST_MEASURE, assert_scenario_error, cli_env, read_jsonl, run_cli, write_scenario
from tests.fault_backend import REGISTRATION
from tests.test_ab import tiny_onnx

QUIET = ("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")
# short rounds of fresh sessions (a renewal, not a spawn, per round): a round of two or three configurations is a few
# tenths of a second, so the first look (10 or 11 rounds) comes within the cap on a slow machine too; and a fault
# keyed to a worker's Nth session (tests/fault_backend.py) falls in round N
FAST_RACE = "round_seconds: 0.2, slice_ms: 20, fresh: session"

# A and A2 are one configuration under two labels; G is it three times slower. gross_factor 2 (not the default
# 1.5): G, at 3x, stays out up front on any machine whose sequential p50s swing by less than 1.5x, while A2 is set
# apart from A by its own p50 only on a machine whose p50s swing by 2x (seen here: 1.4x, on a loaded 2-core VM)
THREE = f"""
    name: racing
    models: [digits_cnn]
    backends:
      - {{name: slowed_tflite, threads: 1, slowdown: 0, label: A}}
      - {{name: slowed_tflite, threads: 1, slowdown: 0, label: A2}}
      - {{name: slowed_tflite, threads: 1, slowdown: 2.0, label: G}}
    measure: {FAST_MEASURE}
    race: {{max_seconds: 12, {FAST_RACE}, gross_factor: 2}}
"""
GROUP = ("racing", "digits_cnn", 1, "latency")


def backends_env() -> dict[str, str]:
    return {**cli_env(), "ACCELBENCH_BACKENDS": REGISTRATION}


def entries(race: RaceRecord) -> dict[str, Any]:
    return {entry.backend_label: entry for entry in race.entries}


def assert_rounds_aligned_and_balanced(race: RaceRecord) -> None:
    """Every round's slices pair by block (one median per block for every configuration in it), each block's order
    is those configurations once each, and in every run of k blocks each configuration goes first once."""
    for one in race.rounds:
        names = sorted(one.slices)
        blocks = {len(medians) for medians in one.slices.values()}
        assert len(blocks) == 1 and blocks.pop() == len(one.orders) > 0, (one.index, one.slices, one.orders)
        assert all(sorted(order) == names for order in one.orders), (one.index, one.orders)
        k = len(names)
        assert len(one.orders) % k == 0, (one.index, len(one.orders), k)
        for start in range(0, len(one.orders), k):
            assert sorted(order[0] for order in one.orders[start:start + k]) == names, (one.index, one.orders)


def assert_outcome_consistent(race: RaceRecord) -> None:
    """A winner is the last one left; otherwise the tied (or undecided) are exactly the configurations that
    survived, and the recommendation is one of them."""
    survived = [entry.name for entry in race.entries if entry.status == "survived"]
    if race.outcome == "winner":
        assert survived == [race.winner] and race.tied == [] and race.recommended == race.winner, race
    else:
        assert race.winner is None and sorted(race.tied) == sorted(survived), (race.tied, survived)
        assert race.recommended in race.tied, race.recommended


# --- accelbench run --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raced_run(tmp_path_factory: pytest.TempPathFactory, digits_artifacts) -> tuple[Path, Path,
                                                                                  subprocess.CompletedProcess[str]]:
    """`accelbench run` of THREE, once for this file: (its scenario, its run folder, its output)."""
    folder = tmp_path_factory.mktemp("race")
    scenario = write_scenario(folder, THREE)
    out = folder / "run"
    done = run_cli("run", str(scenario), "--out", str(out), env=backends_env())
    return scenario, out, done


@pytest.mark.e2e
def test_run_races_the_group_and_a_three_times_slower_configuration_never_wins(raced_run) -> None:
    """G (3x) is left out up front ("slower (sequential, far outside the noise)") or eliminated at the first look,
    which it cannot survive: three times slower in every block, it is slower in every round, and the first look
    falls at the fewest rounds where that is significant (results.race_stats.min_rounds). Should the race's time
    run out before that look (a very slow machine), it ends "cannot tell", G still no winner.

    A and A2 (identical) are never set apart. An elimination between them is a false one, which the race's
    family-wise alpha of 0.01 bounds over all its looks and comparisons (Bonferroni over the looks, Holm within
    one); with two of them racing the family is one comparison at a time, so the bound is strict: below 1 %, and
    0.2 % in the simulation of 2000 races in results.race_stats. Leaving one out up front needs its own p50 at 2x
    the other's (gross_factor 2) with the in-run intervals apart: a machine that swings by 2x between two cases is
    one the design's 1.5x already rules out."""
    _, out, done = raced_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert [(r["case_id"], r["status"]) for r in read_jsonl(out / "results.jsonl")] == [
        ("digits_cnn-fp32-b1-A", "passed"), ("digits_cnn-fp32-b1-A2", "passed"), ("digits_cnn-fp32-b1-G", "passed")]
    [race] = read_race_records(out / "race.jsonl")
    assert race.group == GROUP and race.status == "raced" and race.baseline == "A fp32", race.reason
    by_label = entries(race)
    a, a2, g = by_label["A"], by_label["A2"], by_label["G"]
    assert a.is_baseline and not a2.is_baseline and not g.is_baseline
    # G: out, never the winner nor the recommendation
    assert race.winner != "G fp32" and race.recommended != "G fp32" and "G fp32" not in race.tied, race
    if g.status == "excluded":  # by its own p50 (and, where the race checks it, its first round)
        assert g.reason.startswith("slower") and "far outside the noise" in g.reason, g.reason
        assert all("G fp32" not in r.slices for r in race.rounds[1:])
    elif race.looks:
        assert g.status == "eliminated" and g.eliminated_after == race.looks[0], (g.status, g.reason, race.looks)
        assert g.vs_baseline is not None and g.vs_baseline.ratio > 1 + race.min_effect
    else:  # the time ran out before the first look
        assert race.outcome == "cannot tell" and g.status == "survived", race.reason
    # A and A2: neither set apart, so no winner; a tie or "cannot tell" between them
    assert (a.status, a2.status) == ("survived", "survived"), (a.reason, a2.reason)
    assert race.outcome in ("tie", "cannot tell") and race.winner is None, race.reason
    assert {"A fp32", "A2 fp32"} <= set(race.tied) and race.recommended in race.tied, race
    assert len(race.rounds) >= 1 and all("A fp32" in r.slices and "A2 fp32" in r.slices for r in race.rounds)
    if a2.vs_baseline is not None:  # paired over the rounds, with its interval
        pair = a2.vs_baseline
        assert pair.against == "A fp32" and pair.rounds == len(race.rounds)
        assert pair.ci_low <= pair.ratio <= pair.ci_high
    assert a.slices == a2.slices == sum(len(r.slices["A fp32"]) for r in race.rounds) > 0
    assert_rounds_aligned_and_balanced(race)
    assert_outcome_consistent(race)
    assert race.min_rounds >= min_rounds(2, race.look_alpha) and race.wall_s > 0 and race.measured_s > 0
    assert race.settings["max_seconds"] == 12 and race.settings["gross_factor"] == 2
    # the console names the race and what it found, and the time the races took
    said = rf"race digits_cnn b1: {race.outcome}: {re.escape(str(race.recommended))} \(\d+ rounds?, [\d.]+ s\)"
    assert re.search(said, done.stderr), done.stderr[-2000:]
    assert re.search(r"races: 1 group in \d+ s", done.stdout), done.stdout[-2000:]  # beside the results
    assert "Traceback" not in done.stderr


@pytest.mark.e2e
def test_resume_races_a_recorded_run_that_was_not_raced_and_never_races_a_group_twice(
        raced_run, tmp_path: Path) -> None:
    """A run stopped after its cases (killed during the races, or made before them) is resumed: nothing is left to
    measure, and its groups are raced; resumed again, the group already in race.jsonl is not raced again."""
    _, out, done = raced_run
    assert done.returncode == 0, done.stderr[-2000:]
    resumed = tmp_path / "resumed"
    shutil.copytree(out, resumed)
    (resumed / "race.jsonl").unlink()
    first = run_cli("run", "--resume", str(resumed), env=backends_env())
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert "3 of 3 cases recorded, 0 to run" in first.stderr
    assert "race digits_cnn b1: " in first.stderr, first.stderr[-2000:]
    assert "races: 1 group in" in first.stdout, first.stdout[-2000:]
    [race] = read_race_records(resumed / "race.jsonl")
    assert race.group == GROUP and race.status == "raced"
    assert len(read_jsonl(resumed / "results.jsonl")) == 3  # no case measured again
    again = run_cli("run", "--resume", str(resumed), env=backends_env())
    assert again.returncode == 0, again.stderr[-2000:]
    assert "race digits_cnn b1" not in again.stderr and "races:" not in again.stderr, again.stderr[-2000:]
    assert read_race_records(resumed / "race.jsonl") == [race]


@pytest.fixture
def unraced_copy(raced_run, tmp_path: Path, test_backends) -> Path:
    """The raced run's folder without its race.jsonl: its cases recorded, its group not raced."""
    _, out, done = raced_run
    assert done.returncode == 0, done.stderr[-2000:]
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    (copy / "race.jsonl").unlink()
    return copy


def race_again(run_dir: Path, scenario: Path) -> list[RaceRecord]:
    """race_run, as `accelbench run` calls it after the cases, over a recorded run with ``scenario``'s cases (the
    same case ids, other race settings)."""
    from harness.engine import Engine

    engine = Engine(run_dir, {"scenarios": ["racing"], "front_door": "tests"}, resume=True)
    try:
        return race_run(engine, expand(load_scenario(scenario)))
    finally:
        engine.close()


@pytest.mark.parametrize("switch", ["false", "off", '"off"', "'no'"])
def test_race_off_in_every_spelling_races_nothing(unraced_copy: Path, scenario_file, switch: str) -> None:
    """YAML 1.1 reads off and no as false; quoted, they are strings: all turn the races off."""
    scenario = scenario_file(THREE.replace(f"race: {{max_seconds: 12, {FAST_RACE}, gross_factor: 2}}",
                                           f"race: {switch}"), name="off.yaml")
    cases = expand(load_scenario(scenario))
    assert len(cases) == 3 and all(case.race is None for case in cases)
    assert race_again(unraced_copy, scenario) == []
    assert not (unraced_copy / "race.jsonl").exists()


@pytest.mark.e2e
def test_a_group_whose_sessions_do_not_fit_in_memory_races_in_heats_with_the_baseline_in_each(
        unraced_copy: Path, scenario_file) -> None:
    """``memory_mb: 1`` holds no two sessions at once: the group of three races in heats of the baseline and the
    leader beside one new configuration at a time (gross_factor 1000 keeps G in, so that there are three)."""
    scenario = scenario_file(THREE.replace("gross_factor: 2", "gross_factor: 1000, memory_mb: 1"), name="heats.yaml")
    [race] = race_again(unraced_copy, scenario)
    assert race.status == "raced" and race.heats == 2, (race.heats, race.reason)
    assert [r.group for r in read_race_records(unraced_copy / "race.jsonl")] == [GROUP]
    assert all("A fp32" in r.slices for r in race.rounds), [sorted(r.slices) for r in race.rounds]
    # the first heat: the baseline and A2; G comes in the second, whose first round is always finished
    assert sorted(race.rounds[0].slices) == ["A fp32", "A2 fp32"]
    assert any("G fp32" in r.slices for r in race.rounds)
    # the last heat holds every configuration not eliminated: a winner is the last one left of all three
    assert {e.name for e in race.entries if e.status != "eliminated"} <= set(race.rounds[-1].slices), race
    assert race.winner != "G fp32" and race.recommended != "G fp32"
    assert_rounds_aligned_and_balanced(race)
    assert_outcome_consistent(race)


# --- the pytest front door -------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_the_pytest_front_door_races_a_group_in_its_own_item(tmp_path: Path, digits_artifacts) -> None:
    """The race item runs after the group's cases and passes (a race never fails a case); race.jsonl is written
    beside results.jsonl. gross_factor 1000: two identical configurations race whatever the machine's swing."""
    scenario = write_scenario(tmp_path, f"""
        name: racing-pytest
        models: [digits_cnn]
        backends: [{{name: tflite_cpu, threads: 1, label: A}}, {{name: tflite_cpu, threads: 1, label: A2}}]
        measure: {FAST_MEASURE}
        race: {{max_seconds: 8, {FAST_RACE}, gross_factor: 1000}}
    """)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "pytest", str(scenario), *QUIET, "-v", "--accelbench-out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=cli_env())
    assert done.returncode == 0, done.stdout[-3000:]
    assert re.search(r"::race-digits_cnn-b1 PASSED", done.stdout), done.stdout[-3000:]
    assert "3 passed" in done.stdout.splitlines()[-1]
    [race] = read_race_records(out / "race.jsonl")
    assert race.group == ("racing-pytest", "digits_cnn", 1, "latency") and race.status == "raced", race.reason
    assert {entry.status for entry in race.entries} == {"survived"} and race.outcome in ("tie", "cannot tell")
    assert_outcome_consistent(race)
    assert len(read_jsonl(out / "results.jsonl")) == 2


ITEMS = """
    name: items
    models:
      - {name: digits_cnn, precisions: [fp32, fp16], batch_sizes: [1, 4]}
      - {path: tiny.onnx}
    backends: [onnxruntime_cpu]
"""


def collected(pytester: pytest.Pytester, *args: str) -> list[str]:
    result = pytester.runpytest("--collect-only", "-q", *QUIET, *args)
    assert result.ret in (0, pytest.ExitCode.NO_TESTS_COLLECTED), result.stdout.str()
    return [line.split("::", 1)[1].strip() for line in result.outlines if "::" in line]


def test_a_race_item_per_group_of_two_or_more_after_the_cases_selected_by_model_not_backend(pytester) -> None:
    tiny_onnx(pytester.path / "tiny.onnx", 4)
    path = write_scenario(pytester.path, ITEMS, "items.yaml")
    ids = collected(pytester, str(path))
    cases = [case.case_id for case in expand(load_scenario(path))]
    # after every case; none for tiny, a group of one
    assert ids == [*cases, "race-digits_cnn-b1", "race-digits_cnn-b4"]
    assert [i for i in collected(pytester, str(path), "-k", "onnxruntime_cpu") if i.startswith("race-")] == []
    assert [i for i in collected(pytester, str(path), "-k", "fp16") if i.startswith("race-")] == []
    # (not "-k race": pytester's folder, named after this test, matches it)
    assert collected(pytester, str(path), "-k", "b4 and not fp32 and not fp16") == ["race-digits_cnn-b4"]
    assert "race-digits_cnn-b1" in collected(pytester, str(path), "-k", "digits_cnn")


@pytest.mark.parametrize(("where", "expected"), [
    ("race: off\n", []),
    ("race: {max_seconds: 10}\n", ["race-digits_cnn-b1", "race-digits_cnn-b4"]),
], ids=["scenario-off", "scenario-block"])
def test_race_off_leaves_no_race_item(pytester, where: str, expected: list[str]) -> None:
    tiny_onnx(pytester.path / "tiny.onnx", 4)
    path = write_scenario(pytester.path, ITEMS + "    " + where, "items.yaml")
    assert [i for i in collected(pytester, str(path)) if i.startswith("race-")] == expected
    off_for_digits = ITEMS.replace("batch_sizes: [1, 4]}", "batch_sizes: [1, 4], race: false}") + "    " + where
    path = write_scenario(pytester.path, off_for_digits, "items.yaml")
    assert [i for i in collected(pytester, str(path)) if i.startswith("race-")] == []


# --- a worker that fails mid-race ------------------------------------------------------------------------------


@pytest.mark.e2e
def test_a_configuration_whose_worker_fails_mid_race_leaves_it_and_the_others_race_on(
        tmp_path: Path, scenario_file, digits_artifacts, test_backends) -> None:
    """F crashes in its worker's fourth session (round 4 of the race, whatever the machine's speed; its case's own
    measurement, in a worker of its own, prepared one): F is "not raced" with the worker's reason, its three rounds
    stay in the record, A and B race on without it, and the run's case records are all there."""
    scenario = scenario_file(f"""
        name: faulty
        models: [{{path: {digits_artifacts["onnxruntime_cpu"]}, label: digits}}]
        backends:
          - {{name: onnxruntime_cpu, threads: 1, label: A}}
          - {{name: onnxruntime_cpu, threads: 1, label: B}}
          - {{name: fault_ort, threads: 1, label: F, fault: segv, fault_at: run, fault_from_session: 4,
              fault_after: 50}}
        measure: {FAST_MEASURE}
        race: {{max_seconds: 15, {FAST_RACE}, gross_factor: 1000}}
    """)
    out = tmp_path / "run"
    done = run_cli("run", str(scenario), "--out", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert [r["status"] for r in read_jsonl(out / "results.jsonl")] == ["passed"] * 3
    [race] = read_race_records(out / "race.jsonl")
    assert race.status == "raced", race.reason
    f = entries(race)["F"]
    assert f.status == "not raced" and f.reason.startswith("its worker failed in the race: F fp32 side: "), f.reason
    assert "SIGSEGV" in f.reason, f.reason
    with_f = [r for r in race.rounds if "F fp32" in r.slices]
    assert [r.index for r in with_f] == [0, 1, 2], [sorted(r.slices) for r in race.rounds]
    assert f.slices == sum(len(r.slices["F fp32"]) for r in with_f) > 0 and f.median_ms is not None
    after = race.rounds[3:]
    assert after and all(sorted(r.slices) == ["A fp32", "B fp32"] for r in after), "the others raced on"
    assert {entries(race)[label].status for label in ("A", "B")} <= {"survived", "eliminated"}
    assert "F fp32" not in race.tied and race.winner != "F fp32"
    assert_rounds_aligned_and_balanced(race)
    assert_outcome_consistent(race)
    assert "Traceback" not in done.stderr


# --- settings --------------------------------------------------------------------------------------------------


def test_a_models_race_block_goes_over_the_scenarios_key_by_key(scenario_file) -> None:
    loaded = load_scenario(scenario_file("""
        name: settings
        models:
          - {name: digits_cnn, race: {max_seconds: 9}}
          - {name: mobilenet_v2, race: false}
          - {name: tiny_transformer, race: true}
        backends: [tflite_cpu]
        race: {threshold: 10%, max_seconds: 30, seed: 3}
    """))
    races = {case.model_label: case.race for case in expand(loaded)}
    assert races["mobilenet_v2"] is None
    digits = RaceSettings.from_case(next(c for c in expand(loaded) if c.model_label == "digits_cnn"))
    assert (digits.threshold, digits.max_seconds, digits.seed, digits.gross_factor) == (0.1, 9, 3, 1.5)
    assert races["tiny_transformer"]["max_seconds"] == 30 and races["tiny_transformer"]["threshold"] == 0.1
    # the scenario's races off, one model's on: its own block over the defaults
    loaded = load_scenario(scenario_file("""
        name: settings
        models: [{name: digits_cnn, race: {max_seconds: 9}}, mobilenet_v2]
        backends: [tflite_cpu]
        race: off
    """, name="off.yaml"))
    races = {case.model_label: case.race for case in expand(loaded)}
    assert races["mobilenet_v2"] is None and races["digits_cnn"]["max_seconds"] == 9
    assert races["digits_cnn"]["threshold"] == 0.05


@pytest.mark.parametrize(("text", "line", "fragments"), [
    ("race: {max_second: 10}", 4, ["race: unknown key 'max_second' (did you mean 'max_seconds'?)"]),
    ("race:\n  threshold: 5%\n  gross_factr: 2", 6, ["race: unknown key 'gross_factr' (did you mean 'gross_factor'?)"]),
    ("race: {max_seconds: 0}", 4, ["race.max_seconds: Input should be greater than 0"]),
    ("race: {threshold: 150%}", 4, ["race.threshold: ", "not a share between 0 and 100 %"]),
    ("race: maybe", 4, ["race: a race block", "or false/off to turn races off, not 'maybe'"]),
], ids=["unknown-key", "unknown-key-block", "max-seconds-0", "threshold-over-100", "not-a-switch"])
def test_a_bad_race_block_is_one_error_at_its_line(scenario_file, text: str, line: int, fragments: list[str]) -> None:
    path = scenario_file("name: x\nmodels: [digits_cnn]\nbackends: [tflite_cpu]\n" + text + "\n")
    assert_scenario_error(path, line, fragments)
    from scenario.load import ScenarioError

    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert len(str(caught.value).splitlines()) == 1, str(caught.value)  # one error, not one per union member


def test_an_unknown_key_in_a_models_race_block_is_named_with_its_model(scenario_file) -> None:
    path = scenario_file("name: x\nmodels:\n  - name: digits_cnn\n    race: {treshold: 5}\nbackends: [tflite_cpu]\n")
    assert_scenario_error(path, 4, ["models[0].race: unknown key 'treshold' (did you mean 'threshold'?)"])


@pytest.mark.parametrize("written", ["'5'", "5", "5%", "0.05", "'0.05'"])
def test_a_threshold_reads_alike_in_the_race_and_ab_blocks_and_on_the_command_line(scenario_file,
                                                                                     written: str) -> None:
    """"5", 5, "5%" and 0.05 are five per cent everywhere (scenario.defaults.parse_share, one rule)."""
    from harness.cli import build_parser

    loaded = load_scenario(scenario_file(f"""
        name: shares
        models: [{{name: digits_cnn, race: {{threshold: {written}}}}}]
        backends: [tflite_cpu]
        race: {{threshold: {written}}}
        ab: {{threshold: {written}}}
    """))
    assert loaded.scenario.race.threshold == pytest.approx(0.05)
    assert loaded.scenario.ab.threshold == pytest.approx(0.05)
    assert loaded.scenario.models[0].race.threshold == pytest.approx(0.05)
    command_line = written.strip("'")
    args = build_parser().parse_args(["ab", "scenario.yaml", "--threshold", command_line])
    assert args.threshold == pytest.approx(0.05)


# --- the Sitting with three sides ------------------------------------------------------------------------------


@dataclass
class Timing:
    """A sitting's settings (harness.sitting.rounds.Timing), changeable between rounds."""

    max_seconds: float = 120.0
    round_seconds: float = 2.7e-6  # shorter than any block: a round is one square of blocks (as many as sides)
    slice_ms: float = 1e-4  # shorter than any inference: every slice is exactly one (timed_loop runs one at least)
    warmup_seconds: float = 0.0  # the warm-up is then exactly the case's warmup_runs
    warmup_runs: int | None = None
    method: str = "lockstep"
    fresh: str = "session"


class CountingSitting(Sitting):
    """The real Sitting, counting the slices it takes into the tallies (to see a round stopped part-way), with
    ``fixed_blocks`` blocks a round where set (a fault then falls in a known block, whatever the machine's speed)."""

    counted = 0
    fixed_blocks: int | None = None

    def blocks_per_round(self, sides: list[str]) -> int:
        return self.fixed_blocks or super().blocks_per_round(sides)

    def _count(self, side: str, samples_ns: list[int]) -> float:
        self.counted += 1
        return super()._count(side, samples_ns)


def three_sides(folder: Path, faulty: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Cases X, Y, Z of a one-node ONNX model (X on fault_ort with ``faulty`` options), and their artefacts."""
    model = tiny_onnx(folder / "tiny.onnx", 4)
    path = write_scenario(folder, f"""
        name: sitting
        models: [{{path: tiny.onnx}}]
        backends:
          - {{name: fault_ort, threads: 1, label: X, {faulty}}}
          - {{name: onnxruntime_cpu, threads: 1, label: Y}}
          - {{name: onnxruntime_cpu, threads: 1, label: Z}}
        measure: {{warmup_runs: 2, warmup_seconds: 0, timeout_s: 30}}
    """)
    cases = {case.backend_label: case for case in expand(load_scenario(path))}
    return cases, dict.fromkeys(cases, str(model))


def tallies(sitting: Sitting) -> dict[str, tuple[list[float], int, float]]:
    return {side: (list(t.slice_medians), t.inferences, t.startup_s) for side, t in sitting.tally.items()}


def test_block_orders_are_a_balanced_latin_square_in_every_run_of_n_blocks() -> None:
    for sides in (["a", "b"], ["a", "b", "c"], ["a", "b", "c", "d", "e"]):
        for seed in range(20):
            orders = block_orders(np.random.default_rng(seed), sides, 7)
            k = len(sides)
            assert len(orders) == -(-7 // k) * k
            for start in range(0, len(orders), k):
                square = orders[start:start + k]
                assert all(sorted(order) == sorted(sides) for order in square)
                for position in range(k):  # every side once in every position, first included
                    assert sorted(order[position] for order in square) == sorted(sides)
    # random: not the same square every time
    assert len({tuple(map(tuple, block_orders(np.random.default_rng(s), ["a", "b", "c"], 3))) for s in range(20)}) > 1


def test_a_side_that_fails_mid_round_takes_the_partial_round_with_it_and_the_others_go_on(
        tmp_path: Path, test_backends) -> None:
    """Three sides, one inference a slice, so that X's crash falls where it is told: its session 2 (round 2) makes
    one call loading and two warming up, then crashes on its fourth slice (fault_after 6), in the fourth block.
    The three blocks before it are counted, then taken back out: the sides' tallies are those after round 1, and
    Y and Z go on in round 3, in blocks of their own."""
    cases, artifacts = three_sides(tmp_path, "fault: segv, fault_at: run, fault_from_session: 2, fault_after: 6")
    sitting = CountingSitting(cases, artifacts, dict.fromkeys(cases, sys.executable), Timing(), tmp_path / "logs",
                              "three", np.random.default_rng(0))
    sitting.fixed_blocks = 9
    try:
        blocks = sitting.round(["X", "Y", "Z"])
        assert blocks is not None and len(blocks) == 9
        assert all(sorted(b.medians) == ["X", "Y", "Z"] and sorted(b.order or []) == ["X", "Y", "Z"] for b in blocks)
        for start in range(0, 9, 3):  # every side first once in every three blocks
            assert sorted(b.order[0] for b in blocks[start:start + 3]) == ["X", "Y", "Z"]
        assert {side: len(t.slice_medians) for side, t in sitting.tally.items()} == {"X": 9, "Y": 9, "Z": 9}
        after_first = tallies(sitting)
        counted = sitting.counted
        with pytest.raises(SideFailure) as failure:
            sitting.round(["X", "Y", "Z"])
        assert failure.value.side == "X" and "SIGSEGV" in str(failure.value), failure.value
        assert sitting.counted - counted >= 3 * 3, "the crash came after three whole blocks"
        assert tallies(sitting) == after_first and sitting.rounds_done == 1
        assert "X" not in sitting.workers
        blocks = sitting.round(["Y", "Z"])
        assert blocks is not None and all(sorted(b.medians) == ["Y", "Z"] for b in blocks)
        assert len(sitting.tally["X"].slice_medians) == 9
        assert len(sitting.tally["Y"].slice_medians) == len(sitting.tally["Z"].slice_medians) == 9 + len(blocks)
    finally:
        sitting.close()


def test_a_side_that_fails_renewing_its_session_leaves_the_others_ready_for_the_next_round(
        tmp_path: Path, test_backends) -> None:
    """X crashes preparing its second session, asked first: Y and Z renewed too, and their replies were never
    read. The next round must not take those for its own (it read the renewal's reply as a slice's and failed
    with a KeyError): Y and Z race on, with whole rounds in their tallies."""
    cases, artifacts = three_sides(tmp_path, "fault: segv, fault_at: prepare, fault_from_session: 2")
    sitting = Sitting(cases, artifacts, dict.fromkeys(cases, sys.executable), Timing(), tmp_path / "logs", "renew",
                      np.random.default_rng(1))
    try:
        first = sitting.round(["X", "Y", "Z"])
        assert first is not None and len(first) == 3  # the least a round holds: one square of three
        after_first = tallies(sitting)
        with pytest.raises(SideFailure) as failure:
            sitting.round(["X", "Y", "Z"])
        assert failure.value.side == "X" and "SIGSEGV" in str(failure.value), failure.value
        assert tallies(sitting) == after_first
        raced = 0
        for _ in range(2):
            blocks = sitting.round(["Y", "Z"])
            assert blocks is not None and all(sorted(b.medians) == ["Y", "Z"] for b in blocks)
            raced += len(blocks)
        assert len(sitting.tally["Y"].slice_medians) == len(sitting.tally["Z"].slice_medians) == len(first) + raced
    finally:
        sitting.close()


def test_the_time_cap_inside_a_round_takes_its_slices_back_out(tmp_path: Path, test_backends) -> None:
    """Round 2 is planned far longer than the time left (about 30 s of 20 ms slices against a cap 3 s away): the
    cap comes part-way through, the round is given up, its workers killed, and the tallies are those after round
    1; no side stalled (its slices were as long as before)."""
    cases, artifacts = three_sides(tmp_path, "fault_at: run")
    timing = Timing(round_seconds=0.36, slice_ms=20.0)
    sitting = CountingSitting(cases, artifacts, dict.fromkeys(cases, sys.executable), timing, tmp_path / "logs",
                              "cap", np.random.default_rng(2))
    try:
        first = sitting.round(["X", "Y", "Z"])
        assert first is not None and len(first) == 6
        after_first, counted = tallies(sitting), sitting.counted
        timing.round_seconds, timing.max_seconds = 30.0, sitting.wall_s + 3.0
        assert sitting.round(["X", "Y", "Z"]) is None
        assert sitting.counted > counted, "the cap came inside the round's slices"
        assert tallies(sitting) == after_first and sitting.rounds_done == 1
        assert sitting.given_up == "round 2 given up at the time cap" and sitting.stalled is None
        assert all(worker.process.poll() is not None for worker in sitting.workers.values())
    finally:
        sitting.close()


def test_a_configuration_whose_worker_fails_is_never_among_the_survivors(tmp_path: Path, test_backends) -> None:
    """X, the baseline and listed first, crashes in the first round (its second slice); the race's one round ends
    it before any look ("cannot tell"): X is "not raced", and the survivors, among which the recommendation is
    made, are Y and Z only (X was recommended: "listed first")."""
    from harness.race import GroupRace
    from tests.records import make_record

    cases, artifacts = three_sides(tmp_path, "fault: segv, fault_at: run, fault_after: 4")
    records = [make_record(case.case_id, p50_ms=0.01, scenario="sitting", model="tiny", backend=case.backend,
                           backend_label=label) for label, case in cases.items()]
    settings = RaceSettings(max_rounds=1, slice_ms=Timing.slice_ms, round_seconds=Timing.round_seconds,
                            warmup_seconds=0.0)
    by_id = {case.case_id: case for case in cases.values()}
    files = {case.case_id: artifacts[label] for label, case in cases.items()}
    race = GroupRace(records, records[0], by_id, files, settings, tmp_path / "logs").run()
    x = entries(race)["X"]
    assert x.status == "not raced" and "SIGSEGV" in x.reason and x.slices == 0, x
    assert race.status == "raced" and race.outcome == "cannot tell", race.reason
    assert race.tied == ["Y fp32", "Z fp32"] and race.recommended in race.tied, (race.tied, race.recommended)
    assert_outcome_consistent(race)
    [one] = race.rounds
    assert sorted(one.slices) == ["Y fp32", "Z fp32"]


def test_a_round_counts_its_blocks_by_how_long_each_sides_slice_lasts(tmp_path: Path) -> None:
    """A slice lasts slice_ms or one inference, whichever is longer: three sides at 330 ms an inference (resnet50
    at batch 8) fill a 1 s round with two blocks (rounded up to one square of three), not nine 9 s blocks."""
    cases = {side: type("Case", (), {"measure": {"timeout_s": 30}})() for side in ("X", "Y", "Z")}
    sitting = Sitting(cases, {}, {}, Timing(round_seconds=1.0, slice_ms=50.0), tmp_path, "count",
                      np.random.default_rng(0))
    sides = ["X", "Y", "Z"]
    assert sitting.blocks_per_round(sides) == 7  # before any start-up: 1 s / (3 x 50 ms)
    sitting.inference_s.update(X=0.001, Y=0.002, Z=0.003)  # shorter than a slice: the slice counts
    assert sitting.blocks_per_round(sides) == 7
    sitting.inference_s.update(X=0.33, Y=0.33, Z=0.33)
    assert sitting.blocks_per_round(sides) == 2
    sitting.inference_s.update(X=0.33, Y=0.01, Z=0.01)  # one slow side: 0.43 s a block
    assert sitting.blocks_per_round(sides) == 2
    sitting.inference_s.update(X=0.12, Y=0.01, Z=0.01)  # 0.22 s a block
    assert sitting.blocks_per_round(sides) == 5


def test_lock_step_sides_share_cores_drawn_at_random_where_they_need_fewer_than_the_machine_has() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    cores = physical_cores(cpus)
    rng = np.random.default_rng(0)
    assert shared_cores(rng, [1, None]) is None  # a runtime's default threads: it may use every core
    assert shared_cores(rng, [len(cores), 1]) is None  # every core needed: pinning changes nothing
    if len(cores) < 2:
        assert shared_cores(rng, [1, 1]) is None
        return
    drawn = [shared_cores(rng, [1, 1, 1]) for _ in range(40)]
    assert all(d is not None and len(d) == 1 and d[0] in cpus for d in drawn)
    assert len({tuple(d or []) for d in drawn}) > 1  # drawn, not always the first core
    two = shared_cores(rng, [2, 1]) if len(cores) > 2 else None
    if two is not None:  # one CPU of each of two physical cores
        assert len(two) == 2 and len({next(i for i, c in enumerate(cores) if cpu in c) for cpu in two}) == 2


def test_a_race_records_the_cores_its_rounds_ran_on(tmp_path: Path, test_backends) -> None:
    """One thread a side on a machine with more than one core: each round's configurations all ran on one CPU,
    every thread of every worker (they start free and are moved there once ready)."""
    cases, artifacts = three_sides(tmp_path, "fault_at: run")
    sitting = Sitting(cases, artifacts, dict.fromkeys(cases, sys.executable), replace(Timing(), fresh="worker"),
                      tmp_path / "logs", "pinned", np.random.default_rng(3))
    try:
        assert sitting.round(["X", "Y", "Z"]) is not None
        cores = sitting.round_cores
        if len(physical_cores(sorted(os.sched_getaffinity(0)))) < 2:
            assert cores is None
            return
        assert cores is not None and len({tuple(c) for c in cores.values()}) == 1
        [cpu] = cores["X"]
        for worker in sitting.workers.values():
            threads = [int(tid) for tid in os.listdir(f"/proc/{worker.process.pid}/task")]
            assert threads and all(os.sched_getaffinity(tid) == {cpu} for tid in threads), worker.side
    finally:
        sitting.close()


def test_sides_are_pinned_only_where_their_threads_are_all_the_cpu_they_use(tmp_path: Path) -> None:
    """A GPU delegate's software driver, or a concurrent case's streams, use cores beyond ``threads``: pinning
    them to one core would measure something else than what runs. CPU runtimes at one thread each are pinned."""
    if len(physical_cores(sorted(os.sched_getaffinity(0)))) < 2:
        pytest.skip("one core: nothing to choose among")

    def case(backend: str, mode: str = "latency") -> Any:
        return type("Case", (), {"measure": {"timeout_s": 30}, "backend": backend, "mode": mode,
                                 "backend_options": {"threads": 1}})()

    def cores(**cases: Any) -> dict[str, list[int]] | None:
        sitting = Sitting(cases, {}, {}, replace(Timing(), fresh="worker"), tmp_path, "cores",
                          np.random.default_rng(0))
        return sitting._round_cores(list(cases))

    pinned = cores(a=case("tflite_cpu"), b=case("onnxruntime_cpu"))
    assert pinned is not None and pinned["a"] == pinned["b"] and len(pinned["a"]) == 1
    assert cores(a=case("tflite_cpu"), b=case("tflite_gpu")) is None
    assert cores(a=case("tflite_cpu"), b=case("tflite_cpu", mode="concurrent")) is None
    assert cores(a=case("tflite_cpu"), b=case("no_such_backend")) is None


def test_onnx_runtime_races_with_its_pool_spinning_within_runs_only(tmp_path: Path, test_backends) -> None:
    """An ONNX Runtime session of more than one thread stops spinning when a run returns (else its pool burns a
    core into the next configuration's slice); the option is real: a session prepared with it runs, and a value
    the backend does not know is refused. Adapters built on onnxruntime_cpu get it too; others are left alone."""
    from backends.base import BackendOptions
    from backends.onnxruntime_cpu import OnnxRuntimeCpu
    from harness.race import _race_options

    def case(backend: str, **options: Any) -> Any:
        return type("Case", (), {"backend": backend, "backend_options": options})()

    assert _race_options(case("onnxruntime_cpu", threads=2)) == {"spinning": "within_runs"}
    assert _race_options(case("onnxruntime_cpu")) == {"spinning": "within_runs"}  # the runtime's default: many
    assert _race_options(case("fault_ort", threads=2)) == {"spinning": "within_runs"}
    assert _race_options(case("onnxruntime_cpu", threads=1)) == {}
    assert _race_options(case("onnxruntime_cpu", threads=2, spinning=True)) == {}  # the user's word stands
    assert _race_options(case("tflite_cpu", threads=2)) == {}
    assert OnnxRuntimeCpu.option_problem("spinning", "within_runs") is None
    assert "within_runs" in (OnnxRuntimeCpu.option_problem("spinning", "sometimes") or "")
    model = tiny_onnx(tmp_path / "tiny.onnx", 4)
    session = OnnxRuntimeCpu().prepare(str(model), BackendOptions(threads=2, extra={"spinning": "within_runs"}), 1)
    [out] = session.run([np.ones((1, 4), np.float32)])
    assert np.allclose(out, 1.0)
