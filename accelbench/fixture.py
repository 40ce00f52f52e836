"""The ``accelbench`` pytest fixture: measure a model, or compare two configurations of it in one sitting, from a
Python test function, with the isolation, protocol and records of scenario cases.

``compare`` measures both configurations as cases and then races them (harness.race): its ratio and interval are
paired rounds of the two in one sitting, never two p50s measured apart (the sequential comparison whose 5-23 %
drift on shared machines the race removes). Every record goes to the pytest session's run folder, beside the
scenario cases', so the session's summary table and HTML report show them. Budgets given to either call are judged
as a scenario's are (results.budgets): a miss fails the test with the numbers.
"""

from __future__ import annotations

import math
import re
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from results.budgets import BudgetVerdict
from results.race_record import RaceRecord
from results.record import Record
from scenario.cases import Case

SIDE_KEYS = ("backend", "precision", "compression", "label")  # a side's keys besides backend options


@dataclass
class Comparison:
    """``new`` against ``base``, raced in one sitting. ``ratio`` is new's latency over base's (0.6: new takes 60 %
    of base's time), the Hodges-Lehmann estimate of the paired rounds, with its exact 95 % interval
    [``ratio_low``, ``ratio_high``]; where the race could not pair them, ``ratio`` is None and the interval is
    (0, ∞): nothing can be told."""

    base: Record
    new: Record
    race: RaceRecord
    ratio: float | None
    ratio_low: float
    ratio_high: float
    rounds: int
    verdict: str  # faster / slower / unchanged / cannot tell, as `accelbench ab` judges new against base
    budgets: list[BudgetVerdict] = field(default_factory=list)

    @property
    def speedup(self) -> float | None:
        """base's latency over new's: 1.6 = new is 1.6× faster."""
        return None if self.ratio is None else 1 / self.ratio

    @property
    def speedup_low(self) -> float:
        return 1 / self.ratio_high if self.ratio_high > 0 else 0.0

    @property
    def speedup_high(self) -> float:
        return 1 / self.ratio_low if self.ratio_low > 0 else math.inf

    def __str__(self) -> str:
        if self.ratio is None:
            return f"{self.new.case_id} / {self.base.case_id}: cannot tell ({self.race.reason or 'not paired'})"
        return (f"{self.new.case_id} / {self.base.case_id}: {self.ratio:.3f} (95 % CI {self.ratio_low:.3f}–"
                f"{self.ratio_high:.3f}, {self.rounds} paired rounds in one sitting): {self.verdict}")


class Accelbench:
    """What the fixture hands a test: ``measure``, ``compare`` and ``measure_callable``. ``engine``: the session's
    engine (one run folder per pytest session); ``test_name`` (the test's node id) names the cases' scenario, so that
    a test's records are found by it."""

    def __init__(self, engine: Callable[[], Any], test_name: str, base_dir: Path, used_ids: set[str]) -> None:
        self._engine, self.base_dir, self._used = engine, base_dir, used_ids
        self._compares = 0
        # the test's node id: two modules' tests of one name (or a rerun) never share a group
        self.scenario = _slug(test_name) or "test"

    # -- the two calls -----------------------------------------------------------------------------------------
    def measure(self, model: str | Path | dict[str, Any], *, backend: str = "onnxruntime_cpu",
                precision: str = "fp32", compression: str | dict[str, Any] = "none", batch_size: int = 1,
                mode: str = "latency", measure: dict[str, Any] | None = None,
                budgets: dict[str, Any] | None = None, label: str | None = None, **options: Any) -> Record:
        """One configuration of ``model`` (a zoo name, a model file, or a scenario's model entry as a dict),
        measured as a scenario case is; the record is returned and lands in the session's run folder. ``budgets``:
        absolute limits (``max_p50_ms``, ``max_p99_ms``, ``min_throughput_ips``, ``max_peak_rss_mb``,
        ``max_model_size_mb``, ``machine``), judged as a scenario's: a miss fails the test with the numbers."""
        case = self._case(model, {"backend": backend, "precision": precision, "compression": compression,
                                  "label": label, **options}, batch_size, mode, measure, None)
        if budgets:
            case.budgets = [self._budget(budgets, relative_allowed=False)]
        engine = self._engine()
        record = self._run(engine, case)
        if case.budgets:
            from harness.budgets import judge_budgets

            self._settle(judge_budgets(engine, [case], relative=False))
        return record

    def compare(self, model: str | Path | dict[str, Any], *, base: dict[str, Any], new: dict[str, Any],
                backend: str = "onnxruntime_cpu", precision: str = "fp32", batch_size: int = 1, mode: str = "latency",
                measure: dict[str, Any] | None = None, race: dict[str, Any] | None = None,
                budgets: dict[str, Any] | None = None) -> Comparison:
        """``new`` against ``base`` (each a dict of ``backend``, ``precision``, ``compression``, ``label`` and backend
        options such as ``threads``, over the shared ``backend`` and ``precision``): both measured as cases, then
        raced in one sitting (``race``: a scenario's race settings). ``budgets``: limits on new, relative ones
        (``min_speedup``, ``max_slowdown``) against base; a miss fails the test with the numbers."""
        from harness.race import GroupRace, RaceSettings
        from results.race_record import entry_name
        from scenario.schema import RaceSpec

        unknown = sorted({*base, *new} - {*SIDE_KEYS, *_backend_option_names(base, new, backend)})
        if unknown:
            raise TypeError(f"compare(): unknown side key(s) {', '.join(unknown)}: a side takes "
                            f"{', '.join(SIDE_KEYS)} and its backend's options")
        settings = {"gross_factor": 1000, **(race or {})}  # both race to the end: a ratio for each
        try:
            race_dict = RaceSpec.model_validate(settings).model_dump()
        except ValidationError as error:
            pytest.fail(f"compare(race={race!r}): {_problems(error)}", pytrace=False)
        self._compares += 1  # each comparison its own group (scenario name), so that its report pairs only its two
        scenario = self.scenario if self._compares == 1 else f"{self.scenario}-{self._compares}"
        sides = []
        for name, side in (("base", base), ("new", new)):
            spec = {"backend": backend, "precision": precision, "label": name, **side}
            sides.append(self._case(model, spec, batch_size, mode, measure, race_dict, scenario))
        base_case, new_case = sides
        for case in sides:  # the report divides by base, whatever its precision (not the group's first fp32 case)
            case.baseline = {"backend": base_case.backend_label, "precision": base_case.precision}
        if budgets:
            new_case.budgets = [self._budget(budgets, relative_allowed=True)]
        engine = self._engine()
        engine.prepare_artifacts(sides)
        base_record, new_record = self._run(engine, base_case), self._run(engine, new_case)
        artifacts = {case.case_id: engine.artifact_for(case)[0] for case in sides}
        record = GroupRace([base_record, new_record], base_record, {case.case_id: case for case in sides}, artifacts,
                           RaceSettings.from_case(base_case) or RaceSettings(), engine.store.logs_dir,
                           engine.env["env_id"]).run()
        engine.store.append_race(record)
        entry = record.entry(new_record.case_id)
        pair = entry.vs_baseline if entry is not None else None
        if pair is None:  # new left the race (a gross_factor of the caller's): the rounds both raced, if two or more
            from results.race_record import pair_figures

            pair = pair_figures([r.slices for r in record.rounds], entry_name(new_record), entry_name(base_record),
                                record.threshold, record.min_effect, record.alpha)
        comparison = Comparison(base_record, new_record, record, pair.ratio if pair else None,
                                pair.ci_low if pair else 0.0, pair.ci_high if pair else math.inf,
                                pair.rounds if pair else 0, pair.verdict if pair else "cannot tell")
        if new_case.budgets:
            from harness.budgets import judge_budgets

            comparison.budgets = judge_budgets(engine, [new_case], races=[record])  # this comparison's race
            self._settle(comparison.budgets)
        return comparison

    def measure_callable(self, target: str | Callable[..., Any], *, batch_size: int = 1, mode: str = "latency",
                         measure: dict[str, Any] | None = None, budgets: dict[str, Any] | None = None,
                         label: str | None = None) -> Record:
        """A callable of your own: pre-processing, a session and post-processing, say. ``target`` is a factory
        that sets up (with the batch size, where it takes an argument) and returns the zero-argument call to time.
        Named as ``"package.module:function"`` it runs in a worker process as a case does; a callable object (a
        lambda, a closure) runs in this process, and its record says "not isolated". ``budgets``: absolute limits,
        as ``measure``'s."""
        from backends.python_callable import IN_PROCESS, IN_PROCESS_PREFIX
        from scenario.cases import ModelSpec
        from scenario.schema import MeasureSpec

        in_process = not isinstance(target, str)
        if in_process:
            name = getattr(target, "__name__", type(target).__name__)
            key = f"{IN_PROCESS_PREFIX}{self.scenario}/{name}/{id(target)}"
            IN_PROCESS[key] = target  # type: ignore[assignment]
            given = key
        else:
            name, given = str(target).rpartition(":")[2] or str(target), str(target)
        label = _slug(label or name) or "callable"
        backend_label = "not-isolated" if in_process else "python_callable"
        folders = [str(self.base_dir), *(p for p in sys.path if p and Path(p).is_dir())]
        settings = MeasureSpec.model_validate(measure or {}).model_dump()
        case = Case(case_id=f"{label}-b{batch_size}-{backend_label}" + ("" if mode == "latency" else f"-{mode}"),
                    scenario=self.scenario, model=ModelSpec(), model_label=label, backend="python_callable",
                    backend_label=backend_label, backend_options={"threads": None, "target": given,
                                                                  "python_path": folders},
                    precision="fp32", batch_size=batch_size, mode=mode, measure=settings)
        self._unique(case)
        if budgets:
            case.budgets = [self._budget(budgets, relative_allowed=False)]
        engine = self._engine()
        try:
            record: Record = engine.run_callable(case, in_process=in_process)
        finally:
            IN_PROCESS.pop(given, None)
        if record.status != "passed":
            pytest.fail(f"{case.case_id}: {record.status.upper()}: {record.reason}", pytrace=False)
        if case.budgets:
            from harness.budgets import judge_budgets

            self._settle(judge_budgets(engine, [case], relative=False))
        return record

    # -- how -----------------------------------------------------------------------------------------------------
    def _unique(self, case: Case) -> None:
        """A second call with the same settings gets its own case id, so that each call has its own record."""
        stem, number = case.case_id, 1
        while case.case_id in self._used:
            number += 1
            case.case_id = f"{stem}-{number}"
        self._used.add(case.case_id)

    def _case(self, model: str | Path | dict[str, Any], side: dict[str, Any], batch_size: int, mode: str,
              measure: dict[str, Any] | None, race: dict[str, Any] | None, scenario: str | None = None) -> Case:
        """One case, expanded from a one-case scenario so that it is checked and built exactly as a file's."""
        from scenario.load import expand, load_scenario_data

        side = dict(side)
        backend_entry = {"name": side.pop("backend"), **{k: v for k, v in side.items()
                                                         if k not in SIDE_KEYS and v is not None}}
        if side.get("label"):
            backend_entry["label"] = side["label"]
        data = {"name": scenario or self.scenario, "models": [_model_entry(model)], "backends": [backend_entry],
                "precisions": [side.get("precision") or "fp32"], "compression": [side.get("compression") or "none"],
                "batch_sizes": [batch_size], "mode": mode, "measure": measure or {}, "race": race or False}
        from scenario.load import ScenarioError

        try:
            [case] = expand(load_scenario_data(data, self.base_dir, name=f"<accelbench fixture in {self.scenario}>"))
        except ScenarioError as error:  # a missing file, an unknown backend or option: one line, no traceback
            pytest.fail(str(error), pytrace=False)
        self._unique(case)
        return case

    def _budget(self, given: dict[str, Any], relative_allowed: bool) -> dict[str, Any]:
        from scenario.schema import RELATIVE_LIMITS, BudgetSpec

        try:
            spec = BudgetSpec.model_validate(given)
        except ValidationError as error:
            pytest.fail(f"budgets={given!r}: {_problems(error)}", pytrace=False)
        if spec.against is not None or "select" in spec.model_fields_set:
            pytest.fail(f"budgets={given!r}: these hold for this call's configuration: no select or against "
                        "(compare's relative limits are against base)", pytrace=False)
        if not relative_allowed and any(name in spec.limits() for name in RELATIVE_LIMITS):
            pytest.fail(f"budgets={given!r}: min_speedup and max_slowdown need a same-sitting comparison: use "
                        "compare()", pytrace=False)
        return {"where": "budgets", "line": None, "limits": spec.limits(), "against": None, "machine": spec.machine,
                "cannot_tell": spec.cannot_tell}

    def _run(self, engine: Any, case: Case) -> Record:
        engine.prepare_artifacts([case])
        record: Record = engine.run_case(case)
        if record.status == "skipped":
            pytest.skip(f"{case.case_id}: {record.reason}")
        if record.status != "passed":
            pytest.fail(f"{case.case_id}: {record.status.upper()}: {record.reason}", pytrace=False)
        return record

    @staticmethod
    def _settle(verdicts: list[BudgetVerdict]) -> None:
        """A miss fails the test, an undecided budget skips it (or fails it, where it says cannot_tell: fail),
        a budget tied to another machine warns: each with its numbers."""
        for verdict in verdicts:
            if verdict.status == "other machine":
                warnings.warn(pytest.PytestWarning(f"accelbench budget of {verdict.case_id}: {verdict.message}"),
                              stacklevel=3)
        if failing := [f"{v.case_id}: {v.message}" for v in verdicts if v.fails]:
            pytest.fail(f"BUDGET MISSED: {'; '.join(failing)}", pytrace=False)
        if undecided := [f"{v.case_id}: {v.message}" for v in verdicts if v.status in ("cannot tell", "not judged")]:
            pytest.skip("; ".join(undecided))


def _slug(text: str) -> str:
    """A name fit for a scenario or a case id: what is not a letter, digit, ``_``, ``.`` or ``-`` becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _problems(error: ValidationError) -> str:
    """pydantic's errors in one line: each key path and what is wrong there."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg'].removeprefix('Value error, ')}"
                     for e in error.errors())


def _model_entry(model: str | Path | dict[str, Any]) -> dict[str, Any]:
    """A scenario's model entry: as given (a dict), a zoo model by name, or a model file by path."""
    from model_zoo.catalog import CATALOG

    if isinstance(model, dict):
        return dict(model)
    if isinstance(model, str) and model in CATALOG:
        return {"name": model}
    return {"path": str(Path(model).expanduser().resolve())}


def _backend_option_names(base: dict[str, Any], new: dict[str, Any], backend: str) -> set[str]:
    """The options the sides' backends take (checked again, with a "did you mean", when the case is expanded)."""
    from backends.registry import find_backend

    names: set[str] = {"threads"}
    for side in (base, new):
        found = find_backend(side.get("backend", backend))
        if found is not None:
            names |= set(found.option_names())
    return names
