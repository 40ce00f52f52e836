"""Calibration data for full-integer quantization: what the int8 converters feed to find activation ranges.

Three sources, chosen by `Calibration.source`:

- "dataset": the model's TRAINING split (digits_cnn: `x_train`), never the held-out split that task accuracy
  is scored on, since calibrating on the test data would flatter the int8 result. A model without a dataset
  (most of the zoo, every user model) falls back to "random" and says so in the artefact's meta.json.
- "random": seeded uniform data shaped like each model input. Zoo models use their catalog value range
  (token ids below the vocabulary size, pixels in [0, 1)); user models get floats in [0, 1) and integers in
  {0, 1}, the only integer values that are safe for any index-like input whose range is unknown.
- an absolute path to a .npz file: one array per model input, matched by input name when the archive's names
  are the model's, otherwise in input order; checked for count, per-sample shape and dtype.

Light on purpose (NumPy only): `model_zoo.artifacts` calls `calibration_identity` while computing cache keys
in processes that must not import TensorFlow.
"""

from __future__ import annotations

import functools
import hashlib
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from model_zoo import cache
from model_zoo.catalog import CATALOG
from model_zoo.errors import ArtifactError

if TYPE_CHECKING:
    from model_zoo.artifacts import Calibration, ModelRef

SOURCES = ("dataset", "random")
RANDOM_SEED = 0
# Part of the cache key of int8 artefacts calibrated on random data: bump it when the generator changes.
RANDOM_RECIPE = 1
USER_FLOAT_RANGE = (0.0, 1.0)
USER_INT_RANGE = (0, 2)  # exclusive upper bound: {0, 1}


@dataclass(frozen=True)
class InputSpec:
    """One model input as the converters see it; `shape` is per sample (batch dimension removed)."""

    name: str
    shape: tuple[int | None, ...]  # None: a dynamic dimension
    dtype: str  # a NumPy dtype name, e.g. "float32"
    batch: int | None = None  # the batch dimension when the model fixes it, else None


@dataclass(frozen=True)
class CalibrationData:
    arrays: list[np.ndarray]  # one per input, in input order, with the sample axis first
    description: str  # what was used, for meta.json: "dataset digits (training split)", "random (…)", a path
    sha256: str  # of the arrays actually fed, so two artefacts can be compared for identical calibration

    @property
    def samples(self) -> int:
        return len(self.arrays[0]) if self.arrays else 0


def source_problem(calibration: Calibration) -> str | None:
    """Why a calibration setting is malformed, or None. A missing .npz is a build error, not this."""
    if isinstance(calibration.samples, bool) or not isinstance(calibration.samples, int) or calibration.samples < 1:
        return f"calibration samples must be a positive integer, got {calibration.samples!r}"
    source = calibration.source
    if source in SOURCES:
        return None
    if isinstance(source, str) and source.lower().endswith(".npz") and Path(source).is_absolute():
        return None
    return f"calibration source must be 'dataset', 'random' or an absolute path to a .npz file, got {source!r}"


def calibration_identity(model: ModelRef, calibration: Calibration) -> dict[str, Any]:
    """What determines the calibration data, for the cache key; computed without building anything.

    The dataset's and the .npz file's content hashes are part of it, so new data never meets an old artefact.
    Random data is a pure function of the recipe and the model's inputs, which the key already covers.
    """
    samples, source = calibration.samples, calibration.source
    if source in SOURCES:
        dataset = _dataset_of(model)
        if source == "dataset" and dataset is not None:
            return {"samples": samples, "source": "dataset", "data": _dataset_hash(dataset, samples)}
        identity: dict[str, Any] = {"samples": samples, "source": source, "random_recipe": RANDOM_RECIPE}
        if model.zoo is not None:
            zoo = CATALOG[model.zoo]
            identity["range"] = None if zoo.input_range is None else list(zoo.input_range)
        return identity
    return {"samples": samples, "source": "npz", "data": _npz_hash(Path(source))}


def calibration_data(model: ModelRef, calibration: Calibration, input_specs: Sequence[InputSpec]) -> CalibrationData:
    """The arrays to calibrate `model` with, checked against its inputs (ArtifactError names the mismatch)."""
    samples, source = calibration.samples, calibration.source
    if source in SOURCES:
        dataset = _dataset_of(model)
        if source == "dataset" and dataset is not None:
            from model_zoo.datasets import load_dataset

            arrays = [np.ascontiguousarray(load_dataset(dataset).x_train[:samples])]
            where = f"dataset {dataset} of {model.label}"
            _check(arrays, [None], input_specs, where)
            description = f"dataset {dataset} (training split)"
        else:
            arrays = random_arrays(input_specs, samples, _ranges(model, input_specs), what=model.describe())
            if source == "random":
                description = "random"
            else:
                owner = "zoo model" if model.zoo is not None else "user model"
                description = f"random ({owner} has no dataset)"
    else:
        arrays = _npz_arrays(Path(source), samples, input_specs)
        description = source
    return CalibrationData(arrays=arrays, description=description, sha256=arrays_hash(arrays))


def calibration_arrays(model: ModelRef, calibration: Calibration, input_specs: Sequence[InputSpec]) -> list[np.ndarray]:
    """Just the arrays of `calibration_data`: one per input, sample axis first, in input order."""
    return calibration_data(model, calibration, input_specs).arrays


def random_arrays(
    input_specs: Sequence[InputSpec],
    samples: int,
    ranges: Sequence[tuple[float, float]],
    what: str,
    seed: int = RANDOM_SEED,
) -> list[np.ndarray]:
    """Seeded uniform data per input; `ranges[i]` is [low, high) for input i (integers: high exclusive)."""
    rng = np.random.default_rng(seed)
    arrays = []
    for spec, (low, high) in zip(input_specs, ranges, strict=True):
        if any(d is None for d in spec.shape):
            raise ArtifactError(
                f"{what}: input {spec.name!r} has a dynamic per-sample shape {_show(spec.shape)}, so random "
                "calibration data cannot be made for it; give the calibration data as a .npz file"
            )
        shape = (samples, *spec.shape)
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            arrays.append(rng.uniform(low, high, size=shape).astype(dtype))
        elif dtype.kind in "iu":
            arrays.append(rng.integers(int(low), int(high), size=shape).astype(dtype))
        elif dtype.kind == "b":
            arrays.append(rng.integers(0, 2, size=shape).astype(dtype))
        else:
            raise ArtifactError(f"{what}: input {spec.name!r} has dtype {spec.dtype}, which accelbench cannot fill")
    return arrays


def arrays_hash(arrays: Sequence[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def batches(arrays: Sequence[np.ndarray], size: int, fixed: bool, what: str) -> list[list[np.ndarray]]:
    """Split the calibration arrays into batches of `size` samples.

    A model with a dynamic batch dimension takes a short last batch; one that fixes its batch size (`fixed`)
    only takes whole batches, so the remainder is dropped.
    """
    total = len(arrays[0])
    chunks = [[a[start : start + size] for a in arrays] for start in range(0, total, size)]
    if fixed:
        chunks = [chunk for chunk in chunks if len(chunk[0]) == size]
        if not chunks:
            raise ArtifactError(
                f"{what}: the model's batch size is fixed at {size}; calibration has only {total} samples"
            )
    return chunks


# --- internals -----------------------------------------------------------------------------------------


def _dataset_of(model: ModelRef) -> str | None:
    return CATALOG[model.zoo].dataset if model.zoo is not None else None


@functools.cache
def _dataset_hash(dataset: str, samples: int) -> str:
    from model_zoo.datasets import load_dataset

    return arrays_hash([load_dataset(dataset).x_train[:samples]])


def _npz_hash(path: Path) -> str:
    try:
        return cache.content_hash(path)
    except OSError as exc:
        raise ArtifactError(f"calibration file {path}: cannot read: {exc.strerror or exc}") from exc


def value_range(dtype: Any, known: Sequence[float] | None = None) -> tuple[float, float]:
    """[low, high) for generated values of one input: the zoo's declared range where there is one, else the
    user-model default. Timing inputs, evaluation inputs and int8 calibration all use this one rule, so a
    quantized model is never judged on values outside the range it was calibrated on."""
    if known is not None:
        return (known[0], known[1])
    return USER_FLOAT_RANGE if np.dtype(dtype).kind == "f" else USER_INT_RANGE


def _ranges(model: ModelRef, input_specs: Sequence[InputSpec]) -> list[tuple[float, float]]:
    zoo = CATALOG[model.zoo] if model.zoo is not None else None
    known = zoo.input_range if zoo is not None else None
    return [value_range(spec.dtype, known) for spec in input_specs]


def _npz_arrays(path: Path, samples: int, input_specs: Sequence[InputSpec]) -> list[np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            named = {name: archive[name] for name in archive.files}
    except FileNotFoundError as exc:
        raise ArtifactError(f"calibration file {path}: no such file") from exc
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ArtifactError(f"calibration file {path}: not a readable .npz archive: {exc}") from exc
    names = [spec.name for spec in input_specs]
    if len(named) != len(input_specs):
        raise ArtifactError(
            f"calibration file {path}: holds {len(named)} array(s) ({', '.join(named) or 'none'}), "
            f"the model has {len(input_specs)} input(s) ({', '.join(names)})"
        )
    if set(named) == set(names):  # by name
        arrays = [named[name] for name in names]
        labels = names
    else:  # in the archive's order
        arrays, labels = list(named.values()), list(named)
    lengths = {len(a) if a.ndim else 0 for a in arrays}
    if len(lengths) != 1 or 0 in lengths:
        raise ArtifactError(
            f"calibration file {path}: its arrays must share a non-empty first (sample) axis; "
            f"lengths {[len(a) if a.ndim else 0 for a in arrays]}"
        )
    _check(arrays, labels, input_specs, f"calibration file {path}")
    return [np.ascontiguousarray(a[:samples]) for a in arrays]


def _check(arrays: Sequence[np.ndarray], labels: Sequence[str | None], specs: Sequence[InputSpec], where: str) -> None:
    """Refuse data the converter would choke on later, with a message naming the input and the mismatch."""
    for array, label, spec in zip(arrays, labels, specs, strict=True):
        name = f"array {label!r} for input {spec.name!r}" if label and label != spec.name else f"input {spec.name!r}"
        sample = array.shape[1:]
        fits = len(sample) == len(spec.shape) and all(
            d is None or d == s for d, s in zip(spec.shape, sample, strict=True)
        )
        if not fits:
            raise ArtifactError(
                f"{where}: {name}: per-sample shape {_show(sample)} does not match the model's {_show(spec.shape)}"
            )
        if array.dtype != np.dtype(spec.dtype):
            raise ArtifactError(f"{where}: {name}: dtype {array.dtype} does not match the model's {spec.dtype}")


def _show(shape: Sequence[int | None]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + (",)" if len(shape) == 1 else ")")
