"""The two sides of an A/B comparison: what differs between them is what the user is deciding about.

A side is a few ``key=value`` settings laid over every case of the scenario:

- ``python=PATH``: the interpreter that runs the side's workers: another virtualenv's (``/opt/ort132/bin/python``)
  for a library upgrade. It needs the backend's runtime, numpy and psutil; accelbench's own code comes from this
  checkout (PYTHONPATH), so that only the libraries differ.
- ``model=PATH``: a model file in place of the case's model (``model_v2.onnx`` against ``model_v1.onnx``).
- ``artifacts=PATH``: a manifest (artifacts.json, as `accelbench freeze` writes it: case id → model file, with each
  file's sha256) whose files the side runs instead of what the zoo builds now: the model files of an earlier,
  known-good state. A file changed since the freeze is refused (harness.frozen).
- any other key is a backend option (``threads=4``, ``xnnpack=false``, ``graph_optimization=basic``), checked
  against the backend like a scenario's options.

On the command line a side is the settings joined by commas (``--new python=/opt/ort132/bin/python,threads=2``);
in a scenario's ``ab:`` block, a mapping (``new: {python: ..., options: {threads: 2}}`` or flat keys). Values are
read as YAML scalars (``false``, ``2``, ``basic``). An empty side is the scenario as written, on this interpreter.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from backends.registry import get_backend
from harness.frozen import FrozenError, Manifest, checked_model, read_manifest
from scenario.cases import Case, ModelSpec

SIDE_KEYS = ("python", "model", "artifacts")


class SideError(ValueError):
    """A side that cannot be used; the message says which and why."""


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
        """(model file, None) from this side's manifest once its files are checked as frozen (harness.frozen), or
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
            if key == "threads" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise SideError(f"{self.name} side: threads is a whole number of at least 1, not {value!r}")
            if key not in known:
                raise SideError(f"{self.name} side: {case.backend} has no option {key!r} (it takes: "
                                f"{', '.join(known)})")
            problem = backend.option_problem(key, value)
            if problem:
                raise SideError(f"{self.name} side: {key}: {problem}")
        model = case.model
        if self.model:
            model = ModelSpec(zoo=None, path=self.model, input_shape=case.model.input_shape, inputs=case.model.inputs)
        return replace(case, model=model, backend_options={**case.backend_options, **self.options})


def side_from_mapping(name: str, values: dict[str, Any] | None, base_dir: Path) -> Side:
    """A side from a mapping: ``python`` and ``model`` (relative paths relative to ``base_dir``), ``options`` and any
    other key as a backend option."""
    values = dict(values or {})
    options = dict(values.pop("options", None) or {})
    python, model, artifacts = values.pop("python", None), values.pop("model", None), values.pop("artifacts", None)
    options.update(values)
    if python is not None:
        python = _existing(name, "python", python, base_dir)
        if not os.access(python, os.X_OK) or Path(python).is_dir():
            raise SideError(f"{name} side: python={python} is not an executable interpreter")
    if model is not None:
        model = _existing(name, "model", model, base_dir)
    if artifacts is not None:
        artifacts = _existing(name, "artifacts", artifacts, base_dir)
        try:
            _manifest(artifacts)
        except FrozenError as error:
            raise SideError(f"{name} side: artifacts={artifacts}: {error}") from None
    if model is not None and artifacts is not None:
        raise SideError(f"{name} side: model= and artifacts= both name the model files; give one")
    return Side(name, python, model, options, artifacts)


def parse_side(name: str, text: str, base_dir: Path | None = None) -> Side:
    """A side from the command line's ``key=value,key=value`` (empty: the scenario as written)."""
    values: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, equals, raw = item.partition("=")
        if not equals or not key.strip():
            raise SideError(f"--{name} {text!r}: each setting is key=value (e.g. python=/opt/venv/bin/python, "
                            f"model=model_v2.onnx, threads=2), not {item!r}")
        key = key.strip()
        if key in values:
            raise SideError(f"--{name} {text!r}: {key} is given twice")
        values[key] = raw.strip() if key in SIDE_KEYS else _scalar(raw.strip())
    return side_from_mapping(name, values, base_dir or Path.cwd())


def _scalar(text: str) -> Any:
    try:
        value = yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        return text
    return value if isinstance(value, str | int | float | bool) or value is None else text


def _existing(name: str, key: str, value: Any, base_dir: Path) -> str:
    if not isinstance(value, str) or not value:
        raise SideError(f"{name} side: {key} is a path, not {value!r}")
    path = Path(value).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if not path.exists():
        raise SideError(f"{name} side: {key}={value}: no such file ({path})")
    # the interpreter is kept as named (a venv's bin/python is a symlink whose target ignores the venv)
    return str(path.absolute()) if key == "python" else str(path.resolve())


@functools.cache
def _manifest(path: str) -> Manifest:
    """A manifest, read once per process (FrozenError if it is not one)."""
    return read_manifest(Path(path))
