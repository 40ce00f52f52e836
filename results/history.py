"""The results history: an append-only folder of Parquet files, one per run, keyed by case id, machine and commit.

Why a folder of Parquet files rather than one database file: a run is written once, to a temporary name that is
renamed into place, so a writer killed mid-way leaves no half-written run and readers never see one; appending
never rewrites what is already there (a DuckDB or SQLite file is rewritten in place, and one torn write can cost
the whole history); a CI cache or artifact carries a folder as it is; and pyarrow reads every run, column by
column, in one call. Each row keeps the whole record and its raw samples (zstd-compressed), so `accelbench
compare @latest NEW` runs the same statistics as between two run folders.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from results.environment import EnvFileError, check_environment
from results.record import MEASURED, Record, RecordError
from results.runs import load_run, machine_label
from sysinfo.envinfo import env_machine_id

HISTORY_ENV = "ACCELBENCH_HISTORY"
DEFAULT_HISTORY = "history"

SCHEMA = pa.schema([
    ("run_id", pa.string()), ("run_name", pa.string()), ("started", pa.string()), ("commit", pa.string()),
    ("commit_time", pa.string()), ("branch", pa.string()), ("dirty", pa.bool_()), ("machine_id", pa.string()),
    ("machine", pa.string()), ("env_id", pa.string()), ("env_json", pa.string()), ("scenario", pa.string()),
    ("case_id", pa.string()), ("model", pa.string()), ("backend_label", pa.string()), ("precision", pa.string()),
    ("compression", pa.string()), ("batch_size", pa.int64()), ("mode", pa.string()), ("status", pa.string()),
    ("p50_ms", pa.float64()), ("q1_ms", pa.float64()), ("q3_ms", pa.float64()), ("p99_ms", pa.float64()),
    ("ci_low_ms", pa.float64()), ("ci_high_ms", pa.float64()), ("throughput_ips", pa.float64()),
    ("cosine", pa.float64()), ("top1", pa.float64()), ("record_json", pa.string()),
    ("samples_ns", pa.list_(pa.int64())),
])


# columns that describe the run, not the case; the rest are the record's flat fields (Record.flat) by name
RUN_COLUMNS = ("run_id", "run_name", "started", "commit", "commit_time", "branch", "dirty", "machine_id", "machine",
               "env_id", "env_json", "record_json", "samples_ns")


class HistoryError(Exception):
    """A history that cannot be read or written as asked; the message names the folder or the run."""


def history_dir(path: str | Path | None) -> Path:
    return Path(path or os.environ.get(HISTORY_ENV) or DEFAULT_HISTORY)


def run_id(run: Any) -> str:
    """Stable for a run folder: its start time, machine and a hash of its name, so adding it twice is a no-op (the
    machine as env.json stored it, so that a folder added before machines were identified as now keeps its id)."""
    started = run.started or "unknown"
    digest = hashlib.sha256(f"{run.path.name}|{started}|{run.env.get('env_id')}".encode()).hexdigest()[:8]
    stamp = "".join(ch for ch in started[:19] if ch.isdigit())
    stored = run.env.get("machine_id")
    return f"{stamp}-{(stored if isinstance(stored, str) and stored else run.machine_id)[:8]}-{digest}"


def _rows(run: Any, identifier: str) -> list[dict[str, Any]]:
    git = run.env.get("git") or {}
    rows = []
    columns = [name for name in SCHEMA.names if name not in RUN_COLUMNS]
    for record in run.records:
        flat = record.flat()
        kept = {k: v for k, v in record.to_json().items() if k != "samples_ns"}
        rows.append({
            "run_id": identifier, "run_name": run.name, "started": run.started, "commit": git.get("id"),
            "commit_time": git.get("time"), "branch": git.get("branch"), "dirty": bool(git.get("dirty")),
            "machine_id": run.machine_id, "machine": machine_label(run.machine), "env_id": run.env.get("env_id"),
            "env_json": json.dumps(run.env, default=str), **{name: flat[name] for name in columns},
            "scenario": record.scenario or "", "record_json": json.dumps(kept, default=str),
            "samples_ns": [int(v) for v in record.samples_ns],
        })
    return rows


def add_run(history: Path, run_dir: str | Path) -> tuple[str, bool]:
    """Append a run folder; returns its id and whether it was new (adding a run twice changes nothing)."""
    run = load_run(run_dir)
    if not run.records:
        raise HistoryError(f"{run.path} has no records: nothing to add to the history")
    seen: set[str] = set()
    for record in run.records:  # the history keys rows by run and case: a second record would be a second truth
        if record.case_id in seen:
            raise HistoryError(f"{run.path / 'results.jsonl'}: case {record.case_id[:200]!r}: case_id: recorded "
                               "twice (a run holds one record per case: two writers of one folder, or an edit); keep "
                               "one of them")
        seen.add(record.case_id)
    identifier = run_id(run)
    target = history / f"{identifier}.parquet"
    if target.exists() and _stored_rows(target) == len(run.records):
        return identifier, False
    # new, or stored before a --resume completed it, or damaged: (re)write it whole
    try:
        history.mkdir(parents=True, exist_ok=True)
        tmp = history / f".{identifier}.parquet.tmp"
        pq.write_table(pa.Table.from_pylist(_rows(run, identifier), schema=SCHEMA), tmp, compression="zstd")
        with open(tmp, "rb+") as handle:  # on disk before it takes the final name: a crash leaves no torn file
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as error:
        raise HistoryError(f"cannot write the history in {history}: {error.strerror or error}") from None
    except (OverflowError, pa.ArrowException) as error:  # a figure the history's columns cannot hold
        raise HistoryError(f"{run.path / 'results.jsonl'}: cannot be stored in the history ({error})") from None
    return identifier, True


def _stored_rows(path: Path) -> int | None:
    try:
        return pq.read_metadata(path).num_rows
    except (OSError, pa.ArrowException):
        return None


def read_history(history: Path, columns: list[str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Every run of the history, oldest first, and a note per file that could not be read (skipped, never
    fatal: one damaged file must not hide the rest of the history)."""
    frames, problems = [], []
    if columns is not None:  # the sort keys come along whatever the caller asked for
        columns = list(dict.fromkeys([*columns, "started", "run_id"]))
    for path in sorted(history.glob("*.parquet")) if history.is_dir() else []:
        if not path.is_file():  # a FIFO or a device would block the reader
            problems.append(f"{path}: not a regular file, skipped")
            continue
        try:
            frame = pq.read_table(path, columns=columns).to_pandas()
            if "machine_id" in frame and len(frame):
                frame["machine_id"] = _machine_of(path, frame["machine_id"].iloc[0])
            frames.append(frame)
        except (OSError, pa.ArrowException) as error:
            problems.append(f"{path}: unreadable, skipped ({error})")
    if not frames:
        return pd.DataFrame(columns=columns or SCHEMA.names), problems
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values(["started", "run_id"], kind="stable", ignore_index=True), problems


def _machine_of(path: Path, stored: Any) -> Any:
    """A run's machine as it is identified now (sysinfo.envinfo.machine_id of its env.json), not the id stored when
    it was added: a history kept across the version that stopped hashing exact memory and the kernel build still
    gathers one machine's runs for the noise floor. The stored id where env_json cannot be read."""
    try:
        rows = pq.ParquetFile(path).read_row_group(0, columns=["env_json"]).column("env_json")
        env = json.loads(rows[0].as_py() or "{}")
    except (OSError, pa.ArrowException, IndexError, ValueError):
        return stored
    return env_machine_id(env) if isinstance(env, dict) else stored


def runs_table(history: Path) -> tuple[pd.DataFrame, list[str]]:
    """One row per run: id, start, commit, machine, number of cases."""
    frame, problems = read_history(history, ["run_id", "run_name", "started", "commit", "machine", "case_id"])
    if frame.empty:
        return frame, problems
    table = frame.groupby("run_id", sort=False).agg(
        run_name=("run_name", "first"), started=("started", "first"), commit=("commit", "first"),
        machine=("machine", "first"), cases=("case_id", "count")).reset_index()
    return table, problems


def load_history_run(history: Path, reference: str, machine_id: str | None = None, exclude: str | None = None,
                     before: str | None = None,
                     scenarios: set[str] | None = None) -> tuple[dict[str, Record], dict[str, Any], str]:
    """A run of the history as (records by case id, env, run id). reference: "latest" (the newest run on
    machine_id that started before `before`, other than `exclude`, of one of `scenarios`: a manual run of
    another scenario between two nightlies is not the nightly's base) or a run id."""
    frame, _ = read_history(history, ["run_id", "started", "machine_id", "scenario"])
    if frame.empty:
        raise HistoryError(f"the history in {history} has no runs")
    if reference == "latest" and scenarios:
        frame = frame[frame["scenario"].fillna("").isin(scenarios)]
    runs = frame.drop_duplicates("run_id")
    if reference == "latest":
        if machine_id is not None:
            runs = runs[runs["machine_id"] == machine_id]
        if exclude is not None:
            runs = runs[runs["run_id"] != exclude]
        if before is not None:
            runs = runs[runs["started"] < before]
        if runs.empty:
            of = f" of {', '.join(sorted(scenarios))}" if scenarios else ""
            raise HistoryError(f"the history in {history} has no earlier run{of} on this machine")
        chosen = runs.iloc[-1]["run_id"]
    elif reference in set(runs["run_id"]):
        chosen = reference
    else:
        raise HistoryError(f"no run {reference!r} in the history in {history} (accelbench history list)")
    path = _run_file(history, chosen)
    try:
        rows = pq.read_table(path, columns=["record_json", "samples_ns", "env_json"]).to_pylist()
    except (OSError, pa.ArrowException) as error:
        raise HistoryError(f"{path}: unreadable ({error})") from None
    try:
        env = json.loads(rows[0]["env_json"] or "{}") if rows else {}
        if not isinstance(env, dict):
            raise EnvFileError("not a JSON object")
        check_environment(env)
    except (EnvFileError, json.JSONDecodeError) as error:
        raise HistoryError(f"{path}: env_json: {error}") from None
    records = {}
    for number, row in enumerate(rows, 1):
        try:
            data = json.loads(row["record_json"] or "")
            if not isinstance(data, dict):
                raise RecordError("not a JSON object")
        except (json.JSONDecodeError, RecordError) as error:
            raise HistoryError(f"{path}: row {number}: record_json: {error}") from None
        try:
            record = Record.read({**data, "samples_ns": row["samples_ns"] or []})
        except RecordError as error:
            raise HistoryError(f"{path}: case {str(data.get('case_id'))[:200]!r}: {error}") from None
        records[record.case_id] = record
    return records, env, chosen


def _run_file(history: Path, identifier: Any) -> Path:
    """The file of one run: its id comes from a file's content, so it must be a plain name (no '/', no '..')
    of a regular file inside the history."""
    name = str(identifier)
    path = history / f"{name}.parquet"
    if not re.fullmatch(r"[\w.-]+", name) or name.startswith(".") or not path.is_file():
        raise HistoryError(f"no readable run {name[:100]!r} in the history in {history}")
    return path


def finite(column: pd.Series) -> pd.Series:
    """Rows whose figure is a finite number: a history file written by hand or by an older version may hold NaN or
    inf, which must never reach a noise estimate or a chart."""
    return pd.to_numeric(column, errors="coerce").map(lambda v: bool(np.isfinite(v)))


def case_medians(history: Path, machine_id: str, before: str | None = None, last: int = 30,
                 scenarios: set[str] | None = None) -> dict[str, list[float]]:
    """Per case id, the p50 of its last `last` measured runs on this machine that started before `before` (in
    one of `scenarios`: another scenario may measure a case of the same id differently), oldest first: what
    compare's noise floor is estimated from."""
    frame, _ = read_history(history, ["started", "machine_id", "case_id", "status", "p50_ms", "scenario"])
    if frame.empty:
        return {}
    keep = (frame["machine_id"] == machine_id) & frame["status"].isin(MEASURED) & finite(frame["p50_ms"])
    if before is not None:
        keep &= frame["started"] < before
    if scenarios:
        keep &= frame["scenario"].fillna("").isin(scenarios)
    return {case: group["p50_ms"].tolist()[-last:] for case, group in frame[keep].groupby("case_id", sort=False)}


def history_run_facts(history: Path, identifier: str) -> dict[str, Any]:
    """Machine, start and scenarios of a run of the history: what @latest is chosen against when NEW is @RUN_ID.
    Read from that run's own file, not the whole history."""
    try:
        path = _run_file(history, identifier)
        rows = pq.read_table(path, columns=["machine_id", "started", "scenario"]).to_pylist()
    except (OSError, pa.ArrowException, HistoryError):
        rows = []
    if not rows:
        raise HistoryError(f"no run {identifier!r} in the history in {history} (accelbench history list)")
    return {"machine_id": _machine_of(path, rows[0]["machine_id"]), "started": rows[0]["started"], "run_id": identifier,
            "scenarios": {row["scenario"] or "" for row in rows}}
