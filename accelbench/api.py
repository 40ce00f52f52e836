"""The Python API for notebooks and scripts: run a scenario (a file or a dict) and get its typed records; load run
folders as one pandas table with the report's columns.

``accelbench.run`` goes the way `accelbench run` goes (the same engine, isolated workers, races, budgets, run
folder and HTML report), without a console: what it found comes back as a :class:`RunResult`, and a scenario the
user must fix raises :class:`ScenarioError` with every problem, named by file (or ``<scenario dict>``), line and
key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from results.budgets import BudgetVerdict
from results.race_record import RaceRecord
from results.record import Record
from scenario.load import LoadedScenario, ScenarioError

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class RunResult:
    """What one run measured: its records (one per case, as results.jsonl holds them), its races, its budget
    verdicts, and where its run folder and report are."""

    run_dir: Path
    records: list[Record]
    races: list[RaceRecord] = field(default_factory=list)
    budgets: list[BudgetVerdict] = field(default_factory=list)
    report: Path | None = None
    report_error: str | None = None

    @property
    def ok(self) -> bool:
        """What `accelbench run`'s exit code says: no case failed or INVALID, and no budget missed."""
        return not any(r.status in ("failed", "invalid") for r in self.records) and not any(
            v.fails for v in self.budgets)

    def frame(self) -> pd.DataFrame:
        """The records as the report's table (load_runs of this run folder)."""
        return load_runs([self.run_dir])

    def record(self, case_id: str) -> Record:
        """The record of one case, by its id (KeyError naming the ids there are)."""
        found = {r.case_id: r for r in self.records}
        if case_id not in found:
            raise KeyError(f"no case {case_id!r} in this run (its cases: {', '.join(found)})")
        return found[case_id]


def load(scenario: str | Path | dict[str, Any], base_dir: str | Path | None = None) -> LoadedScenario:
    """A scenario file, or a dict holding what a file would (relative paths: to ``base_dir``, default the working
    folder); ScenarioError lists every problem."""
    from scenario.load import load_scenario, load_scenario_data

    if isinstance(scenario, dict):
        return load_scenario_data(scenario, base_dir)
    return load_scenario(scenario)


def run(scenario: str | Path | dict[str, Any], *, out: str | Path | None = None, k: str | None = None,
        shard: str | None = None, profile: bool = False, reports_root: str | Path = "reports", yes: bool = False,
        base_dir: str | Path | None = None, progress: Callable[[str], None] | None = None) -> RunResult:
    """Run a scenario as `accelbench run` does and return what it measured.

    ``out``: the run folder (default ``reports_root/<scenario>-<date>-<time>``); ``k``: a selection as ``-k``;
    ``shard``: ``"K/N"`` as ``--shard``; ``yes``: run a selection of more than 2,000 cases; ``progress``: called
    with a line per step (``print`` shows them)."""
    from harness.budgets import judge_budgets
    from harness.engine import Engine
    from harness.race import race_run
    from reporting.html import write_report_safely
    from results.store import new_run_dir
    from scenario.expand import profiled, too_many_cases
    from scenario.load import expand
    from scenario.selection import run_selection
    from scenario.sharding import parse_shard

    loaded = load(scenario, base_dir)
    everything = expand(loaded)
    split = parse_shard(shard) if shard else None
    # -k also matches the file's and its folder's names, as in `accelbench run` and pytest
    names = (loaded.scenario.name, loaded.path.name, loaded.base_dir.resolve().name)
    cases, _ = run_selection(everything, split, k, extra_names=names)
    if not cases:
        where = f" in shard {split}" if split else ""
        raise ValueError(f"no case of {loaded.path}{where} matches k={k!r}" if k else
                         f"shard {split} of {loaded.path} holds no model: nothing to run")
    if profile:
        cases = profiled(cases)
    if not yes and (problem := too_many_cases(cases, str(loaded.path), "yes=True")):
        raise ValueError(problem)
    say = progress or (lambda _: None)
    run_dir = Path(out) if out else new_run_dir(Path(reports_root), loaded.scenario.name)
    info = {"scenarios": [loaded.scenario.name], "front_door": "api", "file": str(loaded.path), "selection": k,
            "shard": str(split) if split else None}
    engine = Engine(run_dir, info)
    try:
        engine.prepare_artifacts(cases, progress=say)
        for index, case in enumerate(cases, 1):
            record = engine.run_case(case)
            say(f"[{index}/{len(cases)}] {case.case_id} {record.status}"
                + (f"  p50 {record.p50_ms:.4g} ms" if record.p50_ms is not None else ""))
        races = race_run(engine, cases, progress=say)
        verdicts = judge_budgets(engine, cases)
        records = engine.finish()
        report, report_error = write_report_safely(engine.run_dir)
        return RunResult(engine.run_dir, records, races, verdicts, report, report_error)
    finally:
        engine.close()


def load_runs(paths: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """One or several run folders as one table, a row per case, with the columns of the report's table (and its
    CSV): each case's speed-up against its run's baseline (from its run's race where there is one), never one
    machine's number divided by another's."""
    from reporting.frame import COLUMNS, records_frame
    from results.runs import load_runs as load_run_folders
    from results.runs import machine_label

    given = [paths] if isinstance(paths, str | Path) else list(paths)
    runs = load_run_folders(given)
    labels = {run.machine_id: machine_label(run.machine) for run in runs}
    return records_frame(runs, labels)[list(COLUMNS)].reset_index(drop=True)


__all__ = ["RunResult", "ScenarioError", "load", "load_runs", "run"]
