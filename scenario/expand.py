"""A scenario as cases: every (model, backend, precision, compression, batch size, mode), labelled so that
case ids stay unique and readable, each with the reason it cannot run here if it cannot."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scenario.budgets import budget_entries, case_budgets, resolve_partners
from scenario.cases import Case, ModelSpec, compression_label
from scenario.file_inputs import batch_skip_reasons, reference_batch
from scenario.schema import BackendEntry, CalibrationSpec, ModelEntry
from scenario.skips import skip_reason
from scenario.yaml_lines import format_loc

if TYPE_CHECKING:
    from scenario.load import LoadedScenario
    from scenario.schema import Scenario

# A run of more cases than this is started only when the user confirms it (a typo in a list of batch sizes can
# turn an afternoon into a month); a scenario that expands beyond MAX_EXPANDED is refused outright.
MAX_CASES = 2_000
MAX_EXPANDED = 100_000
# What a case costs besides its warm-up and steady state: a worker's start-up, loading and the reference run.
CASE_OVERHEAD_S = 3.0


class TooManyCases(Exception):
    """A scenario or a selection with more cases than runs unconfirmed; the message gives the count and time."""


def case_count(scenario: Scenario) -> int:
    """How many cases the scenario expands into, counted without expanding it."""
    total = 0
    for model in scenario.models:
        per_backend = (len(model.precisions or scenario.precisions) * len(model.compression or scenario.compression)
                       * len(model.batch_sizes or scenario.batch_sizes) * len(scenario.modes))
        total += per_backend * len(scenario.backends)
    return total


def estimated_seconds(cases: list[Case]) -> float:
    """The least time the cases take: each one's warm-up and steady state plus a worker's fixed costs."""
    return sum(case.measure["warmup_seconds"] + case.measure["min_seconds"] + CASE_OVERHEAD_S for case in cases)


def too_many_cases(cases: list[Case], where: str, confirm_with: str) -> str | None:
    """Why these cases do not run without the user's confirmation, or None when there are few enough."""
    if len(cases) <= MAX_CASES:
        return None
    hours = estimated_seconds(cases) / 3600
    return (f"{where}: {len(cases):,} cases, at least {hours:,.1f} h of measuring; more than {MAX_CASES:,} cases run "
            f"only when confirmed ({confirm_with}), or select fewer with -k")


def _unique_labels(wanted: list[str], alternatives: list[str]) -> list[str]:
    """Keep each label unless it collides; colliding ones take their alternative, then an index."""
    labels = [w if wanted.count(w) == 1 else alt for w, alt in zip(wanted, alternatives, strict=True)]
    return [label if labels.count(label) == 1 else f"{label}_{i}" for i, label in enumerate(labels)]


def model_labels(models: list[ModelEntry]) -> list[str]:
    """Each model's label: as given, else the zoo name or the file's stem; where two collide, a user's file takes
    the folders that tell it apart (det/model.onnx and cls/model.onnx: det_model, cls_model), a zoo model its
    input shape, and only then an index."""
    wanted, alternatives = [], []
    for entry in models:
        base = entry.label or entry.name or Path(entry.path or "model").stem
        wanted.append(base)
        shape = "x".join(map(str, entry.input_shape)) if entry.input_shape else "default"
        alternatives.append(base if entry.label else f"{base}_{shape}")
    for base in {w for w in wanted if wanted.count(w) > 1}:
        files = [i for i, (w, e) in enumerate(zip(wanted, models, strict=True)) if w == base and e.path and not e.label]
        for index, label in zip(files, _by_folders([Path(models[i].path or "") for i in files]), strict=True):
            alternatives[index] = label
    return _unique_labels(wanted, alternatives)


def _by_folders(paths: list[Path]) -> list[str]:
    """Labels for files of one name: the stem after the fewest trailing folders that make them all differ
    (normalised, not resolved: the scenario's own spelling); every folder where none do."""
    folders = [Path(os.path.normpath(path)).parent.parts for path in paths]
    deepest = max((len(parts) for parts in folders), default=0)
    for depth in range(1, deepest + 1):
        tails = ["_".join(parts[-depth:]).strip("/").replace("/", "") for parts in folders]
        if len(set(tails)) == len(tails):
            break
    return [f"{tail}_{path.stem}" if tail else path.stem for tail, path in zip(tails, paths, strict=True)] \
        if deepest else [path.stem for path in paths]


def backend_labels(backends: list[BackendEntry]) -> list[str]:
    wanted, alternatives = [], []
    for entry in backends:
        wanted.append(entry.label or entry.name)
        options = {"threads": entry.threads, **entry.options}
        suffix = "_".join(f"{k}{v}" for k, v in options.items() if v is not None)
        alternatives.append(entry.label or (f"{entry.name}_{suffix}" if suffix else entry.name))
    return _unique_labels(wanted, alternatives)


def expand(loaded: LoadedScenario) -> list[Case]:
    """Every (model, backend, precision, batch size, mode) combination, in file order.

    A combination that cannot run is kept as a case with its ``skip_reason``, never silently dropped: a
    skipped case in the results says what was not measured and why.
    """
    scenario = loaded.scenario
    count = case_count(scenario)
    if count > MAX_EXPANDED:
        raise TooManyCases(f"{loaded.path}: expands into {count:,} cases, over the {MAX_EXPANDED:,} a scenario may "
                           "hold: split it into several files")
    cases = []
    models_labelled = model_labels(scenario.models)
    backends_labelled = backend_labels(scenario.backends)
    for model_index, (model, model_label) in enumerate(zip(scenario.models, models_labelled, strict=True)):
        spec = ModelSpec.from_entry(model, loaded.base_dir)
        measure = scenario.measure_for(model).model_dump()
        race = scenario.race_for(model)
        profile = scenario.profile_for(model)
        calibration = calibration_settings(model.calibration or scenario.calibration, loaded.base_dir)
        budget = {**scenario.accuracy.model_dump(exclude_none=True),
                  **(model.accuracy.model_dump(exclude_none=True) if model.accuracy else {})}
        batch_sizes = model.batch_sizes or scenario.batch_sizes
        batch_skips = batch_skip_reasons(model, loaded.base_dir, batch_sizes)
        batch_of_reference = reference_batch(model, loaded.base_dir)
        for backend, backend_label in zip(scenario.backends, backends_labelled, strict=True):
            options = {"threads": backend.threads, **backend.options}
            combinations = itertools.product(model.precisions or scenario.precisions, model.compression or
                                             scenario.compression, batch_sizes, scenario.modes)
            for precision, compression, batch_size, mode in combinations:
                pruned = "" if compression == "none" else f"-{compression_label(compression)}"
                case_id = f"{model_label}-{precision}{pruned}-b{batch_size}-{backend_label}"
                if mode != "latency":
                    case_id += f"-{mode}"
                case = Case(
                    case_id=case_id, scenario=scenario.name, model=spec, model_label=model_label,
                    backend=backend.name, backend_label=backend_label, backend_options=options,
                    precision=precision, batch_size=batch_size, mode=mode, measure=measure,
                    compression=compression, calibration=calibration if precision == "int8" else {},
                    accuracy_budget=budget,
                    baseline=None if scenario.baseline is None else scenario.baseline.model_dump(),
                    race=race, profile=profile, reference_batch=batch_of_reference,
                    budgets=case_budgets(scenario, model_index, model_label, backend_label, backend.name, precision,
                                         compression, batch_size, mode, loaded.lines),
                )
                try:
                    case.skip_reason = skip_reason(case) or batch_skips.get(batch_size)
                except Exception as error:  # an adapter's check that crashes on these settings: say so, run nothing
                    case.skip_reason = f"cannot tell whether {backend.name} can run this case: {error!r}"
                cases.append(case)
    if unjudged := resolve_partners(cases):
        from scenario.load import ScenarioError

        lines = {format_loc(loc): loaded.lines.line(loc) if loaded.lines else None
                 for loc, _, _ in budget_entries(scenario)}
        raise ScenarioError(loaded.path, [(lines.get(where), f"{where}: its min_speedup / max_slowdown would compare "
                                                           "every case it selects with itself (the configuration it "
                                                           "compares with): select other cases, or name another "
                                                           "against") for where in unjudged])
    return cases


def calibration_settings(spec: CalibrationSpec, base_dir: Path) -> dict[str, Any]:
    """A .npz source is relative to the scenario file, like model paths."""
    source = spec.source
    if source.endswith(".npz"):
        source = str((base_dir / Path(source).expanduser()).resolve())
    return {"samples": spec.samples, "source": source}


def profiled(cases: list[Case]) -> list[Case]:
    """``--profile`` on a front door: every case profiled, with the scenario's (or the model's) settings where it
    has them and the defaults elsewhere."""
    from backends.op_profile import DEFAULT_PROFILE_RUNS

    for case in cases:
        if case.profile is None:
            case.profile = {"runs": DEFAULT_PROFILE_RUNS}
    return cases
