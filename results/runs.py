"""Run folders as a report reads them: the records, the machine they were measured on, and when.

Runs written by older versions lack `machine_id` and `collected_at` in env.json, or hold a `machine_id` that hashed
what is no longer taken as hardware (exact memory, physical cores, the GPU driver); both are derived the same way
here, so any run folder can be reported and merged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from results.ab_record import AbRecord
from results.budgets import BudgetVerdict
from results.environment import EnvFileError, check_environment
from results.race_record import RaceRecord
from results.record import Record, RecordError
from results.store import (
    RunFolderProblem,
    read_ab_records,
    read_budget_verdicts,
    read_race_records,
    read_records,
    read_small_json,
)
from sysinfo.envinfo import env_machine_id


class RunFolderError(Exception):
    """A folder given to the report that is not a readable accelbench run; the message names it."""


@dataclass
class Run:
    path: Path
    env: dict[str, Any]
    info: dict[str, Any]  # scenario.json: scenarios, front door, selection
    records: list[Record]
    name: str = ""  # how the report calls it: the folder's name, made unique among the runs of one report
    ab_records: list[AbRecord] = field(default_factory=list)  # accelbench ab's comparisons (ab.jsonl)
    races: list[RaceRecord] = field(default_factory=list)  # each group's race (race.jsonl); none before races
    budgets: list[BudgetVerdict] = field(default_factory=list)  # performance budgets' verdicts (budgets.jsonl)

    def __post_init__(self) -> None:
        self.name = self.name or self.path.name

    @property
    def machine(self) -> dict[str, Any]:
        return self.env.get("machine") or {}

    @property
    def machine_id(self) -> str:
        """Derived from the machine's description (hardware only), not read: a run written before machines were
        identified as they are now is still grouped with today's runs on the same hardware."""
        return env_machine_id(self.env)

    @property
    def started(self) -> str | None:
        """ISO time the run began: env.json's, else the first record's start."""
        if self.env.get("collected_at"):
            return str(self.env["collected_at"])
        starts = [r.started_at for r in self.records if r.started_at is not None]
        try:
            return datetime.fromtimestamp(min(starts), UTC).isoformat(timespec="seconds") if starts else None
        except (OverflowError, ValueError, OSError):  # a start no clock can show: an edited record
            return None

    @property
    def commit(self) -> str | None:
        git = self.env.get("git") or {}
        if not git.get("id"):
            return None
        return git["id"][:10] + (" (uncommitted changes)" if git.get("dirty") else "")

    @property
    def scenarios(self) -> list[str]:
        names = self.info.get("scenarios") or sorted({r.scenario or "?" for r in self.records})
        return [str(name) for name in names]


def machine_label(machine: dict[str, Any]) -> str:
    """One line a reader recognises a machine by: CPU, cores, memory, GPUs and driver."""
    parts = [str(machine.get("cpu_model") or "unknown CPU")]
    if machine.get("cpu_logical"):
        parts.append(f"{machine['cpu_logical']} logical cores")
    if machine.get("memory_gb"):
        parts.append(f"{machine['memory_gb']} GB")
    gpu = machine.get("gpu") or {}
    names = [str(d.get("name") or "?") for d in gpu.get("devices") or []]
    if names:
        parts.append(", ".join(names) + f" (driver {gpu.get('driver_version')}, CUDA {gpu.get('cuda_driver_version')})")
    else:
        parts.append("no NVIDIA GPU")
    return " · ".join(parts)


def _read_json(path: Path, required: bool) -> dict[str, Any]:
    """A run folder's env.json or scenario.json, read as a bounded regular file (read_small_json): a FIFO would block
    the read forever, and a gigabyte put in its place would be read whole."""
    try:
        data = read_small_json(path)
    except RunFolderProblem as error:
        raise RunFolderError(str(error)) from None
    if data is None:
        if required:
            raise RunFolderError(f"{path}: missing; is {path.parent} an accelbench run folder?")
        return {}
    if not isinstance(data, dict):
        raise RunFolderError(f"{path}: expected a JSON object")
    return data


def load_run(path: str | Path) -> Run:
    """A run folder; a torn last record (a run killed mid-write) is skipped by the results reader."""
    folder = Path(path)
    if not folder.is_dir():
        raise RunFolderError(f"{folder}: no such run folder")
    if not (folder / "results.jsonl").is_file() and not (folder / "env.json").is_file():
        raise RunFolderError(f"{folder}: not an accelbench run folder (no results.jsonl, no env.json)")
    env = _read_json(folder / "env.json", required=True)
    try:
        check_environment(env)
    except EnvFileError as error:
        raise RunFolderError(f"{folder / 'env.json'}: {error}") from None
    info = _read_json(folder / "scenario.json", required=False)
    try:
        records = read_records(folder / "results.jsonl")
        ab_records = read_ab_records(folder / "ab.jsonl")
        races = read_race_records(folder / "race.jsonl")
        budgets = read_budget_verdicts(folder / "budgets.jsonl")
    except RecordError as error:
        raise RunFolderError(str(error)) from None
    return Run(folder.resolve(), env, info, records, ab_records=ab_records, races=races, budgets=budgets)


def load_runs(paths: list[str | Path]) -> list[Run]:
    """Several run folders for one report. Runs are told apart by name in tables and keys, so two folders with
    the same name (a/run, b/run) are named by as much of their path as it takes to differ."""
    runs = [load_run(path) for path in paths]
    seen: dict[Path, Path] = {}
    for path, run in zip(paths, runs, strict=True):
        if run.path in seen:
            raise RunFolderError(f"{path}: the same run folder as {seen[run.path]}, given twice")
        seen[run.path] = Path(path)
    depth = 1
    while len({_tail(run.path, depth) for run in runs}) < len(runs):
        depth += 1
    for run in runs:
        run.name = _tail(run.path, depth)
    return runs


def _tail(path: Path, parts: int) -> str:
    return "/".join(path.parts[-parts:])
