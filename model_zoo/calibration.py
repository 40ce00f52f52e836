"""Calibration data for full-integer quantization: what the int8 converters feed to find activation ranges.

Three sources, chosen by `Calibration.source`:

- "dataset": the model's TRAINING split (digits_cnn: `x_train`), never the held-out split that task accuracy
  is scored on, since calibrating on the test data would flatter the int8 result. A model without a dataset
  (most of the zoo, every user model) falls back to "random" and says so in the artefact's meta.json.
- "random": seeded data made as the scenario describes each input (model_zoo.inputs: shape, batch axis, value
  range, fixed values). Zoo models use their catalog value range (token ids below the vocabulary size, pixels
  in [0, 1)); undescribed user inputs get floats in [0, 1) and integers in {0, 1}, the only integer values that
  are safe for any index-like input whose range is unknown.
- an absolute path to a .npz file: one array per model input, matched by input name when the archive's names
  are the model's, otherwise in input order, laid out as the model takes it with the samples along the input's
  batch axis (an unbatched input: its one value); checked for count, shape and dtype.

Light on purpose (NumPy only): `model_zoo.artifacts` calls `calibration_identity` while computing cache keys
in processes that must not import TensorFlow.
"""

from __future__ import annotations

import functools
import hashlib
import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from model_zoo import cache
from model_zoo.catalog import CATALOG
from model_zoo.datasets import load_dataset
from model_zoo.errors import ArtifactError
from model_zoo.inputs import (
    InputError,
    InputLayout,
    InputPlan,
    TensorSpec,
    assemble,
    describe_data,
    fits_shape,
    make_samples,
    sample_count,
    show_shape,
)

if TYPE_CHECKING:
    from model_zoo.requests import Calibration, ModelRef

# The most a .npz archive's arrays may expand to: far beyond any calibration set, far below a bomb.
MAX_NPZ_BYTES = 4 << 30
SOURCES = ("dataset", "random")
RANDOM_SEED = 0
# Part of the cache key of int8 artefacts calibrated on random data: bump it when the generator changes.
RANDOM_RECIPE = 1
CHECK_SAMPLES = 16  # single-sample calls a converter's own fidelity check runs (fp16, int8)


@dataclass(frozen=True)
class CalibrationData:
    feeds: list[dict[str, np.ndarray]]  # one dict per converter call: input name → array, shaped for the model
    description: str  # what was used, for meta.json: "dataset digits (training split)", "random (…)", a path
    sha256: str  # of the samples actually fed, so two artefacts can be compared for identical calibration
    samples: int


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


def calibration_data(model: ModelRef, calibration: Calibration, declared: Sequence[TensorSpec],
                     layout: InputLayout, call_batch: int) -> CalibrationData:
    """The calls to calibrate ``model`` with: feed dicts (input name → array) of ``call_batch`` samples each (the
    model's own batch where it fixes one), made as the scenario describes every input, so a recurrent state is
    batched on its own axis and a sample rate keeps its value. ArtifactError names what does not fit."""
    samples, source = calibration.samples, calibration.source
    what = model.describe()
    try:
        plans = (layout.as_noise() if source == "random" else layout).plan(declared, what)
    except InputError as error:
        raise ArtifactError(f"{what}: {error}") from None
    if source in SOURCES:
        dataset = _dataset_of(model)
        if source == "dataset" and dataset is not None:
            arrays = [np.expand_dims(np.ascontiguousarray(load_dataset(dataset).x_train[:samples]), 1)]
            description = f"dataset {dataset} (training split)"
        else:
            arrays = make_samples(plans, samples, RANDOM_SEED)
            description = "random" if source == "random" else f"the model's data: {describe_data(plans)}"
    else:
        arrays = _npz_samples(Path(source), samples, plans, declared)
        description = source
    fixed = _fixed_batch(plans, declared)
    size = fixed or call_batch
    count = sample_count(plans, arrays)
    starts = range(0, count - size + 1 if fixed else count, size)
    if not starts:
        raise ArtifactError(f"{what}: the model's batch size is fixed at {size}; calibration has only {count} samples")
    feeds = [dict(zip((p.name for p in plans), assemble(plans, arrays, start, min(size, count - start)), strict=True))
             for start in starts]
    return CalibrationData(feeds=feeds, description=description, sha256=arrays_hash(arrays), samples=count)


def check_feeds(model: ModelRef, declared: Sequence[TensorSpec], layout: InputLayout,
                samples: int = CHECK_SAMPLES) -> list[dict[str, np.ndarray]]:
    """A few single-sample calls for a converter's own fidelity check (fp16, int8): the model's held-out data
    where it has a dataset, else seeded random data as the scenario describes the inputs."""
    plans = layout.plan(declared, model.describe())
    dataset = _dataset_of(model)
    if dataset is not None:
        arrays = [np.expand_dims(np.ascontiguousarray(load_dataset(dataset).x_test[:samples]), 1)]
    else:
        arrays = make_samples(plans, samples, RANDOM_SEED + 1)
    size = _fixed_batch(plans, declared) or 1
    count = sample_count(plans, arrays)
    return [dict(zip((p.name for p in plans), assemble(plans, arrays, start, size), strict=True))
            for start in range(0, max(count - size + 1, 1), size)]


def _fixed_batch(plans: Sequence[InputPlan], declared: Sequence[TensorSpec]) -> int | None:
    """The batch size the model file fixes (a dim given on a batched input's batch axis), or None when dynamic."""
    for plan, spec in zip(plans, declared, strict=True):
        if plan.batch_axis is not None and plan.batch_axis < len(spec.shape) and spec.shape[plan.batch_axis]:
            return int(spec.shape[plan.batch_axis])  # type: ignore[arg-type]
    return None


def arrays_hash(arrays: Sequence[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


# --- internals -----------------------------------------------------------------------------------------


def _dataset_of(model: ModelRef) -> str | None:
    return CATALOG[model.zoo].dataset if model.zoo is not None else None


@functools.cache
def _dataset_hash(dataset: str, samples: int) -> str:
    return arrays_hash([load_dataset(dataset).x_train[:samples]])


def _npz_hash(path: Path) -> str:
    try:
        return cache.content_hash(path)
    except OSError as exc:
        raise ArtifactError(f"calibration file {path}: cannot read: {exc.strerror or exc}") from exc


def _npz_samples(path: Path, samples: int, plans: Sequence[InputPlan],
                 declared: Sequence[TensorSpec]) -> list[np.ndarray]:
    """A user's calibration archive as per-sample arrays (see model_zoo.inputs.make_samples).

    One array per model input, by input name or else in input order, each laid out as the model takes it with the
    samples along the input's batch axis (whatever the model's declared batch size: a dynamic batch is fine); an
    input that is not batched (a state shared by the batch, a sample rate) is its one value. Only the samples used
    are read (NpzArchive): a 3 MB archive may expand to gigabytes."""
    archive = NpzArchive(path)
    named = archive.headers
    names = [plan.name for plan in plans]
    if len(named) != len(plans):
        raise ArtifactError(
            f"calibration file {path}: holds {len(named)} array(s) ({', '.join(named) or 'none'}), "
            f"the model has {len(plans)} input(s) ({', '.join(names)})"
        )
    pairs = [(name, named[name]) for name in names] if set(named) == set(names) else list(named.items())
    result = []
    for (label, header), plan, spec in zip(pairs, plans, declared, strict=True):
        where = f"calibration file {path}: " + (f"array {label!r} for input {plan.name!r}" if label != plan.name
                                                else f"input {plan.name!r}")
        shape, dtype = header.shape, header.dtype
        if dtype != np.dtype(plan.dtype):
            raise ArtifactError(f"{where}: dtype {dtype} does not match the model's {plan.dtype}")
        axis = plan.batch_axis
        if axis is None:
            if not fits_shape(shape, spec.shape):
                raise ArtifactError(f"{where}: shape {show_shape(shape)} does not fit the model's "
                                    f"{show_shape(spec.shape)}")
            result.append(archive.read(label))
            continue
        if len(shape) != len(spec.shape) or shape[axis] == 0:
            raise ArtifactError(f"{where}: shape {show_shape(shape)} does not fit the model's {show_shape(spec.shape)} "
                                f"with the samples along axis {axis}")
        rest = shape[:axis] + shape[axis + 1:]
        if not fits_shape(rest, spec.shape[:axis] + spec.shape[axis + 1:]):
            raise ArtifactError(f"{where}: per-sample shape {show_shape(rest)} does not fit the model's "
                                f"{show_shape(spec.shape)} (batch axis {axis})")
        used = min(samples, shape[axis])
        array = archive.read(label, leading=used if axis == 0 else None)
        kept = np.take(array, np.arange(used), axis=axis)
        result.append(np.expand_dims(np.moveaxis(kept, axis, 0), axis + 1))
    counts = {len(a) for a, p in zip(result, plans, strict=True) if p.batch_axis is not None}
    if len(counts) > 1:
        raise ArtifactError(f"calibration file {path}: the batched inputs hold different numbers of samples")
    return result


@dataclass(frozen=True)
class NpyHeader:
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class NpzArchive:
    """A .npz read member by member from its headers, never whole: np.load would decompress a member entirely
    (a 3 MB deflate bomb took 3.9 GB of memory for 20 samples). An archive whose arrays would expand beyond
    MAX_NPZ_BYTES, or that holds pickled objects, is refused before anything is decompressed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with zipfile.ZipFile(path) as archive:
                self.headers = {info.filename.removesuffix(".npy"): self._header(archive, info)
                                for info in archive.infolist() if info.filename.endswith(".npy")}
        except FileNotFoundError as exc:
            raise ArtifactError(f"calibration file {path}: no such file") from exc
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise ArtifactError(f"calibration file {path}: not a readable .npz archive: {exc}") from exc
        total = sum(header.nbytes for header in self.headers.values())
        if total > MAX_NPZ_BYTES:
            raise ArtifactError(f"calibration file {path}: its arrays expand to {total / 2**30:.1f} GiB, over the "
                                f"{MAX_NPZ_BYTES / 2**30:g} GiB limit on a .npz archive")

    def _header(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> NpyHeader:
        with archive.open(info) as member:
            shape, fortran_order, dtype = _read_npy_header(member)
        if dtype.hasobject:
            raise ValueError(f"array {info.filename!r} holds Python objects (a pickle): accelbench reads numbers only")
        if any(int(d) < 0 for d in shape):
            raise ValueError(f"array {info.filename!r} declares a negative dimension {tuple(shape)}")
        return NpyHeader(tuple(shape), dtype, fortran_order)

    def read(self, name: str, leading: int | None = None) -> np.ndarray:
        """One array, or only its first `leading` entries along axis 0 (a C-ordered array stores them first)."""
        header = self.headers[name]
        shape = header.shape
        if leading is not None and not header.fortran_order and shape:
            shape = (min(leading, shape[0]), *shape[1:])
        count = math.prod(shape)
        try:
            with zipfile.ZipFile(self.path) as archive, archive.open(f"{name}.npy") as member:
                _read_npy_header(member)
                data = member.read(count * header.dtype.itemsize)
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise ArtifactError(f"calibration file {self.path}: array {name!r} cannot be read: {exc}") from exc
        if len(data) != count * header.dtype.itemsize:
            raise ArtifactError(f"calibration file {self.path}: array {name!r} is shorter than its header says")
        order = "F" if header.fortran_order else "C"
        return np.frombuffer(data, dtype=header.dtype, count=count).reshape(shape, order=order).copy()


def _read_npy_header(member: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    """numpy's own .npy header reader (format versions 1, 2 and 3), leaving the stream at the array's data."""
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(member)
    return np.lib.format.read_array_header_2_0(member)
