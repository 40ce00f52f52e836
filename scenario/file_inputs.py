"""A user file's inputs as the file declares them, planned with the scenario's description: read once per file.

Both the loader (does the description fit the file?) and the expansion (can the file take each batch size?) ask;
the answer is cached by the file's identity on disk, so that a 100 MB model is parsed once, not once per question.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from backends.tflite_cpu import _spec
from model_zoo.inputs import (
    InputError,
    InputLayout,
    InputPlan,
    TensorSpec,
    batch_problem,
    fixed_batch,
    onnx_declared,
)
from scenario.schema import ModelEntry


def model_file(model: ModelEntry, base_dir: Path) -> Path:
    """The absolute path of a model entry's file (relative paths are relative to the scenario)."""
    return (base_dir / Path(model.path or "").expanduser()).resolve()


def declared_inputs(path: Path) -> list[Any] | None:
    """The inputs an ONNX or TFLite file declares, or None for a kind read only by the build (a SavedModel);
    raises where the file cannot be read (the build names that error)."""
    stat = path.stat()
    return list(_declared(str(path), stat.st_mtime_ns, stat.st_size) or []) or None


@functools.lru_cache(maxsize=64)
def _declared(path: str, mtime_ns: int, size: int) -> tuple[Any, ...] | None:
    del mtime_ns, size  # part of the cache key only: a file rewritten in place is read again
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        return tuple(onnx_declared(path))
    if suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        specs = [_spec(d) for d in Interpreter(model_path=path).get_input_details()]
        return tuple(TensorSpec(s.name, s.shape, s.dtype) for s in specs)
    return None


def output_names(path: Path) -> list[str] | None:
    """The output names an ONNX or TFLite file declares, or None where they cannot be read here."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".onnx":
            import onnx

            return [o.name for o in onnx.load(str(path), load_external_data=False).graph.output]
        if suffix == ".tflite":
            from ai_edge_litert.interpreter import Interpreter

            return [d["name"] for d in Interpreter(model_path=str(path)).get_output_details()]
    except Exception:  # a corrupt file: the build names its errors
        return None
    return None


def unknown_output(model: ModelEntry, base_dir: Path) -> str | None:
    """Why the scenario's `outputs:` does not fit the file (an output name it does not have), or None."""
    if not model.outputs or model.path is None:
        return None
    path = model_file(model, base_dir)
    names = output_names(path)
    if names is None:
        return None
    unknown = sorted(set(model.outputs) - set(names))
    if unknown:
        return (f"{path.name} has no output named {unknown[0]!r} (its outputs: "
                f"{', '.join(repr(n) for n in names)})")
    return None


def layout_of(model: ModelEntry) -> InputLayout:
    return InputLayout.from_json({"inputs": {name: entry.to_description() for name, entry in
                                             (model.inputs or {}).items()}, "input_shape": model.input_shape,
                                  "data": "noise" if (model.data or "").lower().endswith(".npz") else
                                  model.data or "auto"})  # a data file's fit is checked when it is read


def input_plans(model: ModelEntry, base_dir: Path) -> list[InputPlan] | str | None:
    """The input description checked against the inputs the file declares: the plans, or why the description
    does not fit; None where the file's inputs cannot be read here (a SavedModel, a corrupt file: the build names
    its errors)."""
    path = model_file(model, base_dir)
    try:
        declared = declared_inputs(path)
    except Exception:
        return None
    if declared is None:
        return None
    try:
        return layout_of(model).plan(declared, what=path.name)
    except InputError as error:
        return str(error)


def reference_batch(model: ModelEntry, base_dir: Path) -> int:
    """The batch the model's fp32 reference runs at: 1, or the batch a user's file fixes (a file fixed at 4 takes
    nothing else, and a reference at batch 1 failed every one of its cases)."""
    plans = input_plans(model, base_dir) if model.path is not None else None
    if not isinstance(plans, list):
        return 1
    return fixed_batch(plans, declared_inputs(model_file(model, base_dir))) or 1  # type: ignore[arg-type]


def batch_skip_reasons(model: ModelEntry, base_dir: Path, batch_sizes: list[int]) -> dict[int, str]:
    """The batch sizes a user's file cannot take, each with the reason that names the file and the input: known
    when the scenario is expanded, so that such a case is a skip before anything is built, never a failure after
    every conversion (naming a cached artefact) nor a "pass" that counted one inference as several items."""
    plans = input_plans(model, base_dir) if model.path is not None else None
    if not isinstance(plans, list):  # a zoo model, or unreadable or undescribed: the loader or the build says so
        return {}
    path = model_file(model, base_dir)
    declared = declared_inputs(path)  # read once already, by input_plans: cached
    return {batch: f"{path}: {problem}" for batch in batch_sizes
            if (problem := batch_problem(plans, declared, batch)) is not None}
