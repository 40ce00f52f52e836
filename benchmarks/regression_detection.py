"""Regression detection, simulated with real measurements: false alarms in A/A pairs, detection of an injected
slowdown in A/B pairs, both through `tracking.compare` as `accelbench compare` uses it.

Each round runs the same case five times in fresh workers, back to back: A1 (the base), A2 and B (the new
runs), then A3 and B2 (their confirmations, as the nightly workflow re-runs what got slower). B carries a
busy-wait (tests/fault_backend.py's slowed_tflite) of `--slowdown` (5 %) of each inference's own time, so the
injected slowdown is exactly that share whatever the machine's speed; A runs the same code with 0. Each pair is
compared as two runs would be. Reported: the share of A/A pairs called "slower" (goal <= 1 %) and of A/B pairs
called "slower" (goal >= 95 %), for one comparison and for a confirmed one (the new run and its confirmation both
called slower against the base).

    python benchmarks/regression_detection.py [--pairs 100] [--model mobilenet_v2 --size 96] [--threads 1]

A/B mode (`--ab lockstep` or `--ab duet`) goes through `accelbench ab`'s own path (harness.ab.AbRun): each pair is
one A/A comparison (both sides slowdown 0) and one A/B comparison (new side slowdown 5 %), one after the other in
the same sitting, each a whole comparison of the case (fresh worker pairs, rounds until the interval is narrow
enough or --max-seconds is up). Reported: A/A called slower (goal <= 1 %) and "cannot tell" among A/A, A/B called
slower (goal >= 95 %; "cannot tell" is a miss), the median time to a verdict, the power at 2 % (each A/A
comparison's measured rounds shifted by 2 % and judged again: the share called slower, and the share the test
alone finds; at 5 % as a check against the A/B comparisons), and the CPU-speed probe's slowest/fastest window.
Resumable: --resume RUN_DIR adds comparisons to an earlier folder until it holds --pairs of each; --from-results
RUN_DIR only analyses.

    python benchmarks/regression_detection.py --ab lockstep --pairs 100 [--resume reports/regression-ab-...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.fault_backend import REGISTRATION

os.environ["ACCELBENCH_BACKENDS"] = REGISTRATION  # workers inherit it

import math

from _common import make_engine, run_passed
from scipy import stats

from harness.ab import AbRun, AbSettings
from results.ab_record import AbRecord
from results.paired import ab_verdict, paired_estimate
from results.record import Record, RecordError
from results.runs import RunFolderError, load_run
from results.store import new_run_dir, read_ab_records
from scenario.cases import Case, ModelSpec
from scenario.load import MeasureSpec
from scenario.sides import Side
from sysinfo.stability import cpu_speed_probe
from tracking.compare import compare_runs, run_to_run_sigma


def make_case(args: argparse.Namespace, slowdown: float) -> Case:
    shape = (args.size, args.size, 3) if args.size else None
    return Case(case_id=f"{args.model}-fp32-b1-tflite", scenario="regression-detection",
                model=ModelSpec(zoo=args.model, input_shape=shape), model_label=args.model,
                backend="slowed_tflite", backend_label="tflite", backend_options={"threads": args.threads,
                                                                                 "slowdown": slowdown},
                precision="fp32", batch_size=1, mode="latency",
                measure=MeasureSpec(warmup_runs=10, warmup_seconds=args.warmup, min_runs=50,
                                    min_seconds=args.seconds, max_seconds=60, timeout_s=300).model_dump())


def verdict(base: Record, new: Record, env: dict, threshold: float, sigma: float | None) -> tuple[str, float]:
    same = new.model_copy(update={"backend_options": base.backend_options})  # B is "the same case", slowed
    result = compare_runs({"c": base}, {"c": same}, env, env, threshold=threshold, noise={"c": sigma},
                          blocks_only=sigma is None)[0]  # "run" mode: the blocks alone, as compare used to judge
    return result.verdict, result.timing.ratio if result.timing else float("nan")


def analyse(records: list[Record], env: dict, threshold: float) -> dict:
    """Verdicts of every round's pairs (records come in rounds of five: A1, A2, B, A3, B2)."""
    rounds = [records[i:i + 5] for i in range(0, len(records) - len(records) % 5, 5)]
    verdicts: dict[str, dict[str, list[str]]] = {mode: {"A/A": [], "A/B": [], "A/A confirmed": [],
                                                         "A/B confirmed": []} for mode in ("run", "noise floor")}
    ratios: dict[str, list[float]] = {"A/A": [], "A/B": []}
    earlier: list[float] = []  # the A1 medians of the rounds before: this simulation's history
    for a1, a2, b, a3, b2 in rounds:
        sigma = run_to_run_sigma(earlier)
        for mode, noise in (("run", None), ("noise floor", sigma)):
            if mode == "noise floor" and sigma is None:
                continue
            for name, new, confirm in (("A/A", a2, a3), ("A/B", b, b2)):
                first, ratio = verdict(a1, new, env, threshold, noise)
                second, _ = verdict(a1, confirm, env, threshold, noise)
                verdicts[mode][name].append(first)
                verdicts[mode][f"{name} confirmed"].append("slower" if first == second == "slower" else "no")
                if mode == "run":
                    ratios[name].append(ratio)
        earlier.append(a1.p50_ms)
    rates = {mode: {name: found.count("slower") / len(found) for name, found in by_name.items() if found}
             for mode, by_name in verdicts.items()}
    return {"rounds": len(rounds), "slower_rates": rates,
            "pairs_with_noise_floor": len(verdicts["noise floor"]["A/A"]),
            "noise_floor_sigma_at_end": run_to_run_sigma(earlier),
            "aa_ratio_sd": statistics.stdev(ratios["A/A"]) if len(ratios["A/A"]) > 1 else None,
            "ab_ratio_median": statistics.median(ratios["A/B"]) if ratios["A/B"] else None}


def replayed(records: list[AbRecord], change: float) -> dict[str, float] | None:
    """What the A/A comparisons would have said of a true ``change``: each one's measured rounds (the machine's
    real noise, heavy tails and all) shifted by log(1 + change), judged by the same estimate and verdict as
    `accelbench ab`. "verdict" is the share called slower (the test and the at-least-half-the-threshold rule
    together: the power a user gets), "test" the share where the test alone finds it (p < alpha, interval above
    1). A normal-theory power would ignore both the size rule and the tails."""
    verdicts, tests = [], []
    for record in records:
        if len(record.rounds) < 2:
            continue
        estimate = paired_estimate([x.log_ratio + math.log1p(change) for x in record.rounds], alpha=record.alpha)
        verdicts.append(ab_verdict(estimate, record.threshold, record.min_effect, record.alpha)[0] == "slower")
        tests.append(estimate.p_value < record.alpha and estimate.ci_low > 1)
    return {"verdict": statistics.mean(verdicts), "test": statistics.mean(tests)} if verdicts else None


def _median(values: Iterable[float]) -> float | None:
    """The median, or None where nothing qualified (every comparison broken, or too short for the statistic)."""
    found = list(values)
    return statistics.median(found) if found else None


def injected(record: AbRecord) -> float:
    return float(record.new.spec["options"].get("slowdown", 0.0))


def analyse_ab(records: list[AbRecord]) -> dict:
    """Verdict shares of the A/A and A/B comparisons, their time to a verdict, and the power at 2 %."""
    summary: dict[str, dict] = {}
    for name, wanted in (("A/A", lambda r: injected(r) == 0), ("A/B", lambda r: injected(r) > 0)):
        chosen = [r for r in records if wanted(r)]
        if not chosen:
            continue
        verdicts = [r.verdict or r.status for r in chosen]
        summary[name] = {
            "comparisons": len(chosen),
            "injected": sorted({injected(r) for r in chosen}),
            "shares": {v: verdicts.count(v) / len(verdicts) for v in dict.fromkeys(verdicts)},
            "median_ratio": _median(r.ratio for r in chosen if r.ratio is not None),
            "median_wall_s": _median(r.wall_s for r in chosen),
            "max_wall_s": max(r.wall_s for r in chosen),
            "median_rounds": statistics.median(len(r.rounds) for r in chosen),
            # recomputed from the rounds: records written before the exact-test MDE carry the normal limit's
            "median_mde": _median(paired_estimate([x.log_ratio for x in r.rounds], alpha=r.alpha).mde
                                  for r in chosen if len(r.rounds) >= 2),
            "over_time_cap": sum(r.wall_s > r.settings.get("max_seconds", math.inf) for r in chosen),
            # from the A/A rounds only: a shift of the A/B rounds would add to the 5 % already in them
            **({"power_at_2pct": replayed(chosen, 0.02), "power_at_5pct": replayed(chosen, 0.05)}
               if name == "A/A" else {}),
            "normality_shapiro_p_median": _median(
                stats.shapiro([x.log_ratio for x in r.rounds]).pvalue for r in chosen if len(r.rounds) >= 3),
        }
    return summary


def run_ab(args: argparse.Namespace) -> None:
    """A/A and A/B comparisons through accelbench ab's path, alternating, resumable."""
    settings = AbSettings(method=args.ab, threshold=args.threshold, max_seconds=args.max_seconds)
    sides = {kind: {"base": Side("base", options={"slowdown": 0.0}),
                    "new": Side("new", options={"slowdown": share})}
             for kind, share in (("A/A", 0.0), ("A/B", args.slowdown))}
    folder = Path(args.resume) if args.resume else new_run_dir(Path("reports"), f"regression-ab-{args.ab}")
    run = AbRun(folder, {"scenarios": ["regression-detection"], "front_door": "benchmark"}, sides["A/B"], settings,
                resume=bool(args.resume))
    done = run.store.ab_records()
    case = make_case(args, 0.0)
    run.prepare([case])
    probe_path = run.run_dir / "cpu_probe.jsonl"
    counts = {kind: sum((injected(r) > 0) == (kind == "A/B") for r in done) for kind in sides}
    while min(counts.values()) < args.pairs:
        for kind in sides:
            if counts[kind] >= args.pairs:
                continue
            record = run.compare(case, sides=sides[kind])
            counts[kind] += 1
            print(f"{kind} {counts[kind]}/{args.pairs}: {record.verdict or record.status} ratio "
                  f"{record.ratio if record.ratio is not None else float('nan'):.4f} rounds {len(record.rounds)} "
                  f"{record.wall_s:.0f} s", flush=True)
        windows = cpu_speed_probe(seconds=0.5)["window_medians_us"]
        with open(probe_path, "a") as handle:
            handle.write(json.dumps(windows) + "\n")
    report_ab(run.run_dir)


def _probe_medians(path: Path) -> list[float]:
    """Each CPU-speed probe's median window; the probe is context, so a damaged file only leaves it out."""
    try:
        if not path.is_file():  # a FIFO would block the read forever
            return []
        return [statistics.median(json.loads(line)) for line in path.read_text().splitlines()]
    except (OSError, ValueError, TypeError, statistics.StatisticsError):
        return []


class NothingToJudge(Exception):
    """A finished folder whose comparisons gave no verdict to count: one line, and a non-zero exit."""


def report_ab(folder: Path) -> None:
    records = read_ab_records(folder / "ab.jsonl")
    judged = [r for r in records if r.status == "compared" and r.verdict not in (None, "broken")]
    if not judged:
        kinds = ", ".join(f"{n} {kind}" for kind, n in Counter(r.verdict or r.status for r in records).items())
        raise NothingToJudge(f"{folder / 'ab.jsonl'}: nothing to judge: no comparison ended in a verdict "
                             f"({kinds or 'no comparison at all'})")
    probe_path = folder / "cpu_probe.jsonl"
    medians = _probe_medians(probe_path)
    first = records[0] if records else None
    summary = {"method": first and first.method, "threshold": first and first.threshold, **analyse_ab(records),
               "cpu_probe_slowest_over_fastest": max(medians) / min(medians) if medians else None,
               "results": str(folder)}
    print(json.dumps(summary, indent=2))
    aa, ab = summary.get("A/A", {}).get("shares", {}), summary.get("A/B", {}).get("shares", {})
    print(f"A/A called slower {aa.get('slower', 0):.1%} (goal <= 1 %), cannot tell {aa.get('cannot tell', 0):.1%}; "
          f"A/B called slower {ab.get('slower', 0):.1%} (goal >= 95 %), cannot tell {ab.get('cannot tell', 0):.1%}")
    at_2 = summary.get("A/A", {}).get("power_at_2pct")
    if at_2:
        print(f"a true 2 % change: called slower {at_2['verdict']:.1%} (the threshold's half, 2.5 %, is what counts), "
              f"found by the test alone {at_2['test']:.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--size", type=int, default=96, help="input height and width (0: the zoo's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=1.0, help="steady-state seconds per run")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--slowdown", type=float, default=0.05)
    parser.add_argument("--threshold", type=float, default=0.05)
    parser.add_argument("--from-results", metavar="RUN_DIR", help="analyse a finished simulation, measure nothing")
    parser.add_argument("--ab", choices=("lockstep", "duet"), help="A/B comparisons in one sitting (accelbench ab)")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="A/B: time per comparison")
    parser.add_argument("--resume", metavar="RUN_DIR", help="A/B: add comparisons to this folder")
    args = parser.parse_args()
    try:
        run(args, parser)
    except NothingToJudge as error:
        print(f"regression_detection: {error}", file=sys.stderr)
        sys.exit(1)
    except (RunFolderError, RecordError, OSError) as error:  # a folder that is not a finished run of this benchmark
        print(f"regression_detection: {' '.join(str(error).split())}", file=sys.stderr)
        sys.exit(2)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Measure (or, --from-results, only analyse) and report; NothingToJudge where no verdict can be counted."""
    if args.from_results:  # analyse only, whatever else was given: never starts a measurement
        folder = Path(args.from_results)
        if (folder / "ab.jsonl").exists():
            report_ab(folder)
            return
        if args.ab or not (folder / "results.jsonl").exists():
            parser.error(f"{folder}: no ab.jsonl (an A/B run's){'' if args.ab else ' nor results.jsonl'}: "
                         f"not a finished run of this benchmark")
    if args.ab:
        run_ab(args)
        return
    if args.from_results:
        finished = load_run(folder)  # every record and env.json checked: one line naming the file and field
        records, env = finished.records, finished.env
        probes: list[float] = []
    else:
        engine = make_engine("regression-detection")
        env, probes, folder = engine.env, [], engine.run_dir
        for index in range(args.pairs):
            for share in (0, 0, args.slowdown, 0, args.slowdown):  # A1, A2, B, A3 (confirms A2), B2 (confirms B)
                run_passed(engine, make_case(args, share))
            probes.append(statistics.median(cpu_speed_probe(seconds=0.25)["window_medians_us"]))
            print(f"[{index + 1}/{args.pairs}]", flush=True)
        records = engine.store.records()
    if len(records) < 5:
        raise NothingToJudge(f"{folder}: nothing to judge: {len(records)} record(s), fewer than one round of five "
                             "(A1, A2, B, A3, B2)")
    first, slowed = records[0], records[2]
    summary = {"case": first.case_id, "threads": (first.backend_options or {}).get("threads"),
               "steady_seconds": (first.measure or {}).get("min_seconds"), "threshold": args.threshold,
               "injected_slowdown": (slowed.backend_options or {}).get("slowdown"),
               **analyse(records, env, args.threshold),
               "cpu_probe_slowest_over_fastest": max(probes) / min(probes) if probes else None,
               "results": str(folder)}
    print(json.dumps(summary, indent=2))
    for mode, rates in summary["slower_rates"].items():
        for suffix in ("", " confirmed"):
            print(f"{mode}{suffix}: A/A called slower {rates['A/A' + suffix]:.1%} (goal <= 1 %), A/B called slower "
                  f"{rates['A/B' + suffix]:.1%} (goal >= 95 %)")


if __name__ == "__main__":
    main()
