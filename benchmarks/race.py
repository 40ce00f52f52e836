"""The race against known truth: one group of four configurations whose true order is known, run N times as
`accelbench run` runs a scenario (each case on its own, then the group's race), and what each method made of it.

The group: mobilenet_v2 at 96x96, batch 1, latency, one thread, all four through tests/fault_backend.py's
slowed_tflite (the real LiteRT adapter with a busy-wait of ``slowdown`` × each inference's own time):

    A   slowdown 0                      the baseline (listed first: the group's first fp32 case)
    A2  slowdown 0, another label       the same file and settings: A and A2 are one configuration
    B   slowdown 0.05                   A slowed by exactly 5 %, whatever the machine's speed
    C   slowdown 0, xnnpack: false      LiteRT's builtin kernels: far slower

Each run is one run folder (its own env.json, results.jsonl, race.jsonl, logs), under one parent folder that
also holds the scenario file used (scenario.yaml): the four cases measured one after another in fresh workers
(harness.engine.Engine, as `accelbench run` does), then the group raced (harness.race.race_run) at the scenario's
default race settings. Reported per run: the race's outcome, who left and when, B's paired ratio against A, the
race's time, and the four cases' own p50s. Then, over the runs, the issue's targets:

    A and A2 never set apart (neither eliminated nor excluded)      goal: every run
    B called slower than A (eliminated, or "slower" against A)      goal: >= 95 %
    the named winner A or A2, or a tie of A and A2 only             goal: >= 99 %
    C out at the first look (the minimum rounds) or up front        goal: every run
    the race's time per group, median and maximum                   cap: race.max_seconds (45 s)

and beside them today's sequential method on the same runs (each case's own p50): how often the p50s name B or C
fastest, and how often A2 reads >= 5 % faster than A, or A >= 5 % faster than A2.

    python benchmarks/race.py [--runs 30] [--resume reports/race-bench-...] [--from-results reports/race-bench-...]

--resume PARENT goes on until PARENT holds --runs finished runs (an interrupted run is resumed in its own folder:
its missing cases, then its race); --from-results PARENT only analyses.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.fault_backend import REGISTRATION

os.environ["ACCELBENCH_BACKENDS"] = REGISTRATION  # workers inherit it

import yaml

from harness.engine import Engine
from harness.race import race_run
from results.race_record import RaceEntry, RaceRecord
from results.record import Record, RecordError
from results.store import new_run_dir, read_race_records, read_records
from scenario.load import ScenarioError, expand, load_scenario

SCENARIO_NAME = "race-bench"
LABELS = ("A", "A2", "B", "C")
SEQUENTIAL_GAP = 0.05  # "A2 >= 5 % faster than A": the race's threshold, read off two sequential p50s


def scenario_dict(args: argparse.Namespace) -> dict:
    """One model, four backends (A, A2, B, C): one (model, batch size, mode) group, baseline A."""
    size = args.size
    base = {"name": "slowed_tflite", "threads": args.threads}
    return {
        "name": SCENARIO_NAME,
        "description": "the race against known truth (benchmarks/race.py): A, an identical A2, B = A + 5 %, "
                       "C = XNNPACK off",
        "models": [{"name": args.model, **({"input_shape": [size, size, 3]} if size else {})}],
        "backends": [{**base, "label": "A", "slowdown": 0.0},
                     {**base, "label": "A2", "slowdown": 0.0},
                     {**base, "label": "B", "slowdown": args.slowdown},
                     {**base, "label": "C", "slowdown": 0.0, "xnnpack": False}],
        "precisions": ["fp32"],
        "batch_sizes": [1],
        "mode": "latency",
    }


@dataclass
class RunResult:
    """One run's race record and its four cases' records, by label."""

    folder: Path
    race: RaceRecord
    records: dict[str, Record]

    def entry(self, label: str) -> RaceEntry | None:
        return next((e for e in self.race.entries if e.backend_label == label), None)

    def status(self, label: str) -> str:
        entry = self.entry(label)
        return entry.status if entry is not None else "missing"

    @property
    def aa_set_apart(self) -> bool:
        return any(self.status(label) in ("eliminated", "excluded") for label in ("A", "A2"))

    @property
    def b_called_slower(self) -> bool:
        entry = self.entry("B")
        if entry is None:
            return False
        paired = entry.vs_baseline
        against_a = paired is not None and paired.against == self.race.baseline and self.race.baseline == name(
            self.entry("A"))
        return entry.status in ("eliminated", "excluded") or (against_a and paired.verdict == "slower")

    @property
    def winner_right(self) -> bool:
        right = {name(self.entry("A")), name(self.entry("A2"))}
        if self.race.outcome == "winner":
            return self.race.winner in right
        return self.race.outcome == "tie" and bool(self.race.tied) and set(self.race.tied) <= right

    @property
    def c_out_early(self) -> bool:
        entry = self.entry("C")
        if entry is None:
            return False
        return entry.status == "excluded" or (entry.status == "eliminated"
                                              and entry.eliminated_after == self.race.min_rounds)

    def p50(self, label: str) -> float | None:
        record = self.records.get(label)
        return record.p50_ms if record is not None and record.status == "passed" else None

    @property
    def sequential_fastest(self) -> str | None:
        measured = {label: self.p50(label) for label in LABELS if self.p50(label)}
        return min(measured, key=lambda label: measured[label]) if measured else None

    def sequential_gap(self, faster: str, slower: str) -> bool:
        """``faster``'s own p50 at least SEQUENTIAL_GAP below ``slower``'s: a 5 % speed-up by the old reading."""
        fast, slow = self.p50(faster), self.p50(slower)
        return bool(fast and slow and slow / fast >= 1 + SEQUENTIAL_GAP)


def name(entry: RaceEntry | None) -> str | None:
    return entry.name if entry is not None else None


def load_result(folder: Path) -> RunResult | None:
    """A finished run (its race recorded), or None where the race has not happened yet."""
    races = read_race_records(folder / "race.jsonl") if (folder / "race.jsonl").exists() else []
    if not races:
        return None
    records = {r.label: r for r in read_records(folder / "results.jsonl")}
    return RunResult(folder, races[-1], records)


def run_folders(parent: Path) -> list[Path]:
    return sorted(p for p in parent.glob("run-*") if p.is_dir())


def measure_run(folder: Path, scenario_file: Path, verbose: bool) -> RunResult:
    """The scenario's cases one after another, then the group's race: `accelbench run`'s order, in ``folder``
    (resumed where an earlier attempt left it)."""
    cases = expand(load_scenario(scenario_file))
    resume = (folder / "env.json").exists()
    engine = Engine(folder, {"scenarios": [SCENARIO_NAME], "front_door": "benchmark", "benchmark": "race"},
                    resume=resume)
    try:
        recorded = engine.recorded_case_ids()
        todo = [case for case in cases if case.case_id not in recorded]
        engine.prepare_artifacts(todo)
        for case in todo:
            engine.run_case(case)  # one that fails is recorded so; the race races the others
        progress = (lambda text: print(f"    {text}", flush=True)) if verbose else None
        race_run(engine, cases, progress=progress)
        engine.finish()
    finally:
        engine.close()
    result = load_result(folder)
    if result is None:
        raise SystemExit(f"{folder}: no race was recorded (fewer than two cases passed?): see its results.jsonl")
    return result


def run_line(index: int, total: int, result: RunResult) -> str:
    race = result.race
    if race.outcome == "winner":
        said = f"winner {race.winner}"
    elif race.outcome == "tie":
        said = f"tie {', '.join(race.tied)}"
    else:
        said = f"{race.outcome or race.status}" + (f" among {', '.join(race.tied)}" if race.tied else "")
    gone = []
    for label in LABELS:
        entry = result.entry(label)
        if entry is None or entry.status == "survived":
            continue
        when = {"eliminated": f"after {entry.eliminated_after} rounds", "excluded": "up front"}.get(
            entry.status, f"not raced ({entry.reason})")
        gone.append(f"{label} {entry.status if entry.status != 'not raced' else ''} {when}".replace("  ", " "))
    b = result.entry("B")
    paired = b.vs_baseline if b is not None else None
    b_text = (f"B/A {paired.ratio:.3f} [{paired.ci_low:.3f}, {paired.ci_high:.3f}] {paired.verdict}"
              if paired is not None else "B/A -")
    p50s = " ".join(f"{label} {result.p50(label):.3f}" if result.p50(label) else f"{label} -" for label in LABELS)
    return (f"run {index}/{total}: {said}; out: {', '.join(gone) or 'none'}; {b_text}; {len(race.rounds)} rounds "
            f"(min {race.min_rounds}), {race.wall_s:.1f} s | sequential p50 ms {p50s} "
            f"(fastest {result.sequential_fastest})")


def share(count: int, total: int) -> str:
    return f"{count} of {total} ({count / total:.0%})" if total else "0 of 0"


def summarise(results: list[RunResult], parent: Path) -> None:
    total = len(results)
    if not total:
        raise SystemExit(f"{parent}: no finished run to analyse")
    walls = [r.race.wall_s for r in results]
    outcomes = [r.race.outcome or r.race.status for r in results]
    b_ratios = [e.vs_baseline.ratio for r in results if (e := r.entry("B")) and e.vs_baseline]
    a2_ratios = [e.vs_baseline.ratio for r in results if (e := r.entry("A2")) and e.vs_baseline]
    seq = {label: [r.p50(label) / r.p50("A") for r in results if r.p50(label) and r.p50("A")]
           for label in ("A2", "B", "C")}
    summary = {
        "runs": total,
        "results": str(parent),
        "outcomes": {o: outcomes.count(o) for o in dict.fromkeys(outcomes)},
        "race": {
            "a_a2_set_apart": sum(r.aa_set_apart for r in results),
            "b_called_slower": sum(r.b_called_slower for r in results),
            "winner_a_or_a2_or_their_tie": sum(r.winner_right for r in results),
            "c_out_at_min_rounds_or_up_front": sum(r.c_out_early for r in results),
            "c_excluded_up_front": sum(r.status("C") == "excluded" for r in results),
            "b_eliminated": sum(r.status("B") == "eliminated" for r in results),
            "b_excluded_up_front": sum(r.status("B") == "excluded" for r in results),
            "b_eliminated_after_rounds": sorted(e.eliminated_after for r in results
                                                if (e := r.entry("B")) and e.eliminated_after is not None),
            "b_ratio_vs_a_median": statistics.median(b_ratios) if b_ratios else None,
            "a2_ratio_vs_a_median": statistics.median(a2_ratios) if a2_ratios else None,
            "a2_ratio_vs_a_range": [min(a2_ratios), max(a2_ratios)] if a2_ratios else None,
            "rounds_median": statistics.median(len(r.race.rounds) for r in results),
            "wall_s_median": statistics.median(walls),
            "wall_s_max": max(walls),
            "max_seconds": results[0].race.settings.get("max_seconds"),
        },
        "sequential": {
            "b_or_c_fastest": sum(r.sequential_fastest in ("B", "C") for r in results),
            "fastest": {label: sum(r.sequential_fastest == label for r in results) for label in LABELS},
            "a2_5pct_faster_than_a": sum(r.sequential_gap("A2", "A") for r in results),
            "a_5pct_faster_than_a2": sum(r.sequential_gap("A", "A2") for r in results),
            "ratio_vs_a_median": {label: statistics.median(v) if v else None for label, v in seq.items()},
            "a2_ratio_vs_a_range": [min(seq["A2"]), max(seq["A2"])] if seq["A2"] else None,
        },
    }
    loads = _loads(parent)
    if loads:
        summary["loadavg_1min_before_runs"] = {"median": statistics.median(loads), "max": max(loads)}
    print(json.dumps(summary, indent=2))
    race, sequential = summary["race"], summary["sequential"]
    print(f"race ({total} runs): A and A2 set apart {share(race['a_a2_set_apart'], total)} (goal: none); "
          f"B called slower than A {share(race['b_called_slower'], total)} (goal >= 95 %); winner A or A2 or their "
          f"tie {share(race['winner_a_or_a2_or_their_tie'], total)} (goal >= 99 %); C out at the minimum rounds or "
          f"up front {share(race['c_out_at_min_rounds_or_up_front'], total)} (up front "
          f"{race['c_excluded_up_front']}; goal: all); race time per group median {race['wall_s_median']:.1f} s, "
          f"max {race['wall_s_max']:.1f} s (cap {race['max_seconds']:g} s)")
    print(f"sequential p50s, same runs: B or C fastest {share(sequential['b_or_c_fastest'], total)}; A2 >= 5 % "
          f"faster than A {share(sequential['a2_5pct_faster_than_a'], total)}; A >= 5 % faster than A2 "
          f"{share(sequential['a_5pct_faster_than_a2'], total)}")


def _loads(parent: Path) -> list[float]:
    """The 1-minute load average before each run (context: a busy machine moves both methods' figures)."""
    try:
        return [float(json.loads(line)["loadavg"][0]) for line in (parent / "load.jsonl").read_text().splitlines()]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--size", type=int, default=96, help="input height and width (0: the zoo's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--slowdown", type=float, default=0.05, help="B's injected slowdown")
    parser.add_argument("--resume", metavar="PARENT", help="add runs to this folder until it holds --runs")
    parser.add_argument("--from-results", metavar="PARENT", help="analyse finished runs, measure nothing")
    parser.add_argument("--verbose", action="store_true", help="print the race's looks as they happen")
    args = parser.parse_args()
    try:
        if args.from_results:
            parent = Path(args.from_results)
            results = [r for folder in run_folders(parent) if (r := load_result(folder)) is not None]
            for index, result in enumerate(results, 1):
                print(run_line(index, len(results), result), flush=True)
            summarise(results, parent)
            return
        parent = Path(args.resume) if args.resume else new_run_dir(Path("reports"), SCENARIO_NAME)
        scenario_file = parent / "scenario.yaml"
        if not args.resume:
            parent.mkdir(parents=True)
            scenario_file.write_text(yaml.safe_dump(scenario_dict(args), sort_keys=False))
        elif not scenario_file.is_file():
            parser.error(f"{parent}: no scenario.yaml: not a folder of this benchmark")
        print(f"results: {parent} (one run folder per run; scenario {scenario_file})", flush=True)
        results = []
        for index in range(1, args.runs + 1):
            folder = parent / f"run-{index:03d}"
            result = load_result(folder) if folder.exists() else None
            if result is None:
                with open(parent / "load.jsonl", "a") as handle:  # the machine's load before each run: context
                    handle.write(json.dumps({"run": folder.name, "loadavg": os.getloadavg()}) + "\n")
                result = measure_run(folder, scenario_file, args.verbose)
            results.append(result)
            print(run_line(index, args.runs, result), flush=True)
        summarise(results, parent)
    except (ScenarioError, RecordError, ValueError, OSError) as error:
        print(f"race: {' '.join(str(error).split())}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
