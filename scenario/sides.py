"""The two sides of an A/B comparison: what differs between them is what the user is deciding about.

A side is a few ``key=value`` settings laid over every case of the scenario:

- ``python=PATH``: the interpreter that runs the side's workers: another virtualenv's (``/opt/ort132/bin/python``)
  for a library upgrade. It needs the backend's runtime, numpy and psutil; accelbench's own code comes from this
  checkout (PYTHONPATH), so that only the libraries differ.
- ``model=PATH``: a model file in place of the case's model (``model_v2.onnx`` against ``model_v1.onnx``).
- ``artifacts=PATH``: a manifest (artifacts.json, as `accelbench freeze` writes it: case id → model file, with each
  file's sha256) whose files the side runs instead of what the zoo builds now: the model files of an earlier,
  known-good state. A file changed since the freeze is refused (scenario.frozen).
- any other key is a backend option (``threads=4``, ``xnnpack=false``, ``graph_optimization=basic``), checked
  against the backend like a scenario's options.

On the command line a side is the settings joined by commas (``--new python=/opt/ort132/bin/python,threads=2``);
in a scenario's ``ab:`` block, a mapping (``new: {python: ..., options: {threads: 2}}`` or flat keys). Values are
read as YAML scalars (``false``, ``2``, ``basic``). An empty side is the scenario as written, on this interpreter.

A side is checked whole when it is parsed, with the scenario loader's own checks (a model file is a regular file of a
kind accelbench reads, under the size limit; threads within scenario.defaults.MAX_THREADS), so that a bad side is
one line before any process starts, never a hang on a FIFO, a traceback or a "broken" verdict for an input error.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from backends.registry import get_backend
from scenario.cases import Case, ModelSpec
from scenario.checks import model_path_problem, option_problem, path_problem
from scenario.defaults import MAX_THREADS
from scenario.frozen import FrozenError, Manifest, checked_model, read_manifest
from scenario.yaml_lines import LINE_BREAKS, did_you_mean, excerpt

SIDE_KEYS = ("python", "model", "artifacts")


class SideError(ValueError):
    """A side that cannot be used; the message says which and why, on one line. ``setting``: where the fault is in
    the side's mapping (("model",), ("options", "threads"); () for the side as a whole) and ``problem`` the message
    without the side's name, so that a scenario's loader can give them at the setting's line."""

    def __init__(self, side: str, problem: str, setting: tuple[str, ...] = ()) -> None:
        problem = problem.translate(LINE_BREAKS)  # a path may hold a newline; the message stays one line
        self.problem, self.setting = problem, setting
        self.detail = f"{'.'.join(setting)}: {problem}" if setting else problem  # the message without the side
        super().__init__(f"{side} side: {self.detail}")


@dataclass(frozen=True)
class Side:
    name: str  # "base" or "new"
    python: str | None = None
    model: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    artifacts: str | None = None  # a manifest of model files by case id

    @property
    def interpreter(self) -> str:
        return self.python or sys.executable

    def spec(self) -> dict[str, Any]:
        return {"python": self.python, "model": self.model, "options": dict(self.options),
                "artifacts": self.artifacts}

    def artifact_for(self, case_id: str) -> tuple[str | None, str | None]:
        """(model file, None) from this side's manifest once its files are checked as frozen (scenario.frozen), or
        (None, why not: one line naming the file, which the comparison puts after the side's name); (None, None)
        without a manifest."""
        if self.artifacts is None:
            return None, None
        try:
            manifest = _manifest(self.artifacts)
        except FrozenError as error:  # it read when the side was parsed: replaced since
            return None, f"artifacts={self.artifacts}: {error}"
        return checked_model(manifest, case_id)

    def describe(self) -> str:
        """The side in the words of its settings, for tables: "python=/opt/ort/bin/python, threads=2"."""
        parts = [f"python={self.python}"] if self.python else []
        parts += [f"model={self.model}"] if self.model else []
        parts += [f"artifacts={self.artifacts}"] if self.artifacts else []
        parts += [f"{key}={value}" for key, value in self.options.items()]
        return ", ".join(parts) or "as the scenario says"

    def apply(self, case: Case) -> Case:
        """The case as this side runs it; options the backend does not know are a SideError."""
        backend = get_backend(case.backend)
        known = ("threads", *backend.option_names())
        for key, value in self.options.items():
            if key == "threads" and (problem := threads_problem(value)):
                raise SideError(self.name, problem, ("threads",))
            if key not in known:
                raise SideError(self.name, f"{case.backend} has no option {_shown(key)} (it takes: "
                                f"{', '.join(known)})")
            if problem := option_problem(backend, key, value):
                raise SideError(self.name, problem, (key,))
        model = case.model
        if self.model:
            model = ModelSpec(zoo=None, path=self.model, input_shape=case.model.input_shape, inputs=case.model.inputs,
                              data=case.model.data, class_outputs=case.model.class_outputs)
        return replace(case, model=model, backend_options={**case.backend_options, **self.options})


def check_options(side: Side, backends: Iterable[str]) -> None:
    """SideError for an option that none of the scenario's backends takes: a typo (``thread=2``) is an input error,
    said before anything runs, not a refusal of every case that a gate would read as nothing to fail. An option
    that some backend takes stays, and the cases of the others are refused with the reason, as before."""
    names = list(dict.fromkeys(backends))
    known = list(dict.fromkeys(["threads", *(option for name in names for option in get_backend(name).option_names())]))
    for key in side.options:
        if key not in known:
            raise SideError(side.name, f"no backend of the scenario ({', '.join(names)}) has an option {_shown(key)}"
                                       f"{did_you_mean(str(key), known)}", (str(key),))


def side_from_mapping(name: str, values: Any, base_dir: Path) -> Side:
    """A side from a mapping: ``python``, ``model`` and ``artifacts`` (relative paths relative to ``base_dir``),
    ``options`` and any other key as a backend option. Every file and every bound is checked here, as a scenario's
    loader checks its own (scenario.checks), so that a bad side is one SideError before anything runs, whatever the
    mapping holds (it comes from a hand-written YAML block)."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise SideError(name, f"a side is a mapping of settings (python, model, artifacts, options or a backend "
                              f"option such as threads), not {_shown(values)}")
    values = dict(values)
    options = values.pop("options", None)
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise SideError(name, f"a mapping of backend options (threads: 2), not {_shown(options)}", ("options",))
    python, model, artifacts = values.pop("python", None), values.pop("model", None), values.pop("artifacts", None)
    for where, settings in (((), values), (("options",), options)):
        for key, value in settings.items():
            if not isinstance(key, str) or not key.strip():
                raise SideError(name, f"a backend option is named by a word (threads, xnnpack), not {_shown(key)}",
                                where)
            if key == "threads" and (problem := threads_problem(value)):
                raise SideError(name, problem, (*where, key))
    options = {**options, **values}
    if python is not None:
        python = _existing(name, "python", python, base_dir)
        if not os.access(python, os.X_OK) or Path(python).is_dir():
            raise SideError(name, f"{python} is not an executable interpreter", ("python",))
    if model is not None:
        resolved = _existing(name, "model", model, base_dir)
        # checked as named (a link to a device is named as the link): a FIFO, a device, no model, over the size limit
        if problem := model_path_problem(model, base_dir):
            raise SideError(name, problem, ("model",))
        model = resolved
    if artifacts is not None:
        artifacts = _existing(name, "artifacts", artifacts, base_dir)
        try:
            _manifest(artifacts)
        except FrozenError as error:
            raise SideError(name, f"{artifacts}: {error}", ("artifacts",)) from None
    if model is not None and artifacts is not None:
        raise SideError(name, "model= and artifacts= both name the model files; give one")
    return Side(name, python, model, options, artifacts)


def threads_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a side's thread count: the scenario's bound (scenario.defaults.MAX_THREADS), so that a
    typo is an input error, not a side judged "broken" when its runtime refuses (or crashes on) the number."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_THREADS:
        return f"a whole number from 1 to {MAX_THREADS}, not {_shown(value)}"
    return None


def parse_side(name: str, text: str, base_dir: Path | None = None) -> Side:
    """A side from the command line's ``key=value,key=value`` (empty: the scenario as written)."""
    values: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, equals, raw = item.partition("=")
        if not equals or not key.strip():
            raise SideError(name, f"each setting is key=value (e.g. python=/opt/venv/bin/python, model=model_v2.onnx, "
                                  f"threads=2), not {_shown(item)} (in --{name} {_shown(text)})")
        key = key.strip()
        if key in values:
            raise SideError(name, f"{key} is given twice (in --{name} {_shown(text)})")
        values[key] = raw.strip() if key in SIDE_KEYS else _scalar(raw.strip())
    return side_from_mapping(name, values, base_dir or Path.cwd())


def _scalar(text: str) -> Any:
    try:
        value = yaml.safe_load(text) if text else ""
    except (yaml.YAMLError, ValueError):  # ValueError: an integer of more than 4300 digits
        return text
    return value if isinstance(value, str | int | float | bool) or value is None else text


def _shown(value: Any) -> str:
    """A value quoted into a message, cut short (a 5000-character path, a 20-digit number must not fill a screen)."""
    if isinstance(value, str):
        return excerpt(value)
    try:
        text = repr(value)
    except ValueError:  # an integer past the 4300 digits Python prints
        return "a number of more than 4300 digits"
    return text if len(text) <= 60 else f"{text[:60]}..."


def _existing(name: str, key: str, value: Any, base_dir: Path) -> str:
    """The file a path setting names (relative to ``base_dir``), which must exist: a SideError otherwise, also for a
    path the system refuses outright (a NUL byte, a name too long, an unknown ~user: scenario.checks' check)."""
    if not isinstance(value, str) or not value:
        raise SideError(name, f"a path, not {_shown(value)}", (key,))
    if problem := path_problem(value, base_dir):
        raise SideError(name, problem, (key,))
    path = Path(value).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if not path.exists():
        raise SideError(name, f"no such file {excerpt(value)} ({path})", (key,))
    # the interpreter is kept as named (a venv's bin/python is a symlink whose target ignores the venv)
    return str(path.absolute()) if key == "python" else str(path.resolve())


@functools.cache
def _manifest(path: str) -> Manifest:
    """A manifest, read once per process (FrozenError if it is not one)."""
    return read_manifest(Path(path))
