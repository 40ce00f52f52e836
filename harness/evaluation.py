"""The fixed evaluation inputs every case of a model runs after its timing, and the reference that scores them.

Fidelity only means something when every case sees the same inputs as the reference. So one worker per model
and run, the REFERENCE worker, makes the evaluation set (the model's held-out labelled split when it has one,
else seeded random samples shaped by the reference model's own inputs), saves it with its outputs, and every
case worker then runs exactly those arrays, batched by its own batch size, after its measurement is done.

The reference is the TensorFlow fp32 model for zoo models, .keras files and SavedModels; a user's .onnx or
.tflite file is its own reference, run at fp32 on its CPU backend. Pruned variants are scored against the
dense reference: the point is to see what pruning costs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from harness.cases import Case

RANDOM_SAMPLES = 16  # models without a dataset: enough to see errors, cheap even for resnet50
REFERENCE_BATCH = 16
_REFERENCE_BACKEND = {"zoo": "tensorflow", "keras": "tensorflow", "savedmodel": "tensorflow",
                      "onnx": "onnxruntime_cpu", "tflite": "tflite_cpu"}


def reference_case(case: Case) -> Case:
    """The case whose outputs ``case`` is compared with: same model, reference backend, fp32, dense."""
    source = case.model.to_ref().source_format()
    backend = _REFERENCE_BACKEND.get(source, "tensorflow")
    return replace(case, case_id=f"{case.model_label}-reference", backend=backend, backend_label=backend,
                   backend_options={"threads": None}, precision="fp32", compression="none", batch_size=1,
                   mode="latency", skip_reason=None)


def is_reference(case: Case) -> bool:
    ref = reference_case(case)
    return (case.backend, case.precision, case.compression) == (ref.backend, ref.precision, ref.compression)


# -- worker side ------------------------------------------------------------------------------------------------


def make_evaluation_set(specs: Sequence[Any], hints: dict[str, Any], seed: int,
                        make_feeds: Callable[..., list[np.ndarray]]) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Inputs (one array per model input, sample axis first) and labels, or None where there are none."""
    dataset = hints.get("dataset")
    if dataset:
        from model_zoo.datasets import load_dataset

        split = load_dataset(dataset)
        if len(specs) != 1:
            raise ValueError(f"dataset {dataset} has one input; the model has {len(specs)}")
        return [np.asarray(split.x_test, dtype=np.dtype(specs[0].dtype))], np.asarray(split.y_test)
    # the sample count is ours to choose, whatever batch size the model was exported with
    unbatched = [replace(spec, shape=(None, *spec.shape[1:])) if spec.shape else spec for spec in specs]
    return make_feeds(unbatched, RANDOM_SAMPLES, hints, seed), None


def save_arrays(path: Path, names: Sequence[str], arrays: Sequence[np.ndarray], **extra: Any) -> None:
    """Arrays by position, with their model names alongside (npz keys must be plain identifiers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {f"a{i}": np.asarray(a) for i, a in enumerate(arrays)}
    payload.update({k: v for k, v in extra.items() if v is not None})
    np.savez(path, names=np.array(json.dumps(list(names))), **payload)


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
    index = {normalised(n): i for i, n in enumerate(available)}
    if all(normalised(n) in index for n in wanted):
        return [index[normalised(n)] for n in wanted]
    return list(range(len(wanted)))


def run_batched(run: Callable[[list[np.ndarray]], list[np.ndarray]], arrays: Sequence[np.ndarray],
                batch_size: int) -> list[np.ndarray]:
    """Every sample through ``run`` in batches of ``batch_size``; the last batch is padded by repeating its
    final sample (a session prepared for batch B takes only B) and the padding's outputs are dropped."""
    count = len(arrays[0])
    pieces: list[list[np.ndarray]] = []
    for start in range(0, count, batch_size):
        chunk = [a[start:start + batch_size] for a in arrays]
        real = len(chunk[0])
        if real < batch_size:
            chunk = [np.concatenate([c, np.repeat(c[-1:], batch_size - real, axis=0)]) for c in chunk]
        pieces.append([np.array(o[:real]) for o in run([np.ascontiguousarray(c) for c in chunk])])
    return [np.concatenate([p[i] for p in pieces]) for i in range(len(pieces[0]))]
