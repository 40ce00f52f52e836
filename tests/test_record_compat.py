"""Behaviour unchanged: a run folder written before the results package existed (commit 0684769, scenario
`fixture.yaml` beside it) is read by today's code, and a fresh run of the same scenario writes records with the
same fields (new ones allowed) holding values of the same kind. Timings differ run to run; their kinds do not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from results.runs import load_runs
from tests.conftest import by_id, run_cli, written_records

FIXTURE = Path(__file__).parent / "data" / "run_0684769"
# the record's fields whose values are free text or differ by machine and moment, compared by presence only
VOLATILE = {"started_at", "finished_at", "env_id", "artifact", "reason"}


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def differences(old: Any, new: Any, where: str) -> list[str]:
    """Fields of `old` missing from `new`, and values whose kind changed (None on both sides or neither)."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = [f"{where}.{key}: missing" for key in old if key not in new]
        for key in old:
            if key in new and key not in VOLATILE:
                found += differences(old[key], new[key], f"{where}.{key}")
        return found
    if isinstance(old, list) and isinstance(new, list):
        if old and new:
            return differences(old[0], new[0], f"{where}[0]")
        return []
    if kind(old) != kind(new):
        return [f"{where}: {kind(old)} before, {kind(new)} now"]
    return []


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("compat") / "run"
    result = run_cli("run", str(FIXTURE / "fixture.yaml"), "--out", str(out), timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return by_id(written_records(out / "results.jsonl"))


def test_todays_code_reads_a_run_folder_written_before() -> None:
    (run,) = load_runs([FIXTURE])
    assert [r.status for r in run.records] == ["passed", "passed", "passed", "passed", "skipped", "skipped"]
    assert run.records[0].p50_ms > 0


def test_a_fresh_run_writes_the_same_fields_with_values_of_the_same_kind(fresh: dict[str, dict[str, Any]]) -> None:
    before = by_id(written_records(FIXTURE / "results.jsonl"))
    assert set(fresh) == set(before)
    problems = []
    for case_id, old in before.items():
        assert fresh[case_id]["status"] == old["status"], case_id
        problems += differences(old, fresh[case_id], case_id)
    assert problems == []
