"""Second-pass checks of a scenario that parsed: names against the zoo and backend registries, option values
against each adapter, model files and their declared inputs, calibration files, the baseline. Each problem is
(line, message) so that the loader reports them all at once, as ``file:line: field: message``."""

from __future__ import annotations

import itertools
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from backends.registry import backend_names, get_backend
from model_zoo.catalog import CATALOG
from model_zoo.inputs import InputPlan, feed_problem, oversized_input
from model_zoo.limits import gib_limit
from model_zoo.requests import SOURCE_SUFFIXES
from scenario.expand import backend_labels, calibration_settings, model_labels
from scenario.file_inputs import input_plans, unknown_output
from scenario.schema import KEYS_AT, BackendEntry, CalibrationSpec, Scenario
from scenario.yaml_lines import LineMap, Loc, did_you_mean, excerpt, format_loc

# A model larger than this is refused at load time unless the environment raises the limit.
DEFAULT_MAX_MODEL_GIB = 8
MAX_MODEL_ENV = "ACCELBENCH_MAX_MODEL_GIB"

if TYPE_CHECKING:
    from backends.base import Backend


def pydantic_problem(error: dict[str, Any], lines: LineMap) -> tuple[int, str]:
    loc: Loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden":
        key = str(loc[-1])
        context = tuple(part for part in loc[:-1] if isinstance(part, str))
        known = sorted(KEYS_AT.get(context, set()))
        where = format_loc(loc[:-1])
        return lines.line(loc), f"{where + ': ' if where else ''}unknown key {key!r}{did_you_mean(key, known)}"
    if error["type"] == "missing":
        return lines.line(loc[:-1]), f"{format_loc(loc)}: required field is missing"
    message = error["msg"].removeprefix("Value error, ")
    return lines.line(loc), f"{format_loc(loc)}: {message}"


def registry_problems(data: dict[str, Any], lines: LineMap) -> list[tuple[int, str]]:
    """Names checked against the zoo and backend registries, on the raw data so that they are reported
    together with any type errors in the same file."""
    problems = []
    models = data.get("models")
    for index, model in enumerate(models if isinstance(models, list) else []):
        name = model if isinstance(model, str) else model.get("name") if isinstance(model, dict) else None
        if isinstance(name, str) and name not in CATALOG:
            loc: Loc = ("models", index) if isinstance(model, str) else ("models", index, "name")
            problems.append((lines.line(loc), f"{format_loc(loc)}: unknown zoo model {name!r}"
                             f"{did_you_mean(name, list(CATALOG))}"))
        elif isinstance(name, str) and isinstance(model, dict) and isinstance(model.get("input_shape"), list):
            shape = model["input_shape"]
            if all(isinstance(d, int) and d > 0 for d in shape):
                problem = CATALOG[name].shape_problem(tuple(shape))
                if problem:
                    loc = ("models", index, "input_shape")
                    problems.append((lines.line(loc), f"{format_loc(loc)}: {problem}"))
    backends = data.get("backends")
    for index, backend in enumerate(backends if isinstance(backends, list) else []):
        entry = {"name": backend} if isinstance(backend, str) else backend
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        name = entry["name"]
        if name not in backend_names():
            loc = ("backends", index) if isinstance(backend, str) else ("backends", index, "name")
            problems.append((lines.line(loc), f"{format_loc(loc)}: unknown backend {name!r}"
                             f"{did_you_mean(name, backend_names())}"))
            continue
        backend_class = get_backend(name)
        allowed = backend_class.option_names()
        for key, value in entry.items():
            loc = ("backends", index, key)
            if key not in (*allowed, *BackendEntry.model_fields):
                choices = [*allowed, *BackendEntry.model_fields]
                problems.append((lines.line(loc), f"{format_loc(loc)}: unknown option {key!r} for backend "
                                 f"{name}{did_you_mean(str(key), choices)}"))
            elif key in allowed and (problem := option_problem(backend_class, key, value)):
                problems.append((lines.line(loc), f"{format_loc(loc)}: {problem}"))
    return problems


def option_problem(backend_class: type[Backend], key: str, value: Any) -> str | None:
    """The adapter's own check of an option value; a check that trips over a type it did not expect (onnxruntime_cpu
    looks a list up in a dict) still means the value is wrong, and must not become the user's traceback."""
    try:
        return backend_class.option_problem(key, value)
    except Exception:
        return f"{key} cannot be {value!r}"


def override_problems(scenario: Scenario, lines: LineMap) -> list[tuple[int, str]]:
    """Per-model measure overrides are complete only once merged with the scenario's settings, so the
    cross-field checks (max_seconds ≥ min_seconds) run on the merge, reported at the override's line."""
    problems = []
    for index, model in enumerate(scenario.models):
        try:
            scenario.measure_for(model)
        except ValidationError as error:
            loc: Loc = ("models", index, "measure")
            for e in error.errors():
                message = e["msg"].removeprefix("Value error, ")
                problems.append((lines.line(loc + tuple(e["loc"])), f"{format_loc(loc + tuple(e['loc']))}: {message}"))
    return problems


def calibration_problems(scenario: Scenario, lines: LineMap, base_dir: Path) -> list[tuple[int, str]]:
    """A calibration file that is not there is the scenario's mistake: say so at its line, before any build."""
    where: list[tuple[Loc, CalibrationSpec]] = [(("calibration", "source"), scenario.calibration)]
    where += [(("models", i, "calibration", "source"), m.calibration) for i, m in enumerate(scenario.models)
              if m.calibration is not None]
    problems = []
    for loc, spec in where:
        if spec.source.endswith(".npz"):
            if problem := path_problem(spec.source, base_dir):
                problems.append((lines.line(loc), f"{format_loc(loc)}: {problem}"))
                continue
            file = Path(calibration_settings(spec, base_dir)["source"])
            if problem := _data_file_problem(file, "calibration file"):
                problems.append((lines.line(loc), f"{format_loc(loc)}: {problem}"))
    for index, model in enumerate(scenario.models):  # a model's data file (data: inputs.npz), the same way
        if model.data is not None and model.data.lower().endswith(".npz"):
            loc = ("models", index, "data")
            problem = path_problem(model.data, base_dir) or _data_file_problem(
                (base_dir / Path(model.data).expanduser()).resolve(), "data file")
            if problem:
                problems.append((lines.line(loc), f"{format_loc(loc)}: {problem}"))
    return problems


def model_path_problems(scenario: Scenario, lines: LineMap, base_dir: Path) -> list[tuple[int, str]]:
    """A model file must exist, be readable and be of a kind accelbench reads, and the scenario's description of
    its inputs must fit it: all said at the path's line before anything runs, not as a failed case later."""
    problems = []
    for index, model in enumerate(scenario.models):
        if model.path is None:
            continue
        loc: Loc = ("models", index, "path")
        problem = model_path_problem(model.path, base_dir)
        plans = None
        if problem is None:
            plans = input_plans(model, base_dir)
            if isinstance(plans, str):
                problem = plans
                loc = ("models", index, "inputs") if model.inputs is not None else loc
        if problem:
            problems.append((lines.line(loc), f"{format_loc(loc)}: {problem}"))
        elif isinstance(plans, list):
            problems += _feed_problems(scenario, index, plans, lines)
        if problem is None and (problem := unknown_output(model, base_dir)):
            loc = ("models", index, "outputs")
            problems.append((lines.line(loc), f"{format_loc(loc)}: {problem}"))
    return problems


def zoo_feed_problems(scenario: Scenario, lines: LineMap) -> list[tuple[int, str]]:
    """A zoo model's input at its largest batch, from the catalog's dtype and the shape asked for."""
    problems = []
    for index, model in enumerate(scenario.models):
        zoo = CATALOG.get(model.name or "")
        if zoo is None or model.path is not None:
            continue
        shape = tuple(model.input_shape or zoo.input_shape)
        if zoo.shape_problem(shape):  # a shape the model cannot take is said once, by registry_problems
            continue
        plan = InputPlan("input", zoo.input_dtype, 0, shape, *(zoo.input_range or (0.0, 1.0)))
        problems += _feed_problems(scenario, index, [plan], lines)
    return problems


def _feed_problems(scenario: Scenario, index: int, plans: list[InputPlan], lines: LineMap) -> list[tuple[int, str]]:
    """An input whose data for one call, at the model's largest batch size, is over the limit on one feed: said at
    the line that makes it so. The input's own shape where one sample is already too big (its description, the
    model-level input_shape, or the model's path where the file fixes the shape); else the batch sizes."""
    model = scenario.models[index]
    batch = max(model.batch_sizes or scenario.batch_sizes)
    problem = feed_problem(plans, batch)
    if problem is None:
        return []
    loc: Loc
    if feed_problem(plans, 1) is not None:
        name = getattr(oversized_input(plans, 1), "name", "")
        described = (model.inputs or {}).get(name)
        if described is not None and described.shape is not None:
            loc = ("models", index, "inputs", name, "shape")
        elif model.input_shape is not None:
            loc = ("models", index, "input_shape")
        else:
            loc = ("models", index, "path" if model.path is not None else "name")
    else:
        loc = ("models", index, "batch_sizes") if model.batch_sizes else ("batch_sizes",)
    return [(lines.line(loc), f"{format_loc(loc)}: {problem}")]


def model_path_problem(text: str, base_dir: Path) -> str | None:
    """Why ``text`` (relative to ``base_dir``) cannot be a model: an unusable path, or a file that is no model (a
    FIFO, a device, the wrong kind, over the size limit). The one check of a scenario's models and an A/B side's
    ``model=`` (scenario.sides), so that neither reaches a build that would hang on it or trace back."""
    return path_problem(text, base_dir) or _model_file_problem(base_dir / Path(text).expanduser())


def _model_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a model, looking only at the file system (never opening a FIFO or a device)."""
    mode = _mode(path, f"no such model file or folder: {path}")
    if isinstance(mode, str):
        return mode
    if stat.S_ISDIR(mode):
        if not (path / "saved_model.pb").is_file():
            return f"{path} is a folder but not a TensorFlow SavedModel (no saved_model.pb inside)"
        files = _folder_files(path)
        if isinstance(files, str):
            return files
    elif path.suffix.lower() not in SOURCE_SUFFIXES:
        return (f"{path}: accelbench cannot read this kind of file; expected a .onnx, .tflite or .keras file or a "
                "SavedModel folder")
    else:
        files = [path]
    for file in files:
        if problem := _data_file_problem(file, "model file"):
            return problem
    total = sum(file.stat().st_size for file in files)
    limit = max_model_bytes()
    if total > limit:
        return (f"{path} is {total / 2**30:.1f} GiB, over the {limit / 2**30:g} GiB limit on a model "
                f"({MAX_MODEL_ENV}=<GiB> raises it)")
    return None


def max_model_bytes() -> int:
    """The largest model accelbench reads: a bound on what a mistyped path (a disk image, a dataset) can cost."""
    return gib_limit(MAX_MODEL_ENV, DEFAULT_MAX_MODEL_GIB)


def _folder_files(folder: Path) -> list[Path] | str:
    """Every entry of a SavedModel folder that is not a folder (each then checked like a model file), or why one
    cannot even be looked at."""
    try:
        return folder_entries(folder)
    except TooManyEntries as error:
        return str(error)
    except OSError as error:
        return f"cannot read {error.filename or folder}: {error.strerror or error}"


# A SavedModel is a handful of files; a folder of more is not one (a link to / would walk the whole disk)
MAX_MODEL_FILES = 10_000


class TooManyEntries(Exception):
    """A model folder past MAX_MODEL_FILES entries."""


def folder_entries(folder: Path) -> list[Path]:
    """Every entry below `folder` that is not a folder, through symlinked folders too (a SavedModel's
    `variables -> /elsewhere` holds its weights; rglob would not look inside), each real folder once. A stack, not
    os.walk: on Python 3.11 that recurses, and a folder nested a thousand deep was a RecursionError. At most
    MAX_MODEL_FILES entries are looked at (TooManyEntries), folders included."""
    found: list[Path] = []
    seen: set[str] = set()
    visited = 0
    pending = [folder]
    while pending:
        root = pending.pop()
        real = os.path.realpath(root)
        if real in seen:  # a symlink loop, or two links to one folder
            continue
        seen.add(real)
        with os.scandir(root) as scan:
            entries = list(scan)
        visited += len(entries)
        if visited > MAX_MODEL_FILES:
            raise TooManyEntries(f"{folder} holds more than {MAX_MODEL_FILES:,} files and folders: not a model")
        for entry in entries:
            path = Path(root) / entry.name
            if entry.is_dir(follow_symlinks=True):
                pending.append(path)
            else:  # files, and dangling links (the checks name them)
                found.append(path)
    return sorted(found)


def _mode(path: Path, missing: str) -> int | str:
    """The file's mode (symlinks followed), or the message to give when it cannot be looked at."""
    try:
        return path.stat().st_mode
    except FileNotFoundError:
        return missing
    except OSError as error:
        return f"cannot read {path}: {error.strerror or error}"


def _data_file_problem(path: Path, what: str) -> str | None:
    """Why a data file cannot be read, looking only at the file system (a FIFO would block the reader forever)."""
    mode = _mode(path, f"no such {what} {path}")
    if isinstance(mode, str):
        return mode
    if not stat.S_ISREG(mode):
        return f"{path} is not a regular file"
    if not os.access(path, os.R_OK):
        return f"cannot read {path}: permission denied"
    return None


def path_problem(text: str, base_dir: Path) -> str | None:
    """Why the system refuses a path outright (a NUL byte, a name too long, an unknown ~user), or None.

    Expansion resolves these paths and the zoo looks at them, where such a path raises; so it is the scenario's
    mistake, reported at its line when the file loads."""
    try:
        (base_dir / Path(text).expanduser()).resolve().is_dir()
    except (OSError, ValueError, RuntimeError) as error:
        return f"unusable path {excerpt(text)}: {getattr(error, 'strerror', None) or error}"
    return None


def ab_problems(scenario: Scenario, lines: LineMap, base_dir: Path) -> list[tuple[int, str]]:
    """Each ``ab:`` side read as `accelbench ab` reads it (scenario.sides: its files exist and are what they claim,
    its settings have their types and bounds) when the scenario loads, so that a mistake is an error at its line,
    not a refusal of every case, a hang or a traceback after the run has started."""
    from scenario.sides import SideError, check_options, side_from_mapping  # scenario.sides checks its model files
    #                                                                        with this module

    if scenario.ab is None:
        return []
    problems = []
    for side in ("base", "new"):
        try:
            check_options(side_from_mapping(side, getattr(scenario.ab, side), base_dir),
                          (backend.name for backend in scenario.backends))
        except SideError as error:
            loc: Loc = ("ab", side, *error.setting)
            problems.append((lines.line(loc), f"{format_loc(loc)}: {error.problem}"))
    return problems


def baseline_problems(scenario: Scenario, data: dict[str, Any], lines: LineMap) -> list[tuple[int, str]]:
    """A baseline the scenario names must be one of its backends (unnamed, it is each model's first fp32 case that
    ran, which the report names)."""
    if scenario.baseline is None or not isinstance(data.get("baseline"), dict):
        return []
    wanted = scenario.baseline.backend
    known = [*backend_labels(scenario.backends), *(b.name for b in scenario.backends)]
    if wanted in known:
        return []
    loc: Loc = ("baseline", "backend")
    return [(lines.line(loc), f"{format_loc(loc)}: {wanted!r} is not a backend of this scenario "
             f"(its backends: {', '.join(dict.fromkeys(known))})")]




def budget_problems(scenario: Scenario, lines: LineMap) -> list[tuple[int, str]]:
    """Each budget's backends must be the scenario's and its selection must match some case: a budget that holds
    for nothing would pass silently forever."""
    from scenario.budgets import budget_entries

    labels = backend_labels(scenario.backends)
    known = list(dict.fromkeys([*labels, *(b.name for b in scenario.backends)]))
    models = model_labels(scenario.models)
    problems = []
    if scenario.ab is not None:
        for loc, _, _ in budget_entries(scenario):
            problems.append((lines.line(loc), f"{format_loc(loc)}: budgets judge a run's cases; a scenario with ab: "
                                              "compares two sides, and its verdict is the comparison's own"))
        return problems
    for loc, spec, model_index in budget_entries(scenario):
        before = len(problems)
        for part, wanted in (("select", spec.select.backend), ("against", spec.against and spec.against.backend)):
            if wanted is not None and wanted not in known:
                where: Loc = (*loc, part, "backend")
                problems.append((lines.line(where), f"{format_loc(where)}: {wanted!r} is not a backend of this "
                                                    f"scenario (its backends: {', '.join(known)})"))
        chosen = spec.select.model
        if chosen is not None and model_index is not None:
            where = (*loc, "select", "model")
            problems.append((lines.line(where), f"{format_loc(where)}: a model's own budgets hold for its cases; "
                                                "select by model in the scenario's budgets"))
        elif chosen is not None and chosen not in models:
            where = (*loc, "select", "model")
            problems.append((lines.line(where), f"{format_loc(where)}: {chosen!r} is not a model of this scenario"
                                                f"{did_you_mean(chosen, models)}"))
        elif len(problems) == before and not _selects_any(scenario, spec, model_index, models, labels):
            where = (*loc, "select")
            problems.append((lines.line(where if "select" in spec.model_fields_set else loc),
                             f"{format_loc(loc)}: its select matches no case of this scenario"))
        problems += _against_problems(scenario, loc, spec, lines)
    return problems


def _against_problems(scenario: Scenario, loc: Loc, spec: Any, lines: LineMap) -> list[tuple[int, str]]:
    """An ``against`` at a precision or compression the scenario never runs (it would say "cannot tell" after the
    whole run), and relative limits on models whose race is off (a same-sitting ratio never exists for them)."""
    problems = []
    if spec.against is not None:
        precisions = {*scenario.precisions, *(p for m in scenario.models for p in m.precisions or [])}
        compressions = {*scenario.compression, *(c for m in scenario.models for c in m.compression or [])}
        for key, value, known in (("precision", spec.against.precision, precisions),
                                  ("compression", spec.against.compression, compressions)):
            if value not in known:
                where = (*loc, "against", key)
                problems.append((lines.line(where), f"{format_loc(where)}: {value!r} is not a {key} of this scenario "
                                                    f"(its {key}s: {', '.join(sorted(known))})"))
    if spec.min_speedup is not None or spec.max_slowdown is not None:
        chosen = [m for m, label in zip(scenario.models, model_labels(scenario.models), strict=True)
                  if spec.select.model in (None, label) and (loc[0] != "models" or scenario.models[loc[1]] is m)]
        if chosen and all(scenario.race_for(model) is None for model in chosen):
            problems.append((lines.line(loc), f"{format_loc(loc)}: min_speedup and max_slowdown are judged on a race, "
                                              "and the race of the models it selects is off (race: false): it could "
                                              "only ever say cannot tell"))
    return problems


def _selects_any(scenario: Scenario, spec: Any, model_index: int | None, models: list[str], labels: list[str]) -> bool:
    from scenario.budgets import selects

    for index, model in enumerate(scenario.models):
        if model_index not in (None, index):
            continue
        combos = itertools.product(zip(labels, scenario.backends, strict=True), model.precisions or scenario.precisions,
                                   model.compression or scenario.compression, model.batch_sizes or scenario.batch_sizes,
                                   scenario.modes)
        if any(selects(spec.select, models[index], label, backend.name, precision, compression, batch, mode)
               for (label, backend), precision, compression, batch, mode in combos):
            return True
    return False
