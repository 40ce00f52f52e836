"""What the user sees of a run's races: every speed-up from the race where the group raced, labelled
"sequential" where it did not; the console's tables and the report's race section say the same.

The fixture is the committed run tests/data/run_0684769 (digits_cnn at batch 1 on tflite_cpu and onnxruntime_cpu,
fp32 and int8), copied with its cases repeated at batch 2, 4 and 8 so that it has four groups, and a race.jsonl
written with the typed race record: batch 1 a winner (with an entry eliminated and one excluded), batch 2 a tie,
batch 4 "cannot tell", batch 8 not raced.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from harness.console import best_table, print_summary, race_table, tradeoff_table
from reporting.baseline import EXCLUDED, RACE, SEQUENTIAL, Speedup, answer_per_group, resolve_speedups
from reporting.browser import open_report, screenshot_page
from reporting.charts import race_figure
from reporting.frame import records_frame
from reporting.html import build_page, write_report
from reporting.numbers import speedup_text
from results.race_record import PairFigures, RaceEntry, RaceRecord, RaceRound
from results.runs import Run, load_run
from tests.test_report_browser import assert_clean_load

FIXTURE_RUN = Path(__file__).parent / "data" / "run_0684769"
NAMES = {"tflite_cpu fp32": ("tflite_cpu", "fp32"), "tflite_cpu int8": ("tflite_cpu", "int8"),
         "onnxruntime_cpu fp32": ("onnxruntime_cpu", "fp32"), "onnxruntime_cpu int8": ("onnxruntime_cpu", "int8")}
BASELINE = "tflite_cpu fp32"  # the run names no baseline: the first fp32 case that passed


def case_id(name: str, batch: int) -> str:
    backend, precision = NAMES[name]
    return f"digits_cnn-{precision}-b{batch}-{backend}"


def pair(speedup: float, low: float, high: float, verdict: str, rounds: int = 12) -> PairFigures:
    """The race's figures of a configuration against the baseline, given as the speed-up the user reads."""
    return PairFigures(against=BASELINE, rounds=rounds, ratio=1 / speedup, ci_low=1 / high, ci_high=1 / low,
                       p_value=0.001 if verdict in ("faster", "slower") else 0.4, mde=0.03, verdict=verdict)


def entry(name: str, batch: int, status: str, **fields) -> RaceEntry:
    backend, precision = NAMES[name]
    return RaceEntry(name=name, case_id=case_id(name, batch), backend=backend, backend_label=backend,
                     precision=precision, status=status, is_baseline=name == BASELINE, **fields)


def rounds_for(truth: dict[str, float], count: int, eliminated: dict[str, int], looks: list[int],
               seed: int) -> list[RaceRound]:
    """Rounds as a race records them: each racing configuration's slice medians (ms), three blocks a round, its
    latency the baseline's over its true speed-up times a little noise; an eliminated one stops after its look."""
    rng = np.random.default_rng(seed)
    rounds = []
    for index in range(count):
        machine = 0.006 * (1 + 0.2 * rng.random())  # the machine's speed drifts between rounds: both sides see it
        racing = [name for name in truth if eliminated.get(name, count) > index]
        slices = {name: [float(machine / truth[name] * (1 + 0.01 * rng.standard_normal())) for _ in range(3)]
                  for name in racing}
        rounds.append(RaceRound(index=index, at_s=2.0 * index, slices=slices,
                                orders=[list(rng.permutation(racing)) for _ in range(3)], look=index + 1 in looks,
                                eliminated=[name for name, after in eliminated.items() if after == index + 1]))
    return rounds


def race_record(batch: int, **fields) -> RaceRecord:
    return RaceRecord(scenario="fixture", model="digits_cnn", batch_size=batch, mode="latency",
                      baseline=BASELINE, threshold=0.05, min_rounds=10, **fields)


def fixture_races() -> list[RaceRecord]:
    winner = race_record(
        1, status="raced", outcome="winner", winner="tflite_cpu int8", reason="the last one left",
        recommended="tflite_cpu int8", looks=[10, 12], wall_s=40.0, measured_s=31.0,
        entries=[entry(BASELINE, 1, "eliminated", eliminated_after=12),
                 entry("tflite_cpu int8", 1, "survived", vs_baseline=pair(1.46, 1.41, 1.51, "faster")),
                 entry("onnxruntime_cpu fp32", 1, "eliminated", eliminated_after=10,
                       vs_baseline=pair(0.62, 0.6, 0.64, "slower", rounds=10)),
                 entry("onnxruntime_cpu int8", 1, "excluded", sequential_ratio=6.1,
                       reason="6.1× the best's sequential p50, far outside the noise")],
        rounds=rounds_for({BASELINE: 1.0, "tflite_cpu int8": 1.46, "onnxruntime_cpu fp32": 0.62}, 12,
                          {"onnxruntime_cpu fp32": 10, BASELINE: 12}, [10, 12], seed=1))
    tie = race_record(
        2, status="raced", outcome="tie", tied=[BASELINE, "tflite_cpu int8"], recommended=BASELINE,
        recommendation="better fidelity, then smaller file", reason="the survivors lie within ±5 % of each other",
        looks=[10, 12, 14], wall_s=45.0, measured_s=36.0,
        entries=[entry(BASELINE, 2, "survived"),
                 entry("tflite_cpu int8", 2, "survived", vs_baseline=pair(1 / 0.988, 0.998, 1.026, "unchanged")),
                 entry("onnxruntime_cpu fp32", 2, "eliminated", eliminated_after=10,
                       vs_baseline=pair(0.6, 0.58, 0.63, "slower", rounds=10)),
                 entry("onnxruntime_cpu int8", 2, "excluded", sequential_ratio=5.9)],
        rounds=rounds_for({BASELINE: 1.0, "tflite_cpu int8": 1.012, "onnxruntime_cpu fp32": 0.6}, 14,
                          {"onnxruntime_cpu fp32": 10}, [10, 12, 14], seed=2))
    cannot_tell = race_record(
        4, status="raced", outcome="cannot tell", tied=[BASELINE, "tflite_cpu int8"],
        reason="the race's 45 s were spent: the survivors are neither apart nor within ±5 %",
        looks=[10, 12], wall_s=15.0, measured_s=12.0,
        entries=[entry(BASELINE, 4, "survived"),
                 entry("tflite_cpu int8", 4, "survived", vs_baseline=pair(1.03, 0.97, 1.09, "cannot tell")),
                 entry("onnxruntime_cpu fp32", 4, "eliminated", eliminated_after=10,
                       vs_baseline=pair(0.55, 0.5, 0.6, "slower", rounds=10)),
                 entry("onnxruntime_cpu int8", 4, "not raced", reason="its session failed to start in the race")],
        rounds=rounds_for({BASELINE: 1.0, "tflite_cpu int8": 1.03, "onnxruntime_cpu fp32": 0.55}, 12,
                          {"onnxruntime_cpu fp32": 10}, [10, 12], seed=4))
    not_raced = race_record(8, status="not raced", reason="race: false in the scenario", wall_s=0.0)
    return [winner, tie, cannot_tell, not_raced]


def copy_fixture(target: Path, races: list[RaceRecord] | None) -> Path:
    """The committed run with its cases repeated at batch 2, 4 and 8, and ``races`` as its race.jsonl."""
    shutil.copytree(FIXTURE_RUN, target)
    lines = (target / "results.jsonl").read_text(encoding="utf-8").splitlines()
    repeated = []
    for batch in (2, 4, 8):
        for line in lines:
            data = json.loads(line)
            data.update(case_id=data["case_id"].replace("-b1-", f"-b{batch}-"), batch_size=batch)
            repeated.append(json.dumps(data))
    (target / "results.jsonl").write_text("\n".join(lines + repeated) + "\n", encoding="utf-8")
    if races is not None:
        (target / "race.jsonl").write_text("".join(json.dumps(r.to_json()) + "\n" for r in races), encoding="utf-8")
    return target


@pytest.fixture
def raced_run(tmp_path: Path) -> Run:
    run = load_run(copy_fixture(tmp_path / "raced", fixture_races()))
    assert len(run.races) == 4 and len(run.records) == 24
    return run


def console_text(*renderables, width: int = 400) -> str:
    console = Console(record=True, width=width)
    for renderable in renderables:
        console.print(renderable)
    return console.export_text()


def line_with(text: str, *fragments: str) -> str:
    """The one line of ``text`` holding every fragment (a table row); fails naming them when none does."""
    found = [line for line in text.splitlines() if all(fragment in line for fragment in fragments)]
    assert len(found) == 1, (fragments, text)
    return found[0]


# -- (a) the text rules ---------------------------------------------------------------------------------------

def test_a_race_ratio_shows_its_interval_and_a_tie_never_reads_faster() -> None:
    assert speedup_text(Speedup(1.46, RACE, 1.41, 1.51, verdict="faster", threshold=0.05)) == "1.46× [1.41, 1.51]"
    # inside ±threshold: as fast as the baseline, whatever way the estimate leans and even if "significant"
    for verdict in ("faster", "unchanged", "slower"):
        text = speedup_text(Speedup(1.02, RACE, 0.99, 1.03, verdict=verdict, threshold=0.05))
        assert text == "≈ baseline (±3.0 %)" and "faster" not in text and "×" not in text
    assert speedup_text(Speedup(0.985, RACE, 0.97, 0.995, verdict="slower", threshold=0.05)) == "≈ baseline (±3.0 %)"
    # the same interval against a narrower threshold reaches past it: the ratio and interval, not "≈"
    assert speedup_text(Speedup(1.02, RACE, 0.99, 1.03, verdict="cannot tell", threshold=0.02)) == \
        "1.02× [0.99, 1.03] (cannot tell)"
    assert speedup_text(Speedup(1.03, RACE, 0.97, 1.09, verdict="cannot tell", threshold=0.05)) == \
        "1.03× [0.97, 1.09] (cannot tell)"
    assert speedup_text(Speedup(1.46, RACE, 1.41, 1.51, threshold=0.05), reference="fp32") == "1.46× [1.41, 1.51]"
    assert speedup_text(Speedup(1.0, RACE, 0.99, 1.01, threshold=0.05), reference="fp32") == "≈ fp32 (±1.0 %)"


def test_sequential_and_excluded_speedups_are_labelled_and_the_baseline_says_so() -> None:
    assert speedup_text(Speedup(2.11, SEQUENTIAL)) == "2.11× sequential"
    assert speedup_text(Speedup(0.41, EXCLUDED)) == "0.41× sequential (far outside the noise)"
    assert speedup_text(Speedup(1.0, RACE, 1.0, 1.0, is_baseline=True)) == "baseline"
    assert speedup_text(Speedup(1.0, SEQUENTIAL, is_baseline=True)) == "baseline"
    assert speedup_text(None) == "-"
    # too few rounds for an upper end: the interval is open, and the race could not tell
    few = PairFigures(against=BASELINE, rounds=3, ratio=0.9, ci_low=0.0, ci_high=1.05, p_value=0.5, mde=math.inf,
                      verdict="cannot tell")
    value, low, high = few.speedup()
    assert speedup_text(Speedup(value, RACE, low, high, verdict="cannot tell", threshold=0.05)) == \
        "1.11× [0.95, ∞] (cannot tell)"


def test_each_record_takes_its_speedup_from_its_groups_race(raced_run: Run) -> None:
    texts = {record.case_id: speedup_text(gain)
             for record, gain in zip(raced_run.records, resolve_speedups(raced_run.records, raced_run.races),
                                     strict=True)}
    assert texts[case_id(BASELINE, 1)] == "baseline"
    assert texts[case_id("tflite_cpu int8", 1)] == "1.46× [1.41, 1.51]"
    assert texts[case_id("onnxruntime_cpu fp32", 1)] == "0.62× [0.60, 0.64]"  # eliminated: it raced
    assert texts[case_id("onnxruntime_cpu int8", 1)] == "0.16× sequential (far outside the noise)"
    assert texts[case_id("tflite_cpu int8", 2)] == "≈ baseline (±2.6 %)"
    assert texts[case_id("tflite_cpu int8", 4)] == "1.03× [0.97, 1.09] (cannot tell)"
    sequential_int8 = 0.005685 / 0.034715  # its own p50s: the race did not measure it
    assert texts[case_id("onnxruntime_cpu int8", 4)] == f"{sequential_int8:.2f}× sequential"
    assert texts[case_id("tflite_cpu int8", 8)] == f"{0.005685 / 0.008148:.2f}× sequential"  # not raced
    assert texts["digits_cnn-fp32-b1-tensorrt"] == "-"  # skipped: none

    answers = {group[2]: answer for group, answer in answer_per_group(raced_run.records, raced_run.races).items()}
    assert raced_run.records[answers[1].index].case_id == case_id("tflite_cpu int8", 1)  # the race's, not the p50s'
    assert answers[1].note == "won the race (12 rounds)"
    assert raced_run.records[answers[2].index].case_id == case_id(BASELINE, 2)  # the recommended of the tie
    assert answers[2].note == ("tie: tflite_cpu fp32 ≈ tflite_cpu int8, within 1.2 %; recommended: tflite_cpu fp32 "
                               "(better fidelity, then smaller file)")
    assert answers[4].note == "cannot tell among tflite_cpu fp32, tflite_cpu int8"
    assert answers[8].note == "fastest by sequential p50 (not raced)" and not answers[8].raced


def test_a_failed_case_gets_no_speedup_even_from_a_race(raced_run: Run) -> None:
    failed = next(r for r in raced_run.records if r.case_id == case_id("tflite_cpu int8", 1))
    failed.status, failed.reason = "failed", "fidelity: output 'logits': cosine 0.04 < min_cosine 0.99"
    gains = dict(zip((r.case_id for r in raced_run.records),
                     resolve_speedups(raced_run.records, raced_run.races), strict=True))
    assert gains[failed.case_id] is None


# -- (b) the console ------------------------------------------------------------------------------------------

def test_console_names_a_winner_only_where_the_race_won(raced_run: Run) -> None:
    text = console_text(best_table(raced_run.records, raced_run.races))
    winner = line_with(text, "digits_cnn", " 1 ", "won the race")
    assert "tflite_cpu int8" in winner and "1.46× [1.41, 1.51] vs tflite_cpu fp32" in winner
    tie = line_with(text, "tie: tflite_cpu fp32 ≈ tflite_cpu int8, within 1.2 %")
    assert " 2 " in tie and "recommended: tflite_cpu fp32 (better fidelity, then smaller file)" in tie
    assert "baseline" in tie and "won" not in tie and "faster" not in tie
    cannot = line_with(text, "cannot tell among tflite_cpu fp32, tflite_cpu int8")
    assert " 4 " in cannot and "won" not in cannot
    sequential = line_with(text, "fastest by sequential p50 (not raced)")
    assert " 8 " in sequential and "tflite_cpu fp32" in sequential


def test_console_race_table_lists_each_entry_and_print_summary_the_races_time(raced_run: Run) -> None:
    text = console_text(race_table(raced_run.races))
    assert "winner: tflite_cpu int8" in line_with(text, "digits_cnn b1", "12")
    assert "1.46× [1.41, 1.51]" in line_with(text, "tflite_cpu int8", "survived", "1.46")
    assert "0.62× [0.60, 0.64]" in line_with(text, "onnxruntime_cpu fp32", "eliminated after 10 rounds", "0.62")
    line_with(text, "onnxruntime_cpu int8", "excluded (far outside the noise)", "0.16× sequential (far outside")
    line_with(text, "tflite_cpu int8", "survived", "≈ baseline (±2.6 %)")
    line_with(text, "onnxruntime_cpu int8", "not raced: its session failed to start in the race")
    line_with(text, "digits_cnn b8", "not raced: race: false in the scenario")

    console = Console(record=True, width=400)
    print_summary(raced_run.records, raced_run.path, console, races=raced_run.races)
    summary = console.export_text()
    assert "races: 3 groups in 1 min 40 s (1 not raced)" in summary
    assert "won the race" in summary and "eliminated after 10 rounds" in summary


def test_console_times_fp32_from_the_race_where_both_raced(raced_run: Run) -> None:
    table = tradeoff_table(raced_run.records, raced_run.races)
    if table is None:  # the fixture's records carry no fidelity: nothing to trade off
        pytest.skip("the fixture run has no fidelity figures")
    text = console_text(table)
    assert "1.46× [1.41, 1.51]" in line_with(text, case_id("tflite_cpu int8", 1))  # its fp32 is the baseline
    assert "sequential" in line_with(text, case_id("tflite_cpu int8", 8))
    # onnxruntime's int8 at batch 1 never raced: against its own fp32 it is sequential too
    assert "sequential" in line_with(text, case_id("onnxruntime_cpu int8", 1))
    # the fp32 case itself: its column names it
    assert line_with(text, case_id("onnxruntime_cpu fp32", 2)).split("│")[3].strip() == "fp32"


# -- (c) a run from before races ------------------------------------------------------------------------------

def test_a_run_without_races_labels_every_speedup_sequential(tmp_path: Path) -> None:
    run = load_run(copy_fixture(tmp_path / "before-races", None))
    assert run.races == []
    frame = records_frame([run], {run.machine_id: "A"})
    shown = frame[frame["speedup"].notna()]
    assert len(shown) == 16 and set(shown["speedup_source"]) == {"sequential"}
    assert all(text == "baseline" or text.endswith("× sequential") for text in shown["speedup_text"])
    assert frame[frame["speedup"].isna()]["speedup_text"].isna().all()  # the skipped tensorrt cases

    text = console_text(best_table(run.records))
    assert text.count("fastest by sequential p50 (not raced)") == 4 and "won the race" not in text
    console = Console(record=True, width=400)
    print_summary(run.records, run.path, console)
    assert "races:" not in console.export_text()

    page = build_page([run])
    matrix = page[page.index('<table class="matrix">'):page.index("</table>", page.index('<table class="matrix">'))]
    assert "× sequential" in matrix and "× [" not in matrix and "≈" not in matrix
    assert 'class="races"' not in page and "Every speed-up here is sequential" in page
    assert "repeating-linear-gradient" in matrix  # sequential ones are hatched, never a plain green or red


# -- the report -------------------------------------------------------------------------------------------------

def test_the_report_shows_race_speedups_and_a_race_section(raced_run: Run) -> None:
    frame = records_frame([raced_run], {raced_run.machine_id: "A"}).set_index("case_id")
    assert frame.loc[case_id("tflite_cpu int8", 1), "speedup_source"] == "race"
    assert frame.loc[case_id("tflite_cpu int8", 1), "speedup_low"] == pytest.approx(1.41)
    assert frame.loc[case_id("onnxruntime_cpu int8", 1), "speedup_source"] == EXCLUDED
    assert frame.loc[case_id("tflite_cpu int8", 8), "speedup_source"] == "sequential"

    page = build_page([raced_run])
    matrix = page[page.index('<table class="matrix">'):page.index("</table>", page.index('<table class="matrix">'))]
    assert "1.46× [1.41, 1.51]" in matrix and "≈ baseline (±2.6 %)" in matrix
    assert "1.03× [0.97, 1.09] (cannot tell)" in matrix and "0.16× sequential (far outside the noise)" in matrix
    tie_cell = matrix[matrix.rindex("<div", 0, matrix.index(case_id("tflite_cpu int8", 2))):]
    tie_cell = tie_cell[:tie_cell.index("</div>")]
    assert "≈ baseline" in tie_cell and "background: transparent" in tie_cell  # a tie is never the "faster" green

    answer = page[page.index('<section id="answer">'):page.index("</section>", page.index('<section id="answer">'))]
    rows = answer.split("<tr")[2:]
    assert "tflite_cpu · int8" in rows[0] and "won the race" in rows[0] and "1.46× [1.41, 1.51] vs" in rows[0]
    assert "tie: tflite_cpu fp32 ≈ tflite_cpu int8, within 1.2 %" in rows[1]
    assert "cannot tell among" in rows[2] and "fastest by sequential p50 (not raced)" in rows[3]

    races = page[page.index('<section class="races">'):]
    assert races.count('class="chart chart-race"') == 3  # the three raced groups; not raced: a table only
    for words in ("winner: tflite_cpu int8", "eliminated after 10 rounds", "excluded (far outside the noise)",
                  "race: false in the scenario", "40 s in all (31 s measuring)"):
        assert words in races, words


def test_the_race_chart_draws_the_running_ratio_with_eliminations_and_looks(raced_run: Run) -> None:
    figure = race_figure(raced_run.races[0])
    names = [trace.name for trace in figure.data]
    assert names == ["tflite_cpu int8", "onnxruntime_cpu fp32", "onnxruntime_cpu fp32 eliminated",
                     "tflite_cpu fp32 (baseline) eliminated", "look (judged after round)"]
    running = figure.data[0]
    assert list(running.x) == list(range(1, 13))  # one point per round done
    assert running.y[-1] == pytest.approx(1.46, rel=0.03)  # the rounds' own ratio: made at 1.46× with 1 % noise
    assert running.error_y.array[0] is None and running.error_y.array[-1] > 0  # no interval from one round
    eliminated = figure.data[2]
    assert list(eliminated.x) == [10]
    assert list(figure.data[3].x) == [12] and list(figure.data[3].y) == [1.0]  # the baseline left at the end
    assert list(figure.data[4].x) == [10, 12]
    band = [shape for shape in figure.layout.shapes if shape.type == "rect"]
    assert len(band) == 1 and band[0].y0 == pytest.approx(1 / 1.05) and band[0].y1 == pytest.approx(1.05)
    assert race_figure(raced_run.races[3]) is None  # not raced: nothing to draw


# -- (d) in a browser ---------------------------------------------------------------------------------------------

@pytest.mark.e2e
def test_the_race_section_renders_in_chromium(raced_run: Run, chromium, tmp_path: Path) -> None:
    report = write_report([raced_run.path], tmp_path / "raced.html")
    with open_report(report) as (page, check):
        screenshot_page(page, tmp_path / "raced.png")
        assert_clean_load(check)
        assert page.locator("section.races").count() == 1
        assert page.locator(".race .chart-race.js-plotly-plot:has(svg.main-svg)").count() == 3
        assert page.locator(".race .chart-race .scatterlayer .trace").count() >= 3 * 2  # lines drawn, not empty
        captions = page.eval_on_selector_all(".race-table caption", "cs => cs.map(c => c.textContent.trim())")
        assert captions[0].startswith("batch 1 · latency: winner: tflite_cpu int8")
        assert any("tie: tflite_cpu fp32 ≈ tflite_cpu int8" in caption for caption in captions)
        assert "batch 8 · latency: not raced: race: false in the scenario; its speed-ups are sequential." in \
            page.inner_text("section.races")


def test_a_pair_the_race_did_not_record_is_paired_over_the_rounds_both_raced(raced_run: Run) -> None:
    from reporting.baseline import race_pair_speedup, round_log_ratios

    race = raced_run.races[0]
    shared = round_log_ratios(race, "tflite_cpu int8", "onnxruntime_cpu fp32")
    assert [index for index, _ in shared] == list(range(10))  # onnxruntime's fp32 left after ten rounds
    gain = race_pair_speedup(race, "tflite_cpu int8", "onnxruntime_cpu fp32")
    assert gain.source == RACE and gain.value == pytest.approx(1.46 / 0.62, rel=0.03)
    assert gain.low < gain.value < gain.high and gain.verdict == "faster"
    assert speedup_text(gain, reference="fp32").startswith(f"{gain.value:.2f}× [")
    assert race_pair_speedup(race, "tflite_cpu int8", "onnxruntime_cpu int8") is None  # excluded: never raced
