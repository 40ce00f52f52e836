"""``accelbench``: run scenarios, check backends, list the zoo, check the harness's own overhead."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.console import make_console, progress_sink

EXIT_OK, EXIT_CASES_FAILED, EXIT_USAGE = 0, 1, 2
T = TypeVar("T")
HISTORY_HELP = "history folder (default: $ACCELBENCH_HISTORY, else ./history)"
AB_HELP = """Compare every case of a scenario on two sides in one sitting: fresh worker pairs per round, alternating
slices of inferences, the ratio new/base with a 95 % interval from the spread between rounds, a paired test, the
minimum detectable effect, and a verdict: slower / faster / unchanged / cannot tell.

A side is key=value settings joined by commas:
  python=PATH    the interpreter of the side's workers (another virtualenv: a library upgrade)
  model=PATH     a model file in place of the case's (model_v1.onnx -> model_v2.onnx)
  artifacts=PATH the model files a run ran, frozen by `accelbench freeze` (its artifacts.json, by case id)
  KEY=VALUE      a backend option (threads=2, xnnpack=false, graph_optimization=basic)

  accelbench ab scenarios/smoke.yaml --base python=/opt/ort131/bin/python --new python=/opt/ort132/bin/python
  accelbench ab my.yaml --new model=model_v2.onnx --fail-on-regression
  accelbench ab --resume reports/my-ab-20261206-101500   (an interrupted comparison: the cases it has no record of)
"""


def _err(console: Console, message: str) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def _resume_plan(args: argparse.Namespace, ab: bool = False) -> tuple[str, str | None, dict[str, Any]]:
    """Scenario file and -k of the run to resume, from its scenario.json unless given again; the file must be
    the one the run started with, or the two halves would measure different cases. ``ab``: an A/B folder is
    resumed (by `ab --resume`), else a run's: a folder of the other kind is refused here, before anything loads."""
    from results.store import RunFolderProblem, RunStore, read_small_json

    folder = Path(args.resume)
    info_path = folder / "scenario.json"
    if not folder.is_dir():
        raise ResumeError(f"{folder}: no such run folder to resume")
    try:
        info = read_small_json(info_path)
        if info is None:
            raise ResumeError(f"{info_path}: missing, so {folder} cannot be resumed (is it an accelbench run folder?)")
        if not isinstance(info, dict):
            raise ResumeError(f"{info_path}: cannot resume from it (not a JSON object)")
        RunStore(folder).refuse_other_kind(ab)
    except RunFolderProblem as error:
        raise ResumeError(str(error)) from None
    scenario = args.scenario or info.get("file")
    if not scenario or not isinstance(scenario, str):
        command = "ab" if ab else "run"
        raise ResumeError(f"{info_path} names no scenario file (a pytest run?): give it, accelbench {command} FILE "
                          "--resume")
    started_with = info.get("file_sha256")
    try:
        changed = bool(started_with) and Path(scenario).is_file() and file_sha256(Path(scenario)) != started_with
    except OSError as error:
        raise ResumeError(f"{scenario}: cannot be read ({error.strerror or error})") from None
    if changed:
        raise ResumeError(f"{scenario} changed since the run in {args.resume} started: start a new run")
    return scenario, args.k if args.k is not None else info.get("selection"), info


def _run_or_resume_problem(args: argparse.Namespace) -> str | None:
    """`run` and `ab` take a scenario to start, or --resume RUN_DIR to go on (which writes into RUN_DIR)."""
    if args.scenario is None and args.resume is None:
        return "give a scenario file (or --resume RUN_DIR)"
    if args.resume and args.out:
        return "--resume RUN_DIR writes into RUN_DIR: drop --out"
    return None


class ResumeError(Exception):
    pass


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _resumed_comparison(folder: Path, info: dict[str, Any], given: dict[str, Any],
                        overrides: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """The sides and settings an A/B folder was compared with (its scenario.json), so that the comparisons of a
    resumed folder are one comparison. Sides or settings given again must be the folder's: ResumeError if not."""
    from dataclasses import asdict

    from harness.ab import AbSettings
    from scenario.sides import SideError, side_from_mapping

    info_path = folder / "scenario.json"
    stored = info.get("ab")
    sides_stored = stored.get("sides") if isinstance(stored, dict) else None
    settings_stored = stored.get("settings") if isinstance(stored, dict) else None
    if not isinstance(sides_stored, dict) or not isinstance(settings_stored, dict):
        raise ResumeError(f"{info_path}: ab: no sides and settings to resume the comparison with")
    sides = {}
    for name in ("base", "new"):
        spec = sides_stored.get(name)
        if not isinstance(spec, dict):
            raise ResumeError(f"{info_path}: ab.sides.{name}: not a side (a JSON object)")
        try:
            sides[name] = side_from_mapping(name, {k: v for k, v in spec.items() if v is not None}, folder)
        except SideError as error:
            raise ResumeError(f"{info_path}: ab.sides.{name}: {error.detail}") from None
        if given.get(name) is not None and given[name].spec() != sides[name].spec():
            raise ResumeError(f"--{name} {given[name].describe()} is not the {name} side {folder} was compared with "
                              f"({sides[name].describe()}): give it as it was, or leave it out")
    try:
        settings = AbSettings(**settings_stored)
    except (TypeError, ValueError) as error:
        raise ResumeError(f"{info_path}: ab.settings: {error}") from None
    kept = asdict(settings)
    for name, value in overrides.items():
        if value is not None and value != kept.get(name):
            option = "--" + name.replace("_", "-")
            raise ResumeError(f"{option} {value} is not the {name} {folder} was compared with ({kept.get(name)}): "
                              "give it as it was, or leave it out")
    return sides, settings


def _scenario_info(loaded: Any, front_door: str, selection: str | None, **extra: Any) -> dict[str, Any]:
    """What a run folder's scenario.json says of the scenario it ran (resume checks the file against it)."""
    return {"scenarios": [loaded.scenario.name], "front_door": front_door, "file": str(loaded.path.resolve()),
            "file_sha256": file_sha256(loaded.path), "selection": selection, **extra,
            "definition": loaded.scenario.model_dump(mode="json")}


def _open_run(open_folder: Callable[[], T], run_dir: Path, err: Console) -> T | None:
    """The engine or A/B run that ``open_folder`` makes, or None after one line saying why the folder cannot take
    the run (not empty, not writable, nearly full)."""
    from results.store import RunFolderProblem

    try:
        return open_folder()
    except RunFolderProblem as error:
        _err(err, str(error))
    except OSError as error:
        _err(err, f"cannot write results to {run_dir}: {error.strerror or error}")
    return None


def cmd_run(args: argparse.Namespace) -> int:
    from harness.budgets import judge_budgets
    from harness.engine import Engine
    from results.store import DiskFull, new_run_dir
    from scenario.expand import TooManyCases, profiled, too_many_cases
    from scenario.load import ScenarioError, expand, load_scenario
    from scenario.selection import SelectionError, run_selection
    from scenario.sharding import ShardError, parse_shard

    out, err = make_console(), make_console(stderr=True)
    if problem := _run_or_resume_problem(args):
        _err(err, problem)
        return EXIT_USAGE
    try:
        scenario_file, selection, started_with = (_resume_plan(args, ab=False) if args.resume else
                                                  (args.scenario, args.k, {}))
        args.history = args.history or started_with.get("history")  # a resumed run goes where the first part went
        shard_text = args.shard or started_with.get("shard")  # a resumed shard stays the same shard
        shard = parse_shard(shard_text) if shard_text else None
        if args.resume and args.shard and str(shard) != started_with.get("shard"):
            ran = f"shard {started_with['shard']}" if started_with.get("shard") else "the whole scenario"
            raise ResumeError(f"{args.resume} ran {ran}: resume it without --shard, or start a new run")
        loaded = load_scenario(scenario_file)
        # pytest's -k also matches the file's and its folder's names: keep both front doors selecting alike
        names = (loaded.scenario.name, loaded.path.name, loaded.path.resolve().parent.name)
        everything = expand(loaded)
        # the split comes from the whole scenario, so that every machine of a matrix computes the same one
        cases, needed = run_selection(everything, shard, selection, extra_names=names)
        if needed:  # a relative budget's partner runs and races beside it
            err.print(f"also running {', '.join(case.case_id for case in needed)}: the selected cases' budgets "
                      "compare with them", highlight=False, soft_wrap=True)
    except (ScenarioError, SelectionError, ResumeError, TooManyCases, ShardError) as error:
        _err(err, str(error))
        return EXIT_USAGE
    if args.profile:
        cases = profiled(cases)
    problem = None if args.yes else too_many_cases(cases, str(scenario_file), "--yes")
    if problem and not _confirmed(problem, err):
        _err(err, problem)
        return EXIT_USAGE
    if not cases and shard and not selection:  # more shards than models: this machine has nothing to do
        out.print(f"shard {shard} of {scenario_file} holds no model (the scenario has "
                  f"{len({case.model_label for case in everything})}): nothing to run", highlight=False,
                  soft_wrap=True)
        return EXIT_OK
    if not cases:  # only -k can empty it: a valid scenario has at least one model and one backend
        in_shard = f" in shard {shard}" if shard else ""
        _err(err, f"no case of {scenario_file}{in_shard} matches -k {selection!r}")
        return EXIT_USAGE
    if args.resume:
        run_dir = Path(args.resume)
    else:
        run_dir = Path(args.out) if args.out else new_run_dir(Path(args.reports_root), loaded.scenario.name)
    engine = _open_run(lambda: Engine(run_dir, _scenario_info(loaded, "cli", selection, history=args.history,
                                                              shard=str(shard) if shard else None),
                                      resume=bool(args.resume)), run_dir, err)
    if engine is None:
        return EXIT_USAGE
    scenario_cases = cases  # a resumed run races every group it has not raced, its earlier cases' too
    if args.resume:
        recorded = engine.recorded_case_ids()
        todo = [case for case in cases if case.case_id not in recorded]
        torn = f"; cut a partly written record ({engine.torn_bytes} bytes)" if engine.torn_bytes else ""
        err.print(f"resuming {escape(str(run_dir))}: {len(cases) - len(todo)} of {len(cases)} cases recorded, "
                  f"{len(todo)} to run{torn}", highlight=False, soft_wrap=True)
        cases = todo
    try:
        _run_cases(engine, cases, err)
        _run_races(engine, scenario_cases, err)
        verdicts = judge_budgets(engine, scenario_cases)
        records = engine.finish()
        from reporting.html import write_report_safely

        with err.status("writing the HTML report"):
            report, report_error = write_report_safely(engine.run_dir)
    except DiskFull as error:  # what is recorded stays, resume goes on
        _err(err, f"{error}: the cases recorded so far are kept (accelbench run --resume {engine.run_dir} runs "
                  "the rest)")
        return EXIT_USAGE
    from harness.console import print_summary

    print_summary(records, engine.run_dir, out, report, report_error, races=engine.store.race_records(),
                  budgets=verdicts)
    if args.history:
        from results.history import HistoryError, add_run

        try:
            identifier, _ = add_run(Path(args.history), engine.run_dir)
            out.print(f"history: {identifier} → {escape(args.history)}", highlight=False, soft_wrap=True)
        except HistoryError as error:
            _err(err, str(error))
            return EXIT_USAGE
    bad = any(r.status in ("failed", "invalid") for r in records) or any(v.fails for v in verdicts)
    return EXIT_CASES_FAILED if bad else EXIT_OK


def _confirmed(question: str, err: Console) -> bool:
    """Ask at a terminal; a script (no terminal on stdin) gets no for an answer and --yes as the way round."""
    if not sys.stdin.isatty():
        return False
    answer = err.input(f"{escape(question)}\nrun them all? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _run_cases(engine: Any, cases: list[Any], err: Console) -> None:
    with err.status("") as status:
        status.update("looking up model artefacts")
        engine.prepare_artifacts(cases, progress=progress_sink(err, status))
        for index, case in enumerate(cases, 1):
            status.update(f"\\[{index}/{len(cases)}] {escape(case.case_id)}")
            record = engine.run_case(case)
            colour = {"passed": "green", "skipped": "dim", "invalid": "yellow"}.get(record.status, "red")
            p50 = record.p50_ms
            err.print(f"\\[{index}/{len(cases)}] {escape(case.case_id)} [{colour}]{record.status}[/]"
                      + (f"  p50 {p50:.4g} ms" if p50 is not None else ""), highlight=False)


def _run_races(engine: Any, cases: list[Any], err: Console) -> None:
    """Race each group's passing configurations in one sitting (harness.race), saying what each race found and
    how long it took (print_summary adds the races' total beside the results)."""
    from harness.race import race_run

    with err.status("") as status:
        status.update("racing each group's configurations")
        races = race_run(engine, cases, progress=lambda text: status.update(escape(text)))
    for race in races:
        what = race.outcome if race.status == "raced" else race.status
        err.print(f"race {escape(race.model)} b{race.batch_size}: {what}"
                  + (f": {escape(race.recommended)}" if race.recommended else "")
                  + f" ({race.rounds_text()}, {race.wall_s:.1f} s)",
                  highlight=False, soft_wrap=True)


def cmd_report(args: argparse.Namespace) -> int:
    from reporting.html import write_report
    from results.runs import RunFolderError

    err = make_console(stderr=True)
    try:
        with err.status("writing the HTML report"):
            path = write_report(args.run_dirs, args.output)
    except RunFolderError as error:
        _err(err, str(error))
        return EXIT_USAGE
    except OSError as error:
        _err(err, f"cannot write the report: {error}")
        return EXIT_USAGE
    make_console().print(f"report: {escape(str(path))}", highlight=False, soft_wrap=True)
    return EXIT_OK


def parse_share(text: str) -> float:
    """ "5%", "5" and "0.05" all mean five percent, as in a scenario file (scenario.defaults.parse_share)."""
    from scenario.defaults import parse_share as share

    try:
        return share(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _compare_side(spec: str, history: Path, new: dict[str, Any] | None = None) -> tuple[dict, dict, str, dict]:
    """A run folder, or @latest / @RUN_ID of the history: (records by case id, env, its name, facts). @latest is
    the newest run of the history on the new run's machine that started before it; facts are the machine, start
    and history id that the base is then chosen against."""
    from results.history import history_run_facts, load_history_run, run_id
    from results.runs import load_run

    if spec.startswith("@"):
        machine, exclude, before, scenarios = ((new["machine_id"], new["run_id"], new["started"], new["scenarios"])
                                               if new else (None, None, None, None))
        records, env, identifier = load_history_run(history, spec[1:], machine, exclude, before, scenarios)
        return records, env, f"{identifier} (history)", history_run_facts(history, identifier)
    run = load_run(spec)
    facts = {"machine_id": run.machine_id, "started": run.started, "run_id": run_id(run),
             "scenarios": {r.scenario or "" for r in run.records}}
    return {r.case_id: r for r in run.records}, {**run.env, "machine_id": run.machine_id}, str(run.path), facts


def cmd_compare(args: argparse.Namespace) -> int:
    from results.history import HistoryError, case_medians, history_dir
    from results.runs import RunFolderError
    from tracking.compare import DEFAULT_ALPHA, compare_runs, run_to_run_sigma

    out, err = make_console(), make_console(stderr=True)
    history = history_dir(args.history)
    if problem := output_file_problem(args.regressions_out, "--regressions-out"):
        _err(err, problem)
        return EXIT_USAGE
    try:
        new, new_env, new_name, facts = _compare_side(args.new, history)
        try:
            base, base_env, base_name, base_facts = _compare_side(args.base, history, facts)
        except HistoryError as error:
            if args.base == "@latest":  # the first night of a history: nothing to compare with yet
                out.print(f"nothing to compare {escape(new_name)} with: {escape(str(error))}", highlight=False)
                if args.regressions_out and (problem := write_output_file(args.regressions_out, "--regressions-out",
                                                                           "")):
                    _err(err, problem)
                    return EXIT_USAGE
                return EXIT_OK
            raise
        if base_facts["run_id"] == facts["run_id"]:
            raise HistoryError(f"{args.base} and {args.new} are the same run ({facts['run_id']})")
    except (RunFolderError, HistoryError) as error:
        _err(err, str(error))
        return EXIT_USAGE
    noise = None
    if not args.no_noise_floor and history.is_dir():
        medians = case_medians(history, facts["machine_id"], facts["started"], scenarios=facts["scenarios"])
        noise = {case: run_to_run_sigma(values) for case, values in medians.items()}
    results = compare_runs(base, new, base_env, new_env, threshold=args.threshold, alpha=args.alpha or DEFAULT_ALPHA,
                           any_machine=args.any_machine, any_software=args.any_software, noise=noise,
                           blocks_only=args.no_noise_floor)
    regressed = [r for r in results if r.regressed]
    if args.regressions_out and (problem := write_output_file(args.regressions_out, "--regressions-out",
                                                               "".join(f"{r.case_id}\n" for r in regressed))):
        _err(err, problem)
        return EXIT_USAGE
    if args.json:
        print(json.dumps({"base": base_name, "new": new_name, "threshold": args.threshold,
                          "cases": [r.to_dict() for r in results]}, indent=2, default=str))
    else:
        from harness.console import compare_table

        neither = [r for r in results if r.measured_in_neither]
        shown = [r for r in results if not r.measured_in_neither]
        out.print(compare_table(shown, base_name, new_name, args.threshold))
        verdicts = ("broken", "slower", "faster", "unchanged", "cannot tell", "missing", "not comparable")
        counts = {v: sum(r.verdict == v for r in shown) for v in verdicts}
        out.print(", ".join(f"{n} {verdict}" for verdict, n in counts.items() if n), highlight=False)
        if neither:
            out.print(f"{len(neither)} case(s) measured in neither run (skipped or failed in both): not compared "
                      "(--json lists them)", highlight=False)
        for result in shown:
            if result.reason:
                out.print(f"[dim]{result.verdict}[/] {escape(result.case_id)}: {escape(result.reason)}",
                          highlight=False, soft_wrap=True)
        if regressed:
            names = escape(", ".join(r.case_id for r in regressed))
            out.print(f"[bold red]{len(regressed)} regression(s):[/] {names}", highlight=False, soft_wrap=True)
    untold = [r for r in results if r.verdict == "cannot tell"]
    if args.fail_on_regression and untold and not regressed:  # a green gate that checked nothing must say so
        err.print(f"[bold yellow]warning:[/] --fail-on-regression: {len(untold)} of {len(results)} case(s) could not "
                  "be judged (cannot tell: too little history for their run-to-run spread, or too much noise), so "
                  "this passes without having ruled out a slowdown there; `accelbench ab` compares in one sitting",
                  highlight=False, soft_wrap=True)
    return EXIT_CASES_FAILED if args.fail_on_regression and regressed else EXIT_OK


def cmd_ab(args: argparse.Namespace) -> int:
    from harness.ab import AbRun, settings_from, sides_from
    from harness.console import ab_table
    from results.store import DiskFull, new_run_dir
    from scenario.expand import TooManyCases, too_many_cases
    from scenario.load import ScenarioError, expand, load_scenario
    from scenario.selection import SelectionError, select
    from scenario.sides import SideError, check_options, parse_side

    out, err = make_console(), make_console(stderr=True)
    if problem := _run_or_resume_problem(args):
        _err(err, problem)
        return EXIT_USAGE
    overrides = {"method": args.method, "threshold": args.threshold, "max_seconds": args.max_seconds,
                 "min_rounds": args.min_rounds, "fresh": args.fresh, "round_seconds": args.round_seconds,
                 "slice_ms": args.slice_ms, "seed": args.seed}
    try:
        scenario_file, selection, started_with = (_resume_plan(args, ab=True) if args.resume else
                                                  (args.scenario, args.k, {}))
        loaded = load_scenario(scenario_file)
        names = (loaded.scenario.name, loaded.path.name, loaded.path.resolve().parent.name)
        cases = select(expand(loaded), selection, extra_names=names)
        given = {name: parse_side(name, text) if text is not None else None
                 for name, text in (("base", args.base), ("new", args.new))}
        if args.resume:
            sides, settings = _resumed_comparison(Path(args.resume), started_with, given, overrides)
        else:
            sides = sides_from(loaded.scenario.ab, loaded.base_dir, given)
            settings = settings_from(loaded.scenario.ab, **overrides)
        for side in sides.values():
            check_options(side, (backend.name for backend in loaded.scenario.backends))
        if problem := output_file_problem(args.verdicts_out, "--verdicts-out"):  # known now, not after measuring
            raise ValueError(problem)
    except (ScenarioError, SelectionError, TooManyCases, SideError, ValueError, ResumeError) as error:
        _err(err, str(error))
        return EXIT_USAGE
    if not cases:
        _err(err, f"no case of {scenario_file} matches -k {selection!r}")
        return EXIT_USAGE
    problem = None if args.yes else too_many_cases(cases, str(scenario_file), "--yes")
    if problem and not _confirmed(problem, err):
        _err(err, problem)
        return EXIT_USAGE
    if args.resume:
        run_dir = Path(args.resume)
    else:
        run_dir = Path(args.out) if args.out else new_run_dir(Path(args.reports_root), f"{loaded.scenario.name}-ab")
    run = _open_run(lambda: AbRun(run_dir, _scenario_info(loaded, "ab", selection), sides, settings,
                                  resume=bool(args.resume)), run_dir, err)
    if run is None:
        return EXIT_USAGE
    err.print(f"base: {escape(sides['base'].describe())}\nnew:  {escape(sides['new'].describe())}\n"
              f"{settings.method}, threshold {settings.threshold:.1%}, at most {settings.max_seconds:g} s a case",
              highlight=False, soft_wrap=True)
    records = []
    if args.resume:  # comparisons already finished are kept, and count in the table, the verdicts and the exit status
        earlier = {record.case_id: record for record in run.recorded}
        records = [earlier[case.case_id] for case in cases if case.case_id in earlier]
        torn = f"; cut a partly written record ({run.torn_bytes} bytes)" if run.torn_bytes else ""
        err.print(f"resuming {escape(str(run_dir))}: {len(records)} of {len(cases)} comparisons recorded, "
                  f"{len(cases) - len(records)} to run{torn}", highlight=False, soft_wrap=True)
        cases = [case for case in cases if case.case_id not in earlier]
    try:
        with err.status("looking up model artefacts") as status:
            run.prepare(cases, progress=progress_sink(err, status))
            for index, case in enumerate(cases, 1):
                head = f"\\[{index}/{len(cases)}] {escape(case.case_id)}"
                status.update(head)
                record = run.compare(case, progress=lambda text, head=head: status.update(f"{head} {escape(text)}"))
                records.append(record)
                ratio = f"  new/base {record.ratio:.3f}" if record.ratio is not None else ""
                err.print(f"{head} {escape(record.verdict or record.status)}{ratio}", highlight=False)
    except DiskFull as error:
        _err(err, f"{error}: the cases compared so far are kept in {run.run_dir}")
        return EXIT_USAGE
    from reporting.html import write_report_safely

    report, report_error = write_report_safely(run.run_dir)
    regressed = [r for r in records if r.regressed]
    # for a script: the nightly moves its last good state only when every case cleared
    if args.verdicts_out and (problem := write_output_file(
            args.verdicts_out, "--verdicts-out", "".join(f"{r.case_id}\t{r.verdict or r.status}\n" for r in records))):
        _err(err, f"{problem}; the comparisons are kept in {run.run_dir}")
        return EXIT_USAGE
    if args.json:
        print(json.dumps({"run_dir": str(run.run_dir), "cases": [r.to_json() for r in records]}, indent=2))
    else:
        out.print(ab_table(records))
        for record in records:
            if record.reason and record.verdict not in ("slower", "faster"):
                out.print(f"[dim]{escape(record.verdict or record.status)}[/] {escape(record.case_id)}: "
                          f"{escape(record.reason)}", highlight=False, soft_wrap=True)
        if regressed:
            out.print(f"[bold red]{len(regressed)} regression(s):[/] {escape(', '.join(r.case_id for r in regressed))}",
                      highlight=False, soft_wrap=True)
        out.print(f"results: {escape(str(run.run_dir))}" + (f"\nreport: {escape(str(report))}" if report else ""),
                  highlight=False, soft_wrap=True)
        if report_error:
            _err(err, report_error)
    refused = [r for r in records if r.status == "refused"]
    judged = any(r.status in ("compared", "failed") for r in records)
    # a gate that compared nothing at all does not pass (a typo'd option, a frozen state whose files all changed);
    # some cases refused among compared ones are named in the verdicts, which the nightly keeps its last state on
    if args.fail_on_regression and refused and not judged:
        _err(err, f"no case was compared ({len(refused)} refused: {', '.join(r.case_id for r in refused[:5])}"
                  f"{' …' if len(refused) > 5 else ''}): a gate that compared nothing does not pass")
        return EXIT_CASES_FAILED
    return EXIT_CASES_FAILED if args.fail_on_regression and regressed else EXIT_OK


def output_file_problem(name: str | None, option: str) -> str | None:
    """Why a file a command writes at its end cannot be written there, asked before anything is measured: a folder,
    a FIFO (the write would block), a missing folder or one that cannot be written find out after an hour's run."""
    if name is None:
        return None
    path = Path(name)
    try:
        info = path.stat()
    except FileNotFoundError:
        folder = path.parent
        if not folder.is_dir():
            return f"{option} {name}: no such folder {folder}"
        return None if os.access(folder, os.W_OK) else f"{option} {name}: cannot write into {folder}"
    except OSError as error:
        return f"{option} {name}: {error.strerror or error}"
    if not stat.S_ISREG(info.st_mode):
        return f"{option} {name}: not a regular file"
    return None if os.access(path, os.W_OK) else f"{option} {name}: not writable"


def write_output_file(name: str, option: str, text: str) -> str | None:
    """Write what a command says at its end (None) or say why it could not (one line): the disk may have filled, or
    the file been replaced, since output_file_problem looked."""
    if problem := output_file_problem(name, option):
        return problem
    try:
        with open(name, "w", encoding="utf-8", opener=lambda path, flags: os.open(path, flags | os.O_NONBLOCK)) as file:
            file.write(text)
    except OSError as error:
        return f"{option} {name}: {error.strerror or error}"
    return None


def cmd_freeze(args: argparse.Namespace) -> int:
    from harness.ab import FreezeRefused, freeze_run
    from results.runs import RunFolderError

    err = make_console(stderr=True)
    dest = Path(args.dest)
    try:
        if dest.exists() and not dest.is_dir():
            _err(err, f"{dest} is not a folder: freeze writes a new folder (artifacts.json, models/, "
                      "requirements.lock)")
            return EXIT_USAGE
        if dest.exists() and any(dest.iterdir()):
            _err(err, f"{dest} is not empty: freeze writes a new folder")
            return EXIT_USAGE
        done = freeze_run(Path(args.run_dir), dest)
    except FreezeRefused as error:
        for line in error.lines:
            _err(err, line)
        return EXIT_USAGE
    except RunFolderError as error:
        _err(err, str(error))
        return EXIT_USAGE
    except (OSError, subprocess.CalledProcessError) as error:
        _err(err, f"cannot freeze {args.run_dir} into {dest}: {' '.join(str(error).split())}")
        return EXIT_USAGE
    make_console().print(
        f"froze {done['cases']} case(s), {done['models']} model(s) in {done['files']} file(s) and "
        f"{done['packages']} packages into {escape(str(dest))}\nlater: python -m venv VENV && VENV/bin/pip install "
        f"-r {escape(str(dest))}/requirements.lock; accelbench ab SCENARIO --base python=VENV/bin/python,artifacts="
        f"{escape(str(dest))}/artifacts.json", highlight=False, soft_wrap=True)
    return EXIT_OK


def cmd_history_add(args: argparse.Namespace) -> int:
    from results.history import HistoryError, add_run, history_dir
    from results.runs import RunFolderError

    history = history_dir(args.history)
    try:
        identifier, new = add_run(history, args.run_dir)
    except (RunFolderError, HistoryError) as error:
        _err(make_console(stderr=True), str(error))
        return EXIT_USAGE
    make_console().print(f"{'added' if new else 'already in the history:'} {identifier} → {escape(str(history))}",
                         highlight=False, soft_wrap=True)
    return EXIT_OK


def cmd_history_list(args: argparse.Namespace) -> int:
    from results.history import history_dir, runs_table

    history = history_dir(args.history)
    table, problems = runs_table(history)
    console = make_console()
    for problem in problems:
        console.print(f"[yellow]warning[/] {escape(problem)}", highlight=False, soft_wrap=True)
    if table.empty:
        console.print(f"no runs in {escape(str(history))}", highlight=False)
        return EXIT_OK
    view = Table(title=f"accelbench history: {escape(str(history))}", header_style="bold")
    for column in ("run", "started", "commit", "machine", "cases"):
        view.add_column(column)
    for row in table.itertuples(index=False):
        view.add_row(escape(row.run_id), escape(str(row.started)), escape(str(row.commit or "-")[:10]),
                     escape(str(row.machine)), str(row.cases))
    console.print(view)
    return EXIT_OK


def cmd_trend(args: argparse.Namespace) -> int:
    from reporting.trend import write_trend
    from results.history import history_dir

    history = history_dir(args.history)
    err = make_console(stderr=True)
    if not any(history.glob("*.parquet")):
        _err(err, f"no runs in the history {history} (accelbench history add RUN_DIR --history {history})")
        return EXIT_USAGE
    try:
        with err.status("writing the trend page"):
            path, problems = write_trend(history, args.output)
    except OSError as error:
        _err(err, f"cannot write the trend page: {error}")
        return EXIT_USAGE
    for problem in problems:
        err.print(f"[yellow]warning[/] {escape(problem)}", highlight=False, soft_wrap=True)
    make_console().print(f"trend: {escape(str(path))}", highlight=False, soft_wrap=True)
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from backends.registry import availability, backend_names, get_backend

    rows = []
    for name in backend_names():
        state = availability(name)
        try:
            backend = get_backend(name)
            fmt, description = backend.artifact_format, backend.description
        except Exception:
            fmt, description = None, ""
        rows.append({"name": name, "available": state.ok, "reason": state.reason, "artifact_format": fmt,
                     "description": description})
    from sysinfo.stability import cpu_speed_probe, describe

    probe = cpu_speed_probe()
    if args.json:
        print(json.dumps({"backends": rows, "cpu_stability": probe}, indent=2))
        return EXIT_OK
    table = Table(title="accelbench doctor", header_style="bold")
    for column in ("backend", "available", "reason", "loads"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], "[green]yes[/]" if row["available"] else "[red]no[/]", escape(row["reason"]),
                      row["artifact_format"] or "-")
    console = make_console()
    console.print(table)
    console.print(describe(probe), style=None if probe["steady"] else "yellow", markup=False)
    return EXIT_OK


def cmd_zoo_list(args: argparse.Namespace) -> int:
    from model_zoo.catalog import CATALOG

    rows = [{"name": m.name, "input_shape": list(m.input_shape), "input_dtype": m.input_dtype,
             "source": m.source, "dataset": m.dataset, "task": m.task} for m in CATALOG.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    table = Table(title="accelbench model zoo", header_style="bold")
    for column in ("model", "input (per sample)", "source", "dataset"):
        table.add_column(column)
    for row in rows:
        shape = "×".join(map(str, row["input_shape"])) + f" {row['input_dtype']}"
        table.add_row(row["name"], shape, row["source"], row["dataset"] or "-")
    make_console().print(table)
    return EXIT_OK


def cmd_profile(args: argparse.Namespace) -> int:
    """Two profiled cases of a run folder side by side: which op categories and types got faster or slower."""
    from rich.table import Table

    from results.profile import DIFF_NOISE_SHARE, diff
    from results.runs import RunFolderError, load_run

    out, err = make_console(), make_console(stderr=True)
    try:
        run = load_run(args.run_dir)
    except (RunFolderError, OSError) as error:
        _err(err, str(error))
        return EXIT_USAGE
    chosen = []
    for wanted in (args.case_a, args.case_b):
        hits = [r for r in run.records if r.case_id == wanted] or [r for r in run.records if wanted in r.case_id]
        if len(hits) != 1:
            what = "no case" if not hits else f"{len(hits)} cases ({', '.join(r.case_id for r in hits[:4])})"
            _err(err, f"{wanted!r} matches {what} of {args.run_dir}: give a case id or a part of exactly one")
            return EXIT_USAGE
        record = hits[0]
        if record.profile is None or record.profile.error or not record.profile.run_ms_mean:
            why = record.profile.error if record.profile else "it was not profiled (profile: true or --profile)"
            _err(err, f"{record.case_id} has no profile: {why}")
            return EXIT_USAGE
        chosen.append(record)
    a, b = chosen
    for record in (a, b):
        out.print(f"{escape(record.case_id)}: {record.profile.run_ms_median:.4g} ms a run, median (ops cover "
                  f"{record.profile.coverage:.0%})")
    out.print(f"Two separate profiling passes, not one sitting: changes under {DIFF_NOISE_SHARE:.0%} of the larger "
              "side are not coloured; which case is faster needs `accelbench ab`.")
    for by, title in (("category", "by category"), ("op_type", "by op type")):
        table = Table(title=f"ms per run of the profiling passes, {title}")
        for column in (title.split()[-1], "A", "B", "B - A", "B / A"):
            table.add_column(column, justify="left" if column == title.split()[-1] else "right")
        for row in diff(a.profile, b.profile, by)[: args.top]:
            # inside two passes' noise a ratio would read as a change: none is printed
            ratio = ("within noise" if row["change"] == "same" else
                     f"{row['ratio']:.2f}×" if row["ratio"] is not None else "-")
            style = {"slower": "red", "faster": "green", "same": "default"}[row["change"]]
            table.add_row(escape(row["key"]), f"{row['a_ms']:.4g}", f"{row['b_ms']:.4g}",
                          f"[{style}]{row['delta_ms']:+.4g}[/]", ratio)
        out.print(table)
    return EXIT_OK


def cmd_overhead(args: argparse.Namespace) -> int:
    from harness.overhead import measure_overhead

    with Console(stderr=True).status("measuring the harness against a bare loop"):
        results = measure_overhead(tuple(args.backends), args.model, args.rounds, args.runs)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        table = Table(title=f"harness overhead on {args.model}, batch 1 (ratio of medians, 1.00 = none)",
                      header_style="bold")
        for column in ("backend", "harness median µs", "bare loop median µs", "ratio", "samples each"):
            table.add_column(column, justify="right")
        for name, row in results.items():
            if "ratio" in row:
                table.add_row(name, f"{row['harness_median_us']:.2f}", f"{row['bare_median_us']:.2f}",
                              f"{row['ratio']:.4f}", str(row["samples_each"]))
            else:
                table.add_row(name, "-", "-", escape(str(row.get("skipped") or row.get("error"))), "-")
        make_console().print(table)
    return EXIT_OK if all("ratio" in row for row in results.values()) else EXIT_CASES_FAILED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="accelbench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a scenario file and write a results folder")
    run.add_argument("scenario", nargs="?", help="scenario YAML file (with --resume: the run's own by default)")
    run.add_argument("--out", help="results folder (default: REPORTS_ROOT/<scenario>-<date>-<time>)")
    run.add_argument("--history", metavar="PATH", help="append the finished run to this history folder")
    run.add_argument("--resume", metavar="RUN_DIR",
                     help="complete an interrupted run: run only the cases RUN_DIR has no record of")
    run.add_argument("-k", metavar="EXPR", help="select cases like pytest -k, e.g. 'onnxruntime and b4'")
    run.add_argument("--shard", metavar="K/N",
                     help="run the K-th of N parts of the scenario, each model's cases in one part (CI matrices)")
    run.add_argument("--profile", action="store_true",
                     help="profile every case per operator after its timing (as the scenario's profile: true)")
    run.add_argument("--reports-root", default="reports", help="where run folders go (default: reports)")
    run.add_argument("--yes", action="store_true",
                     help="run without asking even when the selection holds more than 2,000 cases")
    run.set_defaults(func=cmd_run)

    compare = commands.add_parser("compare", help="is NEW slower than BASE? per case, with statistics")
    compare.add_argument("base", metavar="BASE", help="run folder, or @latest / @RUN_ID of the history")
    compare.add_argument("new", metavar="NEW", help="run folder, or @RUN_ID of the history")
    compare.add_argument("--threshold", type=parse_share, default=0.05, metavar="PCT",
                         help="the change that matters (default 5%%); smaller changes are 'unchanged'")
    compare.add_argument("--alpha", type=float, default=None, help="significance level of the test (default 0.01)")
    compare.add_argument("--fail-on-regression", action="store_true",
                         help="exit 1 when a case got slower or less accurate")
    compare.add_argument("--regressions-out", metavar="FILE", help="write the regressed case ids, one per line")
    compare.add_argument("--any-machine", action="store_true", help="compare runs from different machines too")
    compare.add_argument("--any-software", action="store_true", help="compare runs with other library versions too")
    compare.add_argument("--history", metavar="PATH", help=HISTORY_HELP)
    compare.add_argument("--no-noise-floor", action="store_true",
                         help="judge by the blocks within each run alone, without the history's run-to-run spread "
                              "(only on a quiet, dedicated machine: by default a change must exceed that spread, and "
                              "a case whose spread is unknown is 'cannot tell')")
    compare.add_argument("--json", action="store_true")
    compare.set_defaults(func=cmd_compare)

    ab = commands.add_parser("ab", help="is NEW slower than BASE? both sides measured in one sitting, in lock-step",
                             description=AB_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    ab.add_argument("scenario", nargs="?",
                    help="scenario YAML file (its ab: block gives sides and settings; options here win; with "
                         "--resume: the folder's own by default)")
    ab.add_argument("--base", metavar="SIDE",
                    help="the base side: key=value,... (python=, model=, artifacts=, backend options)")
    ab.add_argument("--new", metavar="SIDE", help="the new side, the same way (empty: the scenario as written)")
    ab.add_argument("-k", metavar="EXPR", help="select cases like pytest -k")
    ab.add_argument("--threshold", type=parse_share, default=None, metavar="PCT",
                    help="the change that matters (default 5%%); 'slower' needs at least half of it, significant")
    ab.add_argument("--max-seconds", type=float, default=None, help="time per case, start-ups included (default 60)")
    ab.add_argument("--min-rounds", type=int, default=None,
                    help="fresh worker pairs per case at least (default 8: the exact test's minimum for p < 0.01)")
    ab.add_argument("--round-seconds", type=float, default=None, help="measured seconds per round (default 1)")
    ab.add_argument("--slice-ms", type=float, default=None, help="length of one lock-step slice (default 50)")
    ab.add_argument("--method", choices=("lockstep", "duet"), default=None,
                    help="lockstep: alternate slices (default); duet: both at once on disjoint cores")
    ab.add_argument("--fresh", choices=("worker", "session"), default=None,
                    help="what a round renews: worker processes (default) or sessions in the same workers")
    ab.add_argument("--seed", type=int, default=None, help="seed of the slice order (default 0)")
    ab.add_argument("--out", help="results folder (default: REPORTS_ROOT/<scenario>-ab-<date>-<time>)")
    ab.add_argument("--resume", metavar="RUN_DIR",
                    help="complete an interrupted comparison: compare only the cases RUN_DIR has no record of, with "
                         "its sides and settings")
    ab.add_argument("--reports-root", default="reports")
    ab.add_argument("--fail-on-regression", action="store_true",
                    help="exit 1 when a case is slower, or broken (the new side cannot run what the base runs)")
    ab.add_argument("--verdicts-out", metavar="FILE",
                    help="write each case's verdict (or refused / failed), one 'case_id<TAB>verdict' line each")
    ab.add_argument("--yes", action="store_true", help="compare even more than 2,000 cases without asking")
    ab.add_argument("--json", action="store_true")
    ab.set_defaults(func=cmd_ab)

    freeze = commands.add_parser("freeze", help="keep a run's model files and package versions for a later ab")
    freeze.add_argument("run_dir", metavar="RUN_DIR")
    freeze.add_argument("dest", metavar="DEST", help="a new folder: artifacts.json, models/, requirements.lock")
    freeze.set_defaults(func=cmd_freeze)

    history = commands.add_parser("history", help="the results history (a folder of Parquet files)")
    history_commands = history.add_subparsers(dest="history_command", required=True)
    history_add = history_commands.add_parser("add", help="append a run folder to the history")
    history_add.add_argument("run_dir", metavar="RUN_DIR")
    history_add.add_argument("--history", metavar="PATH", help=HISTORY_HELP)
    history_add.set_defaults(func=cmd_history_add)
    history_list = history_commands.add_parser("list", help="the runs in the history")
    history_list.add_argument("--history", metavar="PATH", help=HISTORY_HELP)
    history_list.set_defaults(func=cmd_history_list)

    trend = commands.add_parser("trend", help="HTML page of every case's median over the history, change points")
    trend.add_argument("--history", metavar="PATH", help=HISTORY_HELP)
    trend.add_argument("-o", "--output", metavar="FILE", help="the HTML file (default: HISTORY/trend.html)")
    trend.set_defaults(func=cmd_trend)

    report = commands.add_parser("report", help="write the HTML report of one run, or of several merged")
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders (results.jsonl, env.json)")
    report.add_argument("-o", "--output", metavar="FILE",
                        help="the HTML file (default: RUN_DIR/report.html for one run, ./report.html for several)")
    report.set_defaults(func=cmd_report)

    profile = commands.add_parser("profile", help="two profiled cases of a run side by side, op type by op type")
    profile.add_argument("run_dir", metavar="RUN_DIR")
    profile.add_argument("case_a", metavar="CASE_A", help="case id, or a part of exactly one")
    profile.add_argument("case_b", metavar="CASE_B")
    profile.add_argument("--top", type=int, default=12, help="rows per table (default 12)")
    profile.set_defaults(func=cmd_profile)

    doctor = commands.add_parser("doctor", help="which backends can run here, and why not")
    doctor.add_argument("--json", action="store_true")
    doctor.set_defaults(func=cmd_doctor)

    zoo = commands.add_parser("zoo", help="the model zoo")
    zoo_commands = zoo.add_subparsers(dest="zoo_command", required=True)
    zoo_list = zoo_commands.add_parser("list", help="models the zoo can build")
    zoo_list.add_argument("--json", action="store_true")
    zoo_list.set_defaults(func=cmd_zoo_list)

    overhead = commands.add_parser("overhead", help="harness loop vs bare loop on a tiny model")
    overhead.add_argument("--json", action="store_true")
    overhead.add_argument("--backends", nargs="+", default=["tflite_cpu", "onnxruntime_cpu"])
    overhead.add_argument("--model", default="digits_cnn")
    overhead.add_argument("--rounds", type=int, default=20)
    overhead.add_argument("--runs", type=int, default=500, help="runs per round and loop")
    overhead.set_defaults(func=cmd_overhead)
    return parser


def main(argv: list[str] | None = None) -> Any:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted; finished cases are in the results folder")
        return 130


if __name__ == "__main__":
    sys.exit(main())
