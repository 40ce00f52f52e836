"""The two sides of an A/B comparison: what differs between them is what the user is deciding about.

A side is a few ``key=value`` settings laid over every case of the scenario:

- ``python=PATH``: the interpreter that runs the side's workers: another virtualenv's (``/opt/ort132/bin/python``)
  for a library upgrade. It needs the backend's runtime, numpy and psutil; accelbench's own code comes from this
  checkout (PYTHONPATH), so that only the libraries differ.
- ``model=PATH``: a model file in place of the case's model (``model_v2.onnx`` against ``model_v1.onnx``).
- any other key is a backend option (``threads=4``, ``xnnpack=false``, ``graph_optimization=basic``), checked
  against the backend like a scenario's options.

On the command line a side is the settings joined by commas (``--new python=/opt/ort132/bin/python,threads=2``);
in a scenario's ``ab:`` block, a mapping (``new: {python: ..., options: {threads: 2}}`` or flat keys). Values are
read as YAML scalars (``false``, ``2``, ``basic``). An empty side is the scenario as written, on this interpreter.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from backends.registry import get_backend
from scenario.cases import Case, ModelSpec

SIDE_KEYS = ("python", "model")


class SideError(ValueError):
    """A side that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Side:
    name: str  # "base" or "new"
    python: str | None = None
    model: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def interpreter(self) -> str:
        return self.python or sys.executable

    def spec(self) -> dict[str, Any]:
        return {"python": self.python, "model": self.model, "options": dict(self.options)}

    def describe(self) -> str:
        """The side in the words of its settings, for tables: "python=/opt/ort/bin/python, threads=2"."""
        parts = [f"python={self.python}"] if self.python else []
        parts += [f"model={self.model}"] if self.model else []
        parts += [f"{key}={value}" for key, value in self.options.items()]
        return ", ".join(parts) or "as the scenario says"

    def apply(self, case: Case) -> Case:
        """The case as this side runs it; options the backend does not know are a SideError."""
        backend = get_backend(case.backend)
        known = ("threads", *backend.option_names())
        for key, value in self.options.items():
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
    python, model = values.pop("python", None), values.pop("model", None)
    options.update(values)
    if python is not None:
        python = _existing(name, "python", python, base_dir)
        if not os.access(python, os.X_OK) or Path(python).is_dir():
            raise SideError(f"{name} side: python={python} is not an executable interpreter")
    if model is not None:
        model = _existing(name, "model", model, base_dir)
    return Side(name, python, model, options)


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
