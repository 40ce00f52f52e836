"""Performance budgets judged for a run's cases (results.budgets judges; this finds the records, races and machine).

Both front doors use it: `accelbench run` judges every budget after the races and exits 1 on a miss; the pytest
front door judges a case's absolute limits in the case's own item and its relative limits in an item after its
group's race (harness.pytest_plugin). Every verdict lands in the run folder's budgets.jsonl.
"""

from __future__ import annotations

import os
from typing import Any

from results.budgets import MACHINE_LABEL_ENV, BudgetVerdict, judge_case
from results.race_record import RaceRecord
from scenario.cases import Case
from sysinfo.envinfo import env_machine_id


def judge_budgets(engine: Any, cases: list[Case], relative: bool = True, absolute: bool = True,
                  races: list[RaceRecord] | None = None) -> list[BudgetVerdict]:
    """The verdicts of ``cases``' budgets on what the engine's run folder holds, appended to budgets.jsonl.
    ``races``: the races to judge on (default: the run folder's), e.g. the one a comparison has just run."""
    budgeted = [case for case in cases if case.budgets]
    if not budgeted:
        return []
    records = engine.store.records()
    if races is None:
        races = engine.store.race_records() if relative else []
    latest = {(record.scenario, record.case_id): record for record in records}  # a resumed run's last word
    machine_id, label = env_machine_id(engine.env), os.environ.get(MACHINE_LABEL_ENV) or None
    verdicts = []
    for case in budgeted:
        record = latest.get((case.scenario, case.case_id))
        if record is None:
            continue
        verdicts += judge_case(record, case.budgets, records, races, case.race is not None, machine_id, label,
                               relative=relative, absolute=absolute)
    if verdicts:
        engine.store.append_budgets(verdicts)
    return verdicts
