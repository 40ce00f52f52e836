"""Loading a scenario file: read, parse with line numbers, validate (schema, then registries), all problems at once.

Validation happens in two passes. Pydantic checks structure and types (`scenario.schema`); a second pass checks
names against the registries (`scenario.checks`), so every error carries a location in the YAML tree and can be
reported as ``file:line: field: message`` with a "did you mean" for near-misses.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.reader import ReaderError

from scenario import checks
from scenario.expand import expand
from scenario.schema import MeasureSpec, Scenario
from scenario.yaml_lines import LINE_BREAKS, LineLoader, LineMap, duplicate_keys, line_at

MAX_SCENARIO_BYTES = 1 << 20  # a scenario is written by hand: 1 MiB is thousands of models

__all__ = ["LoadedScenario", "MeasureSpec", "Scenario", "ScenarioError", "expand", "load_scenario",
           "load_scenario_data"]


class ScenarioError(Exception):
    """A scenario the user must fix. ``str()`` is the whole user-facing message, one line per problem."""

    def __init__(self, path: str | Path, problems: list[tuple[int | None, str]]) -> None:
        self.path = str(path)
        self.problems = problems
        lines = [f"{self.path}:{line}: {text}" if line else f"{self.path}: {text}" for line, text in problems]
        super().__init__("\n".join(line.translate(LINE_BREAKS) for line in lines))


@dataclass
class LoadedScenario:
    scenario: Scenario
    path: Path
    lines: LineMap | None = None  # where each key is in the file, for messages after loading (a budget's line)
    base: Path | None = None  # what relative paths are relative to, where it is not the file's folder (a dict)

    @property
    def base_dir(self) -> Path:
        return self.base if self.base is not None else self.path.parent


def load_scenario_data(data: dict[str, Any], base_dir: str | Path | None = None,
                       name: str = "<scenario dict>") -> LoadedScenario:
    """A scenario given as a Python dict (the Python API, the pytest fixture), validated as a file is; relative
    paths are relative to ``base_dir`` (default: the working folder). Problems are named by key path, beside
    ``name``."""
    if not isinstance(data, dict):
        raise ScenarioError(name, [(None, f"a scenario is a mapping (name:, models:, backends:, ...), not "
                                          f"{type(data).__name__}")])
    try:
        text = yaml.safe_dump(_plain(data), sort_keys=False, allow_unicode=True)
    except yaml.YAMLError as error:
        raise ScenarioError(name, [(None, f"holds a value YAML cannot write: {error}")]) from None
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    return _validated(text, Path(name), base.resolve(), numbered=False)


def _plain(value: Any) -> Any:
    """What a Python caller writes (a Path, a tuple, a numpy number) as what YAML reads back: str, list, number."""
    if isinstance(value, dict):
        return {_plain(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "item") and type(value).__module__ == "numpy":  # a numpy scalar
        return value.item()
    return value


def load_scenario(path: str | Path) -> LoadedScenario:
    """Parse and validate a scenario file; raises :class:`ScenarioError` with every problem found."""
    path = Path(path)
    try:
        info = path.stat()
        mode, size = info.st_mode, info.st_size
        if not stat.S_ISREG(mode):  # a FIFO would block the read forever, a device would never end
            raise ScenarioError(path, [(None, "not a regular file; a scenario is a YAML file")])
        if size > MAX_SCENARIO_BYTES:
            raise ScenarioError(path, [(None, f"{size:,} bytes; a scenario file is at most {MAX_SCENARIO_BYTES:,}")])
        with open(path, "rb") as handle:
            content = handle.read(MAX_SCENARIO_BYTES + 1)
    except FileNotFoundError:
        raise ScenarioError(path, [(None, "no such scenario file")]) from None
    except OSError as error:
        raise ScenarioError(path, [(None, f"cannot read the file: {error}")]) from None
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as error:  # the user's editor can go to the line, once it is named
        before = content[:error.start].decode("utf-8", "replace")
        problem = f"not UTF-8 text: byte {content[error.start]:#04x} ({error.reason})"
        raise ScenarioError(path, [(line_at(before, len(before)), problem)]) from None
    return _validated(text, path, path.parent)


def _validated(text: str, path: Path, base_dir: Path, numbered: bool = True) -> LoadedScenario:
    """``text`` parsed and checked; ``numbered``: problems carry their line (a dict's YAML text is ours, its lines
    mean nothing to the caller, who reads the key paths)."""
    try:
        root = yaml.compose(text, Loader=LineLoader)
        data = yaml.load(text, Loader=LineLoader)
    except ReaderError as error:  # a character YAML refuses: no mark, only its position
        problem = f"invalid YAML: unacceptable character #x{error.character:04x}: {error.reason}"
        raise ScenarioError(path, [(line_at(text, error.position), problem)]) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        problem = getattr(error, "problem", None) or str(error)
        raise ScenarioError(path, [(mark.line + 1 if mark else None, f"invalid YAML: {problem}")]) from None
    if root is None:
        raise ScenarioError(path, [(1, "the file is empty; a scenario needs at least name, models and backends")])
    if not isinstance(data, dict):
        raise ScenarioError(path, [(1, "a scenario is a mapping (name:, models:, backends:, ...) at the top level")])
    lines = LineMap(root)
    problems = duplicate_keys(root) + checks.registry_problems(data, lines)
    scenario = None
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as error:
        problems += [checks.pydantic_problem(e, lines) for e in error.errors()]
    if scenario is not None:
        problems += checks.override_problems(scenario, lines)
        problems += checks.calibration_problems(scenario, lines, base_dir)
        problems += checks.model_path_problems(scenario, lines, base_dir)
        problems += checks.zoo_feed_problems(scenario, lines)
        problems += checks.baseline_problems(scenario, data, lines)
        problems += checks.ab_problems(scenario, lines, base_dir)
        problems += checks.budget_problems(scenario, lines)
    if problems or scenario is None:
        problems = sorted(problems, key=lambda p: p[0] or 0)
        raise ScenarioError(path, problems if numbered else [(None, text) for _, text in problems])
    return LoadedScenario(scenario, path, lines if numbered else None, base_dir if base_dir != path.parent else None)
