"""The fixed evaluation inputs every case of a model runs after its timing, and the reference that scores them.

Fidelity only means something when every case sees the same inputs as the reference. So one worker per model
and run, the REFERENCE worker, makes the evaluation set (the model's held-out labelled split when it has one,
else seeded random samples shaped by the reference model's own inputs), saves it with its outputs, and every
case worker then runs exactly those arrays, batched by its own batch size, after its measurement is done.

The reference must be independent of the cases it judges: the TensorFlow fp32 model for zoo models, .keras files
and SavedModels; a user's .onnx file on ONNX Runtime with every graph optimisation off (so that the fp32 case on
the optimised session is judged by something other than itself); a user's .tflite on LiteRT's builtin kernels
without XNNPACK. Pruned variants are scored against the dense reference: the point is to see what pruning costs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from model_zoo.datasets import load_dataset
from model_zoo.inputs import (
    InputLayout,
    InputPlan,
    TensorSpec,
    assemble,
    judging_samples,
    sample_count,
    split_samples,
)
from model_zoo.npz_inputs import layout_samples
from scenario.cases import Case

DATA_FILE_SAMPLES = 64  # a user's data file: its real samples are worth more of them (fewer if it holds fewer)
# source format → (backend, its options): the plainest way to run the model that is not a case's own session
_REFERENCE = {"zoo": ("tensorflow", {}), "keras": ("tensorflow", {}), "savedmodel": ("tensorflow", {}),
              "onnx": ("onnxruntime_cpu", {"graph_optimization": "disable"}),
              "tflite": ("tflite_cpu", {"xnnpack": False})}


def reference_case(case: Case) -> Case:
    """The case whose outputs ``case`` is compared with: same model, reference backend and options, fp32, dense, at
    the reference batch (1, or the batch a user's file fixes)."""
    source = case.model.to_ref().source_format()
    backend, options = _REFERENCE.get(source, ("tensorflow", {}))
    return replace(case, case_id=f"{case.model_label}-reference", backend=backend, backend_label=backend,
                   backend_options={"threads": None, **options}, precision="fp32", compression="none",
                   batch_size=case.reference_batch,
                   mode="latency", skip_reason=None)


def describe_reference(case: Case) -> str:
    """The reference in words, for the record: what a fidelity figure was measured against."""
    ref = reference_case(case)
    options = ", ".join(f"{k}: {v}" for k, v in ref.backend_options.items() if v is not None and k != "threads")
    return f"{ref.backend} fp32" + (f" ({options})" if options else "")


def is_reference(case: Case) -> bool:
    """Whether ``case`` runs exactly what the reference runs (then its fidelity is 1 by construction)."""
    ref = reference_case(case)
    options = {k: v for k, v in case.backend_options.items() if v is not None and k != "threads"}
    wanted = {k: v for k, v in ref.backend_options.items() if v is not None and k != "threads"}
    return ((case.backend, case.precision, case.compression, options)
            == (ref.backend, ref.precision, ref.compression, wanted))


# -- worker side ------------------------------------------------------------------------------------------------


def make_evaluation_set(layout: InputLayout, plans: Sequence[InputPlan], declared: Sequence[TensorSpec],
                        dataset: str | None, seed: int) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Inputs in :func:`model_zoo.inputs.make_samples` form (per batched input, samples stacked on a new leading
    axis, each keeping its batch axis of size 1; an unbatched input once) and labels, or None where there are none:
    a zoo model's held-out split, else the model's data (a data file's first DATA_FILE_SAMPLES samples, or
    model_zoo.inputs.judging_samples made from the descriptions: pictures or noise)."""
    if dataset:
        split = load_dataset(dataset)
        if len(plans) != 1 or plans[0].batch_axis != 0:
            raise ValueError(f"dataset {dataset} has one input batched on axis 0; the model has {len(plans)}")
        return [np.expand_dims(np.asarray(split.x_test, dtype=np.dtype(plans[0].dtype)), 1)], np.asarray(split.y_test)
    count = DATA_FILE_SAMPLES if layout.data_file is not None else judging_samples(plans)
    return layout_samples(layout, plans, declared, count, seed), None


def save_arrays(path: Path, names: Sequence[str], arrays: Sequence[np.ndarray], **extra: Any) -> None:
    """Arrays by position, with their model names alongside (npz keys must be plain identifiers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {f"a{i}": np.asarray(a) for i, a in enumerate(arrays)}
    payload.update({k: v for k, v in extra.items() if v is not None})
    np.savez(path, names=np.array(json.dumps(list(names))), **payload)


def stored_plans(extra: dict[str, np.ndarray], dtypes: Sequence[str]) -> list[InputPlan]:
    """How the saved evaluation inputs are laid out (each input's batch axis), as plans for :func:`run_batched`."""
    axes = json.loads(str(extra["batch_axes"])) if "batch_axes" in extra else [0] * len(dtypes)
    return [InputPlan(f"a{i}", dtype, axis, (), 0, 1) for i, (axis, dtype) in enumerate(zip(axes, dtypes, strict=True))]


def load_arrays(path: Path) -> tuple[list[str], list[np.ndarray], dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as data:
        names = json.loads(str(data["names"]))
        arrays = [data[f"a{i}"] for i in range(len(names))]
        extra = {k: data[k] for k in data.files if k != "names" and not re.fullmatch(r"a\d+", k)}
    return names, arrays, extra


def normalised(name: str) -> str:
    """TFLite calls an input 'serving_default_x:0', TensorFlow and tf2onnx call it 'x'."""
    name = name.lower().removeprefix("serving_default_")
    return re.sub(r":\d+$", "", name)


def match_order(wanted: Sequence[str], available: Sequence[str], what: str) -> list[int]:
    """For each wanted name, the index of the same tensor among ``available``: by name, else by position."""
    if len(wanted) != len(available):
        raise ValueError(f"the model has {len(wanted)} {what}(s), the reference {len(available)}")
    if len(wanted) == 1:
        return [0]
    for key in (str, normalised):  # exact names first: "out:0", "out:1" are one name once normalised
        index = {key(n): i for i, n in enumerate(available)}
        if len(index) == len(available) and all(key(n) in index for n in wanted) \
                and len({key(n) for n in wanted}) == len(wanted):
            return [index[key(n)] for n in wanted]
    return list(range(len(wanted)))


def run_batched(run: Callable[[list[np.ndarray]], list[np.ndarray]], plans: Sequence[InputPlan],
                arrays: Sequence[np.ndarray], batch_size: int, reference_batch: int | None = None,
                unit_shapes: Sequence[Sequence[int]] = (), output_names: Sequence[str] = ()) -> list[np.ndarray]:
    """Every sample of an evaluation set through ``run`` in calls of ``batch_size``; per output, the results
    stacked on a new leading axis, one entry per unit that fidelity compares (a sample, or a whole call).

    The reference runs at batch 1 (or at its model's fixed batch): each of its calls is one unit. A case at the
    reference's batch size (``reference_batch`` None or equal) keeps the same units; a case at another batch size
    cuts its outputs into samples along each output's batch axis, found against the reference's per-sample
    ``unit_shapes`` (see :func:`model_zoo.inputs.split_samples`), and drops the outputs of the padding that fills
    its last call (a session prepared for batch B takes only B: the final sample is repeated).
    """
    count = sample_count(plans, arrays)
    pieces: list[list[np.ndarray]] = []
    for start in range(0, count, batch_size):
        real = min(batch_size, count - start)
        outputs = run(assemble(plans, arrays, start, batch_size))
        if reference_batch is None or reference_batch == batch_size:
            pieces.append([np.array(o)[None] for o in outputs])
            continue
        names = list(output_names) or [str(i) for i in range(len(outputs))]
        pieces.append([split_samples(np.asarray(o), shape, batch_size, name)[:real]
                       for o, shape, name in zip(outputs, unit_shapes, names, strict=True)])
    return [np.concatenate([p[i] for p in pieces]) for i in range(len(pieces[0]))]
