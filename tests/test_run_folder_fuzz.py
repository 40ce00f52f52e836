"""Run folders and histories edited by hand, written by another tool, or damaged: thousands of mutated records and
env.json files through every reader (run folders, the console, the report's table, compare, the history). Each
either reads, and then every consumer copes with it, or fails with one line that names the file and the field;
never a traceback. Mutations are seeded: a failure names the seed that reproduces it."""

from __future__ import annotations

import copy
import io
import json
import random
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from harness.console import print_summary
from reporting.frame import records_frame
from results.history import HistoryError, add_run, load_history_run
from results.runs import Run, RunFolderError, load_run
from tracking.compare import compare_runs

FIXTURE_RUN = Path(__file__).parent / "data" / "run_0684769"
RECORDS = [json.loads(line) for line in (FIXTURE_RUN / "results.jsonl").read_text().splitlines()]
ENV = json.loads((FIXTURE_RUN / "env.json").read_text())

JUNK: list[Any] = ["", "fast", "[red]x[/]", "💥", "\x00", -1, 0, 10**30, 1e308, -0.0, float("nan"), float("inf"),
                   -float("inf"), True, None, [], {}, [1, "a"], {"p50": "x"}, {"nested": {"deep": [None]}}]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every location inside a JSON value (keys and list indexes), the value's own included."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value[:3]):  # samples lists are long: their first entries stand for them
            found += _paths(child, (*prefix, index))
    return found


def mutate(document: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """One to three edits at random places: a value replaced by junk, a key deleted, an unknown key added, a value
    wrapped in a list, or two values swapped."""
    document = copy.deepcopy(document)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(_paths(document)[1:])
        *parents, last = path
        holder: Any = document
        for part in parents:
            holder = holder[part]
        kind = rng.choice(["junk", "junk", "junk", "delete", "add", "wrap", "swap"])
        if kind == "junk":
            holder[last] = copy.deepcopy(rng.choice(JUNK))
        elif kind == "delete" and isinstance(holder, dict):
            del holder[last]
        elif kind == "add" and isinstance(holder, dict):
            holder[f"x_{rng.randint(0, 99)}"] = copy.deepcopy(rng.choice(JUNK))
        elif kind == "wrap":
            holder[last] = [holder[last]]
        elif kind == "swap" and isinstance(holder, dict) and len(holder) > 1:
            other = rng.choice(list(holder))
            holder[last], holder[other] = holder[other], holder[last]
    return document


def write_run(folder: Path, records: list[dict[str, Any]], env: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURE_RUN / "scenario.json", folder / "scenario.json")
    (folder / "env.json").write_text(json.dumps(env))
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def assert_names_file_and_field(error: Exception, folder: Path, files: tuple[str, ...] = ("results.jsonl",
                                                                                         "env.json")) -> None:
    """One line that starts with the file, then the case (or line), then a field path."""
    message = str(error)
    assert "\n" not in message, message
    named = [name for name in files if message.startswith(f"{folder / name}: ")]
    assert named, message
    rest = message.removeprefix(f"{folder / named[0]}: ")
    rest = re.sub(r"^(case '[^']*'|case \"[^\"]*\"|line \d+): ", "", rest)  # a record's error names its case
    field = rest.split(": ")[0]
    assert field and " " not in field.strip("'"), message  # a field path such as latency_ms.p50 or machine.gpu


MUTATIONS = 2_000


def test_mutated_run_folders_read_or_fail_with_file_and_field(tmp_path: Path) -> None:
    rng = random.Random(20261201)
    started = time.perf_counter()
    survivors: list[tuple[int, Run]] = []
    refused = 0
    folder = tmp_path / "run"
    for index in range(MUTATIONS):
        record, env = rng.choice(RECORDS), ENV
        if index % 4 == 3:  # a quarter of the mutations hit env.json
            env = mutate(ENV, rng)
        else:
            record = mutate(record, rng)
        write_run(folder, [record], env)
        try:
            run = load_run(folder)
        except RunFolderError as error:
            assert_names_file_and_field(error, folder)
            refused += 1
        else:
            survivors.append((index, run))
    reading = time.perf_counter() - started
    assert refused and survivors  # the mutations reach both outcomes
    base = {r.case_id: r for r in load_run(FIXTURE_RUN).records}
    for index, run in survivors[::3]:  # every consumer copes with what was read (a third: the table is slow)
        try:
            print_summary(run.records, run.path, Console(file=io.StringIO(), width=200))
            compare_runs(base, {r.case_id: r for r in run.records}, ENV, run.env)
            if index % 10 == 0:
                records_frame([run], {run.machine_id: "m"})
        except Exception as error:  # pragma: no cover - the failure message is the point
            pytest.fail(f"mutation {index}: {type(error).__name__}: {error}")
    print(f"{MUTATIONS} mutated records and env.json files: {refused} refused with file and field, "
          f"{len(survivors)} read, in {reading:.1f} s; consumers on {len(survivors[::3])} of them in "
          f"{time.perf_counter() - started - reading:.1f} s")
    assert reading < 60


def test_mutated_runs_enter_the_history_only_when_sound(tmp_path: Path) -> None:
    """What reaches the history reads back and compares; a mutation that cannot be stored is one HistoryError or
    RunFolderError line; NaN never gets in (so `compare @latest` never meets it)."""
    rng = random.Random(7)
    history = tmp_path / "history"
    stored = 0
    for index in range(200):
        records = copy.deepcopy(RECORDS)
        position = rng.randrange(len(records))
        records[position] = mutate(records[position], rng)
        records[position]["started_at"] = 1_800_000_000 + index  # a run of its own in the history
        env = {**ENV, "collected_at": f"2027-01-01T00:{index // 60:02d}:{index % 60:02d}+00:00"}
        folder = write_run(tmp_path / f"run{index}", records, env)
        try:
            identifier, _ = add_run(history, folder)
        except (HistoryError, RunFolderError) as error:
            assert_names_file_and_field(error, folder)
            continue
        stored += 1
        base, base_env, _ = load_history_run(history, identifier)
        new = {r.case_id: r for r in load_run(folder).records}
        compare_runs(base, new, base_env, ENV)
    assert stored
    latest, env, _ = load_history_run(history, "latest")
    for record in latest.values():
        assert record.timing_problem() is None
