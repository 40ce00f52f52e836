"""Scenario files: schema, loading with file:line errors, and expansion into cases.

Validation happens in two passes. Pydantic checks structure and types; a second pass checks names against the
registries (zoo models, backends, backend options), so every error carries a location in the YAML tree and
can be reported as ``file:line: field: message`` with a "did you mean" for near-misses.
"""

from __future__ import annotations

import difflib
import itertools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.reader import ReaderError

from harness.cases import Case, ModelSpec, compression_label

if TYPE_CHECKING:
    from backends.base import Backend

Precision = Literal["fp32", "fp16", "int8_dynamic", "int8"]
Mode = Literal["latency", "throughput", "concurrent"]
Loc = tuple[str | int, ...]


def _canonical_compression(value: Any) -> str:
    """`none`, `{prune: 0.75}` or `{prune: "2:4"}` → the zoo's canonical text ("none", "prune:0.75", "prune:2:4")."""
    from model_zoo.prune import parse_compression

    if isinstance(value, dict):
        if set(value) != {"prune"}:
            raise ValueError(f"a compression is 'none' or {{prune: F}} / {{prune: \"2:4\"}}, not {value!r}")
        target = value["prune"]
        if isinstance(target, bool) or not isinstance(target, int | float | str):
            raise ValueError(f"prune takes a fraction 0 < F < 1 or a pattern like \"2:4\", not {target!r}")
        value = f"prune:{target}"
    if not isinstance(value, str):
        raise ValueError(f"a compression is 'none' or {{prune: F}} / {{prune: \"2:4\"}}, not {value!r}")
    parsed = parse_compression(value)  # ValueError with the expected forms
    return "none" if parsed is None else parsed.canonical


Compression = Annotated[str, BeforeValidator(_canonical_compression)]


class CalibrationSpec(BaseModel):
    """Where int8 (full integer) quantization takes its activation ranges from."""

    model_config = ConfigDict(extra="forbid")

    samples: int = Field(200, ge=1)
    source: str = Field("dataset", description="dataset | random | a .npz file (relative to the scenario)")

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        if value not in ("dataset", "random") and not value.endswith(".npz"):
            raise ValueError(f"source is 'dataset', 'random' or a path to a .npz file, not {value!r}")
        return value


class AccuracySpec(BaseModel):
    """Accuracy budgets; a case that misses one fails, with the numbers. Unset budgets are reported only."""

    model_config = ConfigDict(extra="forbid")

    max_top1_drop: float | None = Field(None, ge=0, le=1, description="reference top-1 minus this case's")
    min_cosine: float | None = Field(None, ge=-1, le=1)
    atol: float | None = Field(None, ge=0)
    rtol: float | None = Field(None, ge=0)


class MeasureSpec(BaseModel):
    """How a case is measured. Defaults follow benchmark_model: at least 50 runs and 1 s of steady state."""

    model_config = ConfigDict(extra="forbid")

    warmup_runs: int = Field(5, ge=0)
    warmup_seconds: float = Field(0.5, ge=0)
    min_runs: int = Field(50, ge=1)
    min_seconds: float = Field(1.0, ge=0)
    max_seconds: float = Field(30.0, gt=0)
    timeout_s: float = Field(300.0, gt=0, description="wall-clock limit of the whole worker (load + measure)")
    memory_limit_mb: int | None = Field(None, gt=0, description="kill the worker when its RSS passes this")
    streams: int = Field(2, ge=1, description="parallel streams in concurrent mode")
    seed: int = 0

    @model_validator(mode="after")
    def _max_covers_min(self) -> MeasureSpec:
        if self.max_seconds < self.min_seconds:
            raise ValueError(f"max_seconds ({self.max_seconds}) is below min_seconds ({self.min_seconds})")
        return self


class MeasureOverride(BaseModel):
    """A partial :class:`MeasureSpec` for per-model overrides."""

    model_config = ConfigDict(extra="forbid")

    warmup_runs: int | None = Field(None, ge=0)
    warmup_seconds: float | None = Field(None, ge=0)
    min_runs: int | None = Field(None, ge=1)
    min_seconds: float | None = Field(None, ge=0)
    max_seconds: float | None = Field(None, gt=0)
    timeout_s: float | None = Field(None, gt=0)
    memory_limit_mb: int | None = Field(None, gt=0)
    streams: int | None = Field(None, ge=1)
    seed: int | None = None


class InputEntry(BaseModel):
    """One input of a user's model, described by name (see model_zoo.inputs): every key optional."""

    model_config = ConfigDict(extra="forbid")

    shape: list[int] | None = Field(None, description="per-sample shape, without the batch axis")
    batch_axis: int | Literal["auto"] | None = Field("auto", description="where the batch axis is; none: not batched")
    dtype: str | None = None
    range: tuple[float, float] | None = Field(None, description="[low, high) of generated values")
    value: Any = Field(None, description="a fixed value (a number or nested list), never batched")

    @field_validator("batch_axis", mode="before")
    @classmethod
    def _none_spelled_out(cls, value: Any) -> Any:
        """`batch_axis: none` reads as the word in YAML; it means YAML's null here."""
        return None if isinstance(value, str) and value.lower() == "none" else value

    @field_validator("shape")
    @classmethod
    def _non_negative(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and any(d < 1 for d in value):
            raise ValueError("a shape is a list of positive integers ([] for a scalar)")
        return value

    @field_validator("batch_axis")
    @classmethod
    def _axis(cls, value: Any) -> Any:
        if isinstance(value, int) and value < 0:
            raise ValueError("batch_axis counts from 0 (or is none for an input that is not batched)")
        return value

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, value: str | None) -> str | None:
        import numpy as np

        if value is not None:
            try:
                return np.dtype(value).name
            except TypeError:
                raise ValueError(f"unknown dtype {value!r} (e.g. float32, int64)") from None
        return value

    @model_validator(mode="after")
    def _value_alone(self) -> InputEntry:
        if self.value is not None:
            import numpy as np

            if self.range is not None or self.shape is not None or self.batch_axis not in ("auto", None):
                raise ValueError("a fixed value takes no shape, range or batch_axis (it is used as is, not batched)")
            try:
                np.asarray(self.value, dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"value must be a number or a nested list of numbers, not {self.value!r}") from None
        if self.range is not None and not self.range[0] < self.range[1]:
            raise ValueError(f"range [{self.range[0]}, {self.range[1]}) is empty")
        return self

    def to_description(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None or k == "batch_axis"
                if not (k == "batch_axis" and v == "auto")}


class ModelEntry(BaseModel):
    """A zoo model by ``name`` (with options) or a user's file by ``path``, plus per-model overrides."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    path: str | None = None
    input_shape: list[int] | None = None
    inputs: dict[str, InputEntry] | None = Field(None, description="a user's model: its inputs by name")
    label: str | None = None
    precisions: list[Precision] | None = None
    batch_sizes: list[int] | None = None
    compression: list[Compression] | None = Field(None, min_length=1)
    calibration: CalibrationSpec | None = None
    accuracy: AccuracySpec | None = Field(None, description="replaces the scenario's budgets key by key")
    measure: MeasureOverride | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _name_or_path(self) -> ModelEntry:
        if (self.name is None) == (self.path is None):
            raise ValueError("give exactly one of 'name' (a zoo model) or 'path' (your model file)")
        if self.inputs is not None and self.name is not None:
            raise ValueError("inputs describes a model file's inputs; a zoo model takes input_shape")
        return self

    @field_validator("input_shape", "batch_sizes")
    @classmethod
    def _positive(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or any(v < 1 for v in value)):
            raise ValueError("must be a non-empty list of positive integers")
        return value


class BackendEntry(BaseModel):
    """A backend by name; ``threads`` and backend-specific options (checked against the backend) alongside."""

    model_config = ConfigDict(extra="allow")

    name: str
    threads: int | None = Field(None, ge=1)
    label: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class BaselineSpec(BaseModel):
    """The case the report compares every other case with (same model, batch size and mode, same run):
    a speed-up only means something against one named configuration measured in the same sitting."""

    model_config = ConfigDict(extra="forbid")

    backend: str = Field(description="a backend of this scenario, by label or name")
    precision: Precision = "fp32"


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    models: list[ModelEntry] = Field(min_length=1)
    backends: list[BackendEntry] = Field(min_length=1)
    precisions: list[Precision] = Field(default_factory=lambda: ["fp32"], min_length=1)
    batch_sizes: list[int] = Field(default_factory=lambda: [1], min_length=1)
    mode: list[Mode] = Field(default_factory=lambda: ["latency"], min_length=1)
    compression: list[Compression] = Field(default_factory=lambda: ["none"], min_length=1)
    calibration: CalibrationSpec = Field(default_factory=CalibrationSpec)
    accuracy: AccuracySpec = Field(default_factory=AccuracySpec)
    measure: MeasureSpec = Field(default_factory=MeasureSpec)
    baseline: BaselineSpec | None = None

    @field_validator("mode", mode="before")
    @classmethod
    def _one_mode(cls, value: Any) -> Any:
        """`mode: latency` is the common spelling of a one-element list."""
        return [value] if isinstance(value, str) else value

    @field_validator("batch_sizes")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(v < 1 for v in value):
            raise ValueError("batch sizes must be positive integers")
        return value

    @property
    def modes(self) -> list[Mode]:
        return list(self.mode)

    def measure_for(self, model: ModelEntry) -> MeasureSpec:
        """The scenario's settings with the model's overrides, validated as a whole (e.g. max ≥ min)."""
        if model.measure is None:
            return self.measure
        return MeasureSpec.model_validate({**self.measure.model_dump(), **model.measure.model_dump(exclude_none=True)})


_KEYS_AT = {
    (): set(Scenario.model_fields),
    ("models",): set(ModelEntry.model_fields),
    ("measure",): set(MeasureSpec.model_fields),
    ("models", "measure"): set(MeasureSpec.model_fields),
    ("calibration",): set(CalibrationSpec.model_fields),
    ("models", "calibration"): set(CalibrationSpec.model_fields),
    ("accuracy",): set(AccuracySpec.model_fields),
    ("models", "accuracy"): set(AccuracySpec.model_fields),
    ("models", "inputs"): set(InputEntry.model_fields),
    ("baseline",): set(BaselineSpec.model_fields),
}


# Every character str.splitlines() breaks a line at, escaped: a name or path quoted from the file into a message
# (a label "a\nb", a key with a U+2028) must not start a line of its own, one that names no file and line.
_LINE_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


class ScenarioError(Exception):
    """A scenario the user must fix. ``str()`` is the whole user-facing message, one line per problem."""

    def __init__(self, path: str | Path, problems: list[tuple[int | None, str]]) -> None:
        self.path = str(path)
        self.problems = problems
        lines = [f"{self.path}:{line}: {text}" if line else f"{self.path}: {text}" for line, text in problems]
        super().__init__("\n".join(line.translate(_LINE_BREAKS) for line in lines))


@dataclass
class LoadedScenario:
    scenario: Scenario
    path: Path

    @property
    def base_dir(self) -> Path:
        return self.path.parent


def did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f" (choose from: {', '.join(sorted(choices))})"


def _format_loc(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


_MAX_DEPTH = 50  # levels of nesting; a scenario needs 5 (backends → entry → options → mapping → value)
_YAML_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")  # what YAML counts as a line break


def _line_at(text: str, index: int) -> int:
    """The line (from 1) of ``text[index]``, counted as YAML counts lines in its error marks."""
    return len(_YAML_BREAK.findall(text, 0, index)) + 1


def _excerpt(text: str) -> str:
    """A value quoted into a message, cut short: a 5000-digit number must not fill the user's terminal."""
    return repr(text if len(text) <= 40 else text[:40] + "...")


class _Loader(yaml.SafeLoader):
    """SafeLoader that reports, as YAML errors at their line, the inputs that SafeLoader lets escape as tracebacks.

    A hand-edited file reaches corners of PyYAML that raise plain Python errors: scalars that do not fit their
    tag (``!!int abc``, ``!!float ''``, ``!!bool maybe``, a date like 2023-02-30), an alias inside its own anchor
    (``&a [*a]``, a structure that contains itself, on which every later pass recurses until the stack runs out)
    and nesting deep enough to exhaust the stack by itself. Integers are limited to 64 bits: past that no
    setting makes sense, and past 4300 digits Python cannot even print one into a message or a case id.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._open: list[str | None] = []  # anchors of the nodes being composed, outermost first
        self._heights: dict[yaml.Node, int] = {}  # levels of nesting at and below a node, through aliases

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        depth = len(self._open)
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open:
                raise ComposerError(None, None, f"the alias *{event.anchor} is inside its own anchor &{event.anchor}",
                                    event.start_mark)
            node = super().compose_node(parent, index)
        else:
            if depth >= _MAX_DEPTH:
                raise ComposerError(None, None, f"nested more than {_MAX_DEPTH} levels deep", event.start_mark)
            self._open.append(event.anchor)
            try:
                node = super().compose_node(parent, index)
            finally:
                self._open.pop()
            children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else (
                node.value if isinstance(node, yaml.SequenceNode) else [])
            self._heights[node] = 1 + max((self._heights[child] for child in children), default=0)
        if depth + self._heights[node] > _MAX_DEPTH:  # an alias brings its anchor's nesting along
            raise ComposerError(None, None, f"nested more than {_MAX_DEPTH} levels deep", event.start_mark)
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, KeyError, AttributeError, IndexError):  # what SafeConstructor's scalar parsers raise
            text = _excerpt(node.value) if isinstance(node, yaml.ScalarNode) else "this value"
            raise ConstructorError(None, None, f"{text} is not a valid {node.tag.rpartition(':')[2]} (quote it if it "
                                   "is meant as text)", node.start_mark) from None

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        try:
            value = super().construct_yaml_int(node)
        except ValueError:  # "!!int abc", or more than 4300 digits: Python refuses to convert those
            value = None
        if value is None or abs(value) >= 2**63:
            raise ConstructorError(None, None, f"{_excerpt(node.value)} is not an integer of at most 64 bits",
                                   node.start_mark)
        return value


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


class _LineMap:
    """Line numbers of every node of a YAML document, addressed by pydantic-style locations."""

    def __init__(self, root: yaml.Node) -> None:
        self.root = root

    def line(self, loc: Loc) -> int:
        node, line = self.root, self.root.start_mark.line + 1
        for part in loc:
            child = self._child(node, part)
            if child is None:
                break
            node, line = child
        return line

    @staticmethod
    def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node, int] | None:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for key, value in node.value:
                if key.value == part:
                    # a scalar value sits on its key's line; for a nested block, point at the key too
                    return value, key.start_mark.line + 1
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
            return child, child.start_mark.line + 1
        return None


def _duplicate_keys(node: yaml.Node) -> list[tuple[int, str]]:
    problems = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if key.value in seen:
                problems.append((key.start_mark.line + 1, f"duplicate key {key.value!r}"))
            seen.add(key.value)
            problems += _duplicate_keys(value)
    elif isinstance(node, yaml.SequenceNode):
        for child in node.value:
            problems += _duplicate_keys(child)
    return problems


def _pydantic_problem(error: dict[str, Any], lines: _LineMap) -> tuple[int, str]:
    loc: Loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden":
        key = str(loc[-1])
        context = tuple(part for part in loc[:-1] if isinstance(part, str))
        known = sorted(_KEYS_AT.get(context, set()))
        where = _format_loc(loc[:-1])
        return lines.line(loc), f"{where + ': ' if where else ''}unknown key {key!r}{did_you_mean(key, known)}"
    if error["type"] == "missing":
        return lines.line(loc[:-1]), f"{_format_loc(loc)}: required field is missing"
    message = error["msg"].removeprefix("Value error, ")
    return lines.line(loc), f"{_format_loc(loc)}: {message}"


def _registry_problems(data: dict[str, Any], lines: _LineMap) -> list[tuple[int, str]]:
    """Names checked against the zoo and backend registries, on the raw data so that they are reported
    together with any type errors in the same file."""
    from backends.registry import backend_names, get_backend
    from model_zoo.catalog import CATALOG

    problems = []
    models = data.get("models")
    for index, model in enumerate(models if isinstance(models, list) else []):
        name = model if isinstance(model, str) else model.get("name") if isinstance(model, dict) else None
        if isinstance(name, str) and name not in CATALOG:
            loc: Loc = ("models", index) if isinstance(model, str) else ("models", index, "name")
            problems.append((lines.line(loc), f"{_format_loc(loc)}: unknown zoo model {name!r}"
                             f"{did_you_mean(name, list(CATALOG))}"))
        elif isinstance(name, str) and isinstance(model, dict) and isinstance(model.get("input_shape"), list):
            shape = model["input_shape"]
            if all(isinstance(d, int) and d > 0 for d in shape):
                problem = CATALOG[name].shape_problem(tuple(shape))
                if problem:
                    loc = ("models", index, "input_shape")
                    problems.append((lines.line(loc), f"{_format_loc(loc)}: {problem}"))
    backends = data.get("backends")
    for index, backend in enumerate(backends if isinstance(backends, list) else []):
        entry = {"name": backend} if isinstance(backend, str) else backend
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        name = entry["name"]
        if name not in backend_names():
            loc = ("backends", index) if isinstance(backend, str) else ("backends", index, "name")
            problems.append((lines.line(loc), f"{_format_loc(loc)}: unknown backend {name!r}"
                             f"{did_you_mean(name, backend_names())}"))
            continue
        backend_class = get_backend(name)
        allowed = backend_class.option_names()
        for key, value in entry.items():
            loc = ("backends", index, key)
            if key not in (*allowed, *BackendEntry.model_fields):
                choices = [*allowed, *BackendEntry.model_fields]
                problems.append((lines.line(loc), f"{_format_loc(loc)}: unknown option {key!r} for backend "
                                 f"{name}{did_you_mean(str(key), choices)}"))
            elif key in allowed and (problem := _option_problem(backend_class, key, value)):
                problems.append((lines.line(loc), f"{_format_loc(loc)}: {problem}"))
    return problems


def _option_problem(backend_class: type[Backend], key: str, value: Any) -> str | None:
    """The adapter's own check of an option value; a check that trips over a type it did not expect (onnxruntime_cpu
    looks a list up in a dict) still means the value is wrong, and must not become the user's traceback."""
    try:
        return backend_class.option_problem(key, value)
    except Exception:
        return f"{key} cannot be {value!r}"


def _override_problems(scenario: Scenario, lines: _LineMap) -> list[tuple[int, str]]:
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
                problems.append((lines.line(loc + tuple(e["loc"])), f"{_format_loc(loc + tuple(e['loc']))}: {message}"))
    return problems


def _calibration_problems(scenario: Scenario, lines: _LineMap, base_dir: Path) -> list[tuple[int, str]]:
    """A calibration file that is not there is the scenario's mistake: say so at its line, before any build."""
    where: list[tuple[Loc, CalibrationSpec]] = [(("calibration", "source"), scenario.calibration)]
    where += [(("models", i, "calibration", "source"), m.calibration) for i, m in enumerate(scenario.models)
              if m.calibration is not None]
    problems = []
    for loc, spec in where:
        if spec.source.endswith(".npz"):
            if problem := _path_problem(spec.source, base_dir):
                problems.append((lines.line(loc), f"{_format_loc(loc)}: {problem}"))
                continue
            file = _calibration(spec, base_dir)["source"]
            if not Path(file).is_file():
                problems.append((lines.line(loc), f"{_format_loc(loc)}: no such calibration file {file}"))
    return problems


_MODEL_SUFFIXES = (".onnx", ".tflite", ".keras", ".h5")


def _model_path_problems(scenario: Scenario, lines: _LineMap, base_dir: Path) -> list[tuple[int, str]]:
    """A model file must exist, be readable and be of a kind accelbench reads, and the scenario's description of
    its inputs must fit it: all said at the path's line before anything runs, not as a failed case later."""
    problems = []
    for index, model in enumerate(scenario.models):
        if model.path is None:
            continue
        loc: Loc = ("models", index, "path")
        problem = _path_problem(model.path, base_dir) or _model_file_problem(base_dir / Path(model.path).expanduser())
        if problem is None:
            problem = _inputs_problem(model, base_dir)
            loc = ("models", index, "inputs") if problem and model.inputs is not None else loc
        if problem:
            problems.append((lines.line(loc), f"{_format_loc(loc)}: {problem}"))
    return problems


def _model_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a model, looking only at the file system (never opening a FIFO or a device)."""
    import stat

    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return f"no such model file or folder: {path}"
    except OSError as error:
        return f"cannot read {path}: {error.strerror or error}"
    if stat.S_ISDIR(mode):
        saved_model = path / "saved_model.pb"
        if not saved_model.is_file():
            return f"{path} is a folder but not a TensorFlow SavedModel (no saved_model.pb inside)"
        path, mode = saved_model, saved_model.stat().st_mode
    elif path.suffix.lower() not in _MODEL_SUFFIXES:
        return (f"{path}: accelbench cannot read this kind of file; expected a .onnx, .tflite or .keras file or a "
                "SavedModel folder")
    if not stat.S_ISREG(mode):
        return f"{path} is not a regular file"
    if not os.access(path, os.R_OK):
        return f"cannot read {path}: permission denied"
    return None


def _inputs_problem(model: ModelEntry, base_dir: Path) -> str | None:
    """The input description checked against the inputs an ONNX or TFLite file declares; the file's own errors
    (a corrupt file) are left to the build, which names them."""
    from model_zoo.inputs import InputError, InputLayout

    path = (base_dir / Path(model.path or "").expanduser()).resolve()
    try:
        declared = _declared_inputs(path)
    except Exception:
        return None
    if declared is None:
        return None
    layout = InputLayout.from_json({"inputs": {name: entry.to_description() for name, entry in
                                               (model.inputs or {}).items()}, "input_shape": model.input_shape})
    try:
        layout.plan(declared, what=path.name)
    except InputError as error:
        return str(error)
    return None


def _declared_inputs(path: Path) -> list[Any] | None:
    if path.suffix.lower() == ".onnx":
        from model_zoo.inputs import onnx_declared

        return onnx_declared(str(path))
    if path.suffix.lower() == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        from backends.tflite_cpu import _spec

        return [_spec(d) for d in Interpreter(model_path=str(path)).get_input_details()]
    return None


def _path_problem(text: str, base_dir: Path) -> str | None:
    """Why the system refuses a path outright (a NUL byte, a name too long, an unknown ~user), or None.

    Expansion resolves these paths and the zoo looks at them, where such a path raises; so it is the scenario's
    mistake, reported at its line when the file loads."""
    try:
        (base_dir / Path(text).expanduser()).resolve().is_dir()
    except (OSError, ValueError, RuntimeError) as error:
        return f"unusable path {_excerpt(text)}: {getattr(error, 'strerror', None) or error}"
    return None


def _baseline_problems(scenario: Scenario, data: dict[str, Any], lines: _LineMap) -> list[tuple[int, str]]:
    """A baseline the scenario names must be one of its backends (unnamed, it is each model's first fp32 case that
    ran, which the report names)."""
    if scenario.baseline is None or not isinstance(data.get("baseline"), dict):
        return []
    wanted = scenario.baseline.backend
    known = [*_backend_labels(scenario.backends), *(b.name for b in scenario.backends)]
    if wanted in known:
        return []
    loc: Loc = ("baseline", "backend")
    return [(lines.line(loc), f"{_format_loc(loc)}: {wanted!r} is not a backend of this scenario "
             f"(its backends: {', '.join(dict.fromkeys(known))})")]


def load_scenario(path: str | Path) -> LoadedScenario:
    """Parse and validate a scenario file; raises :class:`ScenarioError` with every problem found."""
    path = Path(path)
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise ScenarioError(path, [(None, "no such scenario file")]) from None
    except OSError as error:
        raise ScenarioError(path, [(None, f"cannot read the file: {error}")]) from None
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as error:  # the user's editor can go to the line, once it is named
        before = content[:error.start].decode("utf-8", "replace")
        problem = f"not UTF-8 text: byte {content[error.start]:#04x} ({error.reason})"
        raise ScenarioError(path, [(_line_at(before, len(before)), problem)]) from None
    try:
        root = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)
    except ReaderError as error:  # a character YAML refuses: no mark, only its position
        problem = f"invalid YAML: unacceptable character #x{error.character:04x}: {error.reason}"
        raise ScenarioError(path, [(_line_at(text, error.position), problem)]) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        problem = getattr(error, "problem", None) or str(error)
        raise ScenarioError(path, [(mark.line + 1 if mark else None, f"invalid YAML: {problem}")]) from None
    if root is None:
        raise ScenarioError(path, [(1, "the file is empty; a scenario needs at least name, models and backends")])
    if not isinstance(data, dict):
        raise ScenarioError(path, [(1, "a scenario is a mapping (name:, models:, backends:, ...) at the top level")])
    lines = _LineMap(root)
    problems = _duplicate_keys(root) + _registry_problems(data, lines)
    scenario = None
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as error:
        problems += [_pydantic_problem(e, lines) for e in error.errors()]
    if scenario is not None:
        problems += _override_problems(scenario, lines) + _calibration_problems(scenario, lines, path.parent)
        problems += _model_path_problems(scenario, lines, path.parent)
        problems += _baseline_problems(scenario, data, lines)
    if problems or scenario is None:
        raise ScenarioError(path, sorted(problems, key=lambda p: p[0] or 0))
    return LoadedScenario(scenario, path)


def _unique_labels(wanted: list[str], alternatives: list[str]) -> list[str]:
    """Keep each label unless it collides; colliding ones take their alternative, then an index."""
    labels = [w if wanted.count(w) == 1 else alt for w, alt in zip(wanted, alternatives, strict=True)]
    return [label if labels.count(label) == 1 else f"{label}_{i}" for i, label in enumerate(labels)]


def _model_labels(models: list[ModelEntry]) -> list[str]:
    wanted, alternatives = [], []
    for entry in models:
        base = entry.label or entry.name or Path(entry.path or "model").stem
        wanted.append(base)
        shape = "x".join(map(str, entry.input_shape)) if entry.input_shape else "default"
        alternatives.append(base if entry.label else f"{base}_{shape}")
    return _unique_labels(wanted, alternatives)


def _backend_labels(backends: list[BackendEntry]) -> list[str]:
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
    from harness.skips import skip_reason

    scenario = loaded.scenario
    cases = []
    model_labels = _model_labels(scenario.models)
    backend_labels = _backend_labels(scenario.backends)
    for model, model_label in zip(scenario.models, model_labels, strict=True):
        spec = ModelSpec.from_entry(model, loaded.base_dir)
        measure = scenario.measure_for(model).model_dump()
        calibration = _calibration(model.calibration or scenario.calibration, loaded.base_dir)
        budget = {**scenario.accuracy.model_dump(exclude_none=True),
                  **(model.accuracy.model_dump(exclude_none=True) if model.accuracy else {})}
        for backend, backend_label in zip(scenario.backends, backend_labels, strict=True):
            options = {"threads": backend.threads, **backend.options}
            combinations = itertools.product(model.precisions or scenario.precisions, model.compression or
                                             scenario.compression, model.batch_sizes or scenario.batch_sizes,
                                             scenario.modes)
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
                )
                try:
                    case.skip_reason = skip_reason(case)
                except Exception as error:  # an adapter's check that crashes on these settings: say so, run nothing
                    case.skip_reason = f"cannot tell whether {backend.name} can run this case: {error!r}"
                cases.append(case)
    return cases


def _calibration(spec: CalibrationSpec, base_dir: Path) -> dict[str, Any]:
    """A .npz source is relative to the scenario file, like model paths."""
    source = spec.source
    if source.endswith(".npz"):
        source = str((base_dir / Path(source).expanduser()).resolve())
    return {"samples": spec.samples, "source": source}
