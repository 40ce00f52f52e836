"""Performance budgets in a scenario: which cases each budget holds for, and which other cases judging it needs.

A budget's selection (``select:``) is matched against every case of the expansion; a case carries the budgets that
hold for it (``Case.budgets``, plain JSON for the worker side). A relative budget compares the case with another
configuration of its group (model, batch size, mode): ``against:``, or the group's baseline. That partner must run
in the same session and race with the case, so a selection (``-k``, ``--lf``, a shard never splits a group) pulls
it in: ``partners``. Judging is results.budgets'.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from scenario.cases import Case
from scenario.schema import RELATIVE_LIMITS as RELATIVE
from scenario.schema import BudgetSelect, BudgetSpec, Scenario
from scenario.yaml_lines import LineMap, Loc, format_loc


def budget_entries(scenario: Scenario) -> Iterator[tuple[Loc, BudgetSpec, int | None]]:
    """Every budget with its location in the file and the index of the model it belongs to (None: the scenario's)."""
    for index, spec in enumerate(scenario.budgets):
        yield ("budgets", index), spec, None
    for model_index, model in enumerate(scenario.models):
        for index, spec in enumerate(model.budgets or []):
            yield ("models", model_index, "budgets", index), spec, model_index


def selects(select: BudgetSelect, model: str, backend_label: str, backend: str, precision: str, compression: str,
            batch_size: int, mode: str) -> bool:
    """Whether a budget's selection holds for this configuration (a key left out matches anything)."""
    return ((select.model is None or select.model == model)
            and (select.backend is None or select.backend in (backend_label, backend))
            and (select.precision is None or select.precision == precision)
            and (select.compression is None or select.compression == compression)
            and (select.batch_size is None or select.batch_size == batch_size)
            and (select.mode is None or select.mode == mode))


def case_budgets(scenario: Scenario, model_index: int, model: str, backend_label: str, backend: str,
                 precision: str, compression: str, batch_size: int, mode: str, lines: LineMap | None = None
                 ) -> list[dict[str, Any]]:
    """The budgets that hold for one case, as JSON: {"where", "line", "limits", "against", "machine",
    "cannot_tell"} (``line``: the budget's line in the scenario file, where ``lines`` knows it)."""
    chosen = []
    for loc, spec, owner in budget_entries(scenario):
        if owner not in (None, model_index):
            continue
        if selects(spec.select, model, backend_label, backend, precision, compression, batch_size, mode):
            chosen.append({"where": format_loc(loc), "line": lines.line(loc) if lines else None,
                           "limits": spec.limits(),
                           "against": spec.against.model_dump() if spec.against else None,
                           "machine": spec.machine, "cannot_tell": spec.cannot_tell})
    return chosen


def relative(budget: dict[str, Any]) -> bool:
    return any(name in budget["limits"] for name in RELATIVE)


def same_group(case: Case, other: Case) -> bool:
    return (case.scenario, case.model_label, case.batch_size, case.mode) == (
        other.scenario, other.model_label, other.batch_size, other.mode)


def against_case(case: Case, against: dict[str, Any] | None, cases: list[Case]) -> Case | None:
    """The case a relative budget of ``case`` compares with: ``against`` in its group, else the group's baseline as
    the report resolves it before anything ran (the scenario's named baseline, else its first fp32 dense case)."""
    group = [other for other in cases if same_group(case, other) and other.skip_reason is None]
    if against is not None:
        wanted = against
    elif case.baseline:
        wanted = {"backend": case.baseline["backend"], "precision": case.baseline.get("precision") or "fp32",
                  "compression": "none"}
    else:
        return next((other for other in group if other.precision == "fp32" and other.compression == "none"), None)
    return next((other for other in group if wanted["backend"] in (other.backend_label, other.backend)
                 and other.precision == wanted["precision"]
                 and other.compression == wanted.get("compression", "none")), None)


def partners(selected: list[Case], everything: list[Case]) -> list[Case]:
    """The cases the selected ones' relative budgets compare with that the selection left out, in scenario order."""
    chosen = {id(case) for case in selected}  # by identity: two scenario files of one session may share case ids
    needed: set[int] = set()
    for case in selected:
        for budget in case.budgets:
            if relative(budget) and (other := against_case(case, budget["against"], everything)) is not None:
                needed.add(id(other))
    return [case for case in everything if id(case) in needed - chosen]


def resolve_partners(cases: list[Case]) -> list[str]:
    """Each relative budget's partner fixed as the scenario says it (``against``, else the group's baseline as
    resolved before anything runs), so that judging compares with the configuration planned, never with whichever
    case happens to pass first; a relative limit is taken off the configuration it compares with (``min_speedup``
    selected for every backend holds for all but the baseline), and a budget left without a limit goes. Returns
    the budgets (by ``where``) whose relative limits are left on no case: they would pass silently forever."""
    planned: set[str] = set()
    kept_somewhere: set[str] = set()
    for case in cases:
        budgets = []
        for budget in case.budgets:
            if relative(budget):
                planned.add(budget["where"])
                other = against_case(case, budget["against"], cases)
                if other is case:
                    limits = {name: value for name, value in budget["limits"].items() if name not in RELATIVE}
                    if not limits:
                        continue
                    budget = {**budget, "limits": limits}
                else:
                    kept_somewhere.add(budget["where"])
                    if other is not None:
                        budget = {**budget, "against": {"backend": other.backend_label, "precision": other.precision,
                                                        "compression": other.compression}}
            budgets.append(budget)
        case.budgets = budgets
    return sorted(planned - kept_somewhere)
