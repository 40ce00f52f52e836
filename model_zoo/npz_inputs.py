"""Users' own inputs from a .npz archive: int8 calibration (`calibration: {source: inputs.npz}`) and a model's data
(`data: inputs.npz`: timing inputs, the fidelity evaluation set and calibration alike).

One array per model input, by input name or else in input order, laid out as the model takes it with the samples
along the input's batch axis. Read member by member from the headers, never whole: a 3 MB deflate bomb took 3.9 GB
of memory through np.load. NumPy only: workers read their timing inputs from here.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model_zoo.errors import ArtifactError
from model_zoo.inputs import (
    InputLayout,
    InputPlan,
    TensorSpec,
    assemble,
    fits_shape,
    make_feeds,
    make_samples,
    show_shape,
)

# The most a .npz archive's arrays may expand to: far beyond any calibration set, far below a bomb.
MAX_NPZ_BYTES = 4 << 30


def layout_samples(layout: InputLayout, plans: Sequence[InputPlan], declared: Sequence[TensorSpec], samples: int,
                   seed: int) -> list[np.ndarray]:
    """``samples`` samples per input (model_zoo.inputs.make_samples form) as the layout says: from its data file
    where it names one (as many as the file holds, up to ``samples``), else made from the descriptions."""
    if layout.data_file is not None:
        return npz_samples(layout.data_file, samples, plans, declared, "data file")
    return make_samples(plans, samples, seed)


def layout_feeds(layout: InputLayout, plans: Sequence[InputPlan], declared: Sequence[TensorSpec], batch: int,
                 seed: int) -> list[np.ndarray]:
    """One call's inputs at ``batch`` as the layout says: the data file's first samples (the last repeated where it
    holds fewer), else made from the descriptions."""
    if layout.data_file is not None:
        return assemble(plans, npz_samples(layout.data_file, batch, plans, declared, "data file"), 0, batch)
    return make_feeds(plans, batch, seed)


def npz_samples(path: Path, samples: int, plans: Sequence[InputPlan], declared: Sequence[TensorSpec],
                what: str = "calibration file") -> list[np.ndarray]:
    """A user's archive of inputs as per-sample arrays (see model_zoo.inputs.make_samples); ``what`` names it in
    errors ("calibration file", "data file").

    One array per model input, by input name or else in input order, each laid out as the model takes it with the
    samples along the input's batch axis (whatever the model's declared batch size: a dynamic batch is fine); an
    input that is not batched (a state shared by the batch, a sample rate) is its one value. Only the samples used
    are read (NpzArchive): a 3 MB archive may expand to gigabytes."""
    archive = NpzArchive(path, what)
    named = archive.headers
    names = [plan.name for plan in plans]
    if len(named) != len(plans):
        raise ArtifactError(
            f"{what} {path}: holds {len(named)} array(s) ({', '.join(named) or 'none'}), "
            f"the model has {len(plans)} input(s) ({', '.join(names)})"
        )
    pairs = [(name, named[name]) for name in names] if set(named) == set(names) else list(named.items())
    result = []
    for (label, header), plan, spec in zip(pairs, plans, declared, strict=True):
        where = f"{what} {path}: " + (f"array {label!r} for input {plan.name!r}" if label != plan.name
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
        if what == "data file" and tuple(rest) != tuple(plan.sample_shape):  # the session is sized as described
            raise ArtifactError(f"{where}: per-sample shape {show_shape(rest)} is not the described "
                                f"{show_shape(plan.sample_shape)}: describe the input's shape as the file holds it")
        used = min(samples, shape[axis])
        array = archive.read(label, leading=used if axis == 0 else None)
        kept = np.take(array, np.arange(used), axis=axis)
        result.append(np.expand_dims(np.moveaxis(kept, axis, 0), axis + 1))
    counts = {len(a) for a, p in zip(result, plans, strict=True) if p.batch_axis is not None}
    if len(counts) > 1:
        raise ArtifactError(f"{what} {path}: the batched inputs hold different numbers of samples")
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

    def __init__(self, path: Path, what: str = "calibration file") -> None:
        self.path, self.what = path, what
        try:
            with zipfile.ZipFile(path) as archive:
                self.headers = {info.filename.removesuffix(".npy"): self._header(archive, info)
                                for info in archive.infolist() if info.filename.endswith(".npy")}
        except FileNotFoundError as exc:
            raise ArtifactError(f"{what} {path}: no such file") from exc
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise ArtifactError(f"{what} {path}: not a readable .npz archive: {exc}") from exc
        total = sum(header.nbytes for header in self.headers.values())
        if total > MAX_NPZ_BYTES:
            raise ArtifactError(f"{what} {path}: its arrays expand to {total / 2**30:.1f} GiB, over the "
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
            raise ArtifactError(f"{self.what} {self.path}: array {name!r} cannot be read: {exc}") from exc
        if len(data) != count * header.dtype.itemsize:
            raise ArtifactError(f"{self.what} {self.path}: array {name!r} is shorter than its header says")
        order = "F" if header.fortran_order else "C"
        return np.frombuffer(data, dtype=header.dtype, count=count).reshape(shape, order=order).copy()


def _read_npy_header(member: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    """numpy's own .npy header reader (format versions 1, 2 and 3), leaving the stream at the array's data."""
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(member)
    return np.lib.format.read_array_header_2_0(member)
