"""Every model input described by name: its shape, where its batch axis is (or none), its dtype and its values.

Users' models are not single-image classifiers. A voice-activity model takes audio batched on axis 0, a recurrent
state ``[2, N, 128]`` batched on axis 1, and a scalar sample rate that is not batched at all; an OCR detector
leaves H and W dynamic. One description per input, written in the scenario (``models[i].inputs``), drives all
three places that make data for a model, so they can never disagree: the timing inputs (worker), the fidelity
evaluation set (reference worker) and the int8 calibration / fp16 check data (zoo build). Whatever the model
itself says (fixed dims, dim names shared with other inputs, declared dtypes, rank-0 scalars) is the default, so
the common case needs no description at all.

NumPy only: workers and the build process import this, and neither may pay for TensorFlow here.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from model_zoo.images import draw, picture_order
from model_zoo.limits import MAX_FEED_ENV, max_feed_bytes

# Values for inputs whose range nobody declared: floats in [0, 1), integers in {0, 1} (the only integers that are
# safe for an index-like input of unknown range).
USER_FLOAT_RANGE = (0.0, 1.0)
USER_INT_RANGE = (0, 2)  # exclusive upper bound
AUTO = "auto"  # batch_axis not given: inferred from the model
GENERATE_CHUNK = 2**20  # values drawn per step: an input is made in its own dtype, never as a float64 copy of it
# Part of the identity of everything made from pictures (int8 calibration, check data): bump it when the way
# pictures are drawn (model_zoo.images) changes.
PICTURES_RECIPE = 2


class InputError(ValueError):
    """A model input that cannot be fed as described; the message names the input and what to write instead."""


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output as the model declares it: ``shape`` with None for dynamic dims, ``dtype`` a NumPy
    name. The one type for it: the backends' sessions, the build process (read from the file, no runtime loaded)
    and the scenario's checks all use it."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str
    # ONNX's symbolic dim names ("batch", "p2o.DynamicDimension.0"), None where unnamed: the same name on two
    # inputs is the same dimension, which is how a recurrent state's batch axis is found without being told.
    dim_names: tuple[str | None, ...] | None = None


@dataclass(frozen=True)
class InputDescription:
    """What the scenario says about one input; every field optional.

    ``shape`` is per sample (the full shape without the batch axis). ``batch_axis`` is where the batch goes in
    the full shape, None for an input that is not batched, AUTO to infer it. ``value`` fixes the input's value
    (a sample rate), which makes it unbatched.
    """

    shape: tuple[int, ...] | None = None
    batch_axis: int | str | None = AUTO
    dtype: str | None = None
    range: tuple[float, float] | None = None
    value: Any = None
    data: str | None = None  # "noise", "images", "documents"; None: the model's (InputLayout.data)
    mean: tuple[float, ...] | None = None  # image inputs: subtracted after the pixels are mapped to the range
    std: tuple[float, ...] | None = None  # image inputs: divided by after the mean
    channels: str | None = None  # image inputs: "rgb" (default) or "bgr"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.shape is not None:
            data["shape"] = list(self.shape)
        if self.batch_axis != AUTO:
            data["batch_axis"] = self.batch_axis
        for key in ("dtype", "value", "data", "channels"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        for key in ("range", "mean", "std"):
            if getattr(self, key) is not None:
                data[key] = list(getattr(self, key))
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InputDescription:
        shape, low_high = data.get("shape"), data.get("range")
        mean, std = data.get("mean"), data.get("std")
        return cls(shape=None if shape is None else tuple(int(d) for d in shape),
                   batch_axis=data.get("batch_axis", AUTO), dtype=data.get("dtype"),
                   range=None if low_high is None else (float(low_high[0]), float(low_high[1])),
                   value=data.get("value"), data=data.get("data"),
                   mean=None if mean is None else tuple(float(v) for v in mean),
                   std=None if std is None else tuple(float(v) for v in std), channels=data.get("channels"))


@dataclass(frozen=True)
class InputPlan:
    """One input, resolved: how to make its data at any batch size."""

    name: str
    dtype: str
    batch_axis: int | None  # None: not batched (the same array whatever the batch size)
    sample_shape: tuple[int, ...]  # the full shape with the batch axis taken out
    low: float
    high: float
    value: np.ndarray | None = field(default=None, compare=False)
    data: str = "noise"  # "noise": uniform in [low, high); "images" / "documents": pictures (model_zoo.images)
    channel_axis: int | None = None  # pictures: the channel axis of the sample shape (0: CHW, 2: HWC)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    bgr: bool = False

    @property
    def batched(self) -> bool:
        return self.batch_axis is not None

    def shape(self, batch: int) -> tuple[int, ...]:
        if self.batch_axis is None:
            return self.sample_shape
        dims = list(self.sample_shape)
        dims.insert(self.batch_axis, batch)
        return tuple(dims)

    def nbytes(self, batch: int) -> int:
        """The size of this input's data for one call at ``batch`` (exact: Python integers, no overflow)."""
        if self.value is not None:
            return int(self.value.nbytes)
        return math.prod(self.shape(batch)) * np.dtype(self.dtype).itemsize

    def generate(self, rng: np.random.Generator, batch: int, pictures: Sequence[int] | None = None) -> np.ndarray:
        """Seeded data for one call at ``batch``: the fixed value if there is one, pictures where the input takes
        them (cut from the pictures numbered ``pictures``, default: in turn, see model_zoo.images.picture_order),
        else uniform in [low, high).

        Drawn a chunk at a time into an array of the input's own dtype: drawn whole, a float32 input of 1 GiB
        passed through 2 GiB of float64 first. The draws are the same as one call's (each value takes the
        generator's next number), so the data does not depend on the chunk size."""
        if self.value is not None:
            return self.value.copy()
        shape, dtype = self.shape(batch), np.dtype(self.dtype)
        if self.data != "noise":
            return self._pictures(rng, batch, pictures)
        if dtype.kind not in "fiub":
            raise InputError(f"input {self.name!r} has dtype {self.dtype}, which accelbench cannot generate")
        data = np.empty(shape, dtype=dtype)
        flat = data.reshape(-1)  # a view: ``data`` is contiguous
        for start in range(0, flat.size, GENERATE_CHUNK):
            count = min(GENERATE_CHUNK, flat.size - start)
            if dtype.kind == "f":
                flat[start:start + count] = rng.uniform(self.low, self.high, size=count)
            elif dtype.kind in "iu":
                flat[start:start + count] = rng.integers(int(self.low), int(self.high), size=count)
            else:
                flat[start:start + count] = rng.random(count) > 0.5
        return data


    def _pictures(self, rng: np.random.Generator, batch: int, which: Sequence[int] | None) -> np.ndarray:
        """``batch`` pictures (batch axis 0), each mapped from [0, 1] pixels to [low, high), then normalised by
        mean and std, in the input's channel order and layout and dtype (integers: floored into [low, high))."""
        assert self.channel_axis is not None and self.batch_axis == 0
        height, width = (dim for axis, dim in enumerate(self.sample_shape) if axis != self.channel_axis)
        channels = self.sample_shape[self.channel_axis]
        dtype = np.dtype(self.dtype)
        out = np.empty(self.shape(batch), dtype=dtype)
        which = picture_order(rng, self.data, batch) if which is None else which
        if len(which) != batch:
            raise ValueError(f"{len(which)} pictures named for a batch of {batch}")
        for index, picture in enumerate(which):
            pixels = draw(rng, self.data, height, width, channels, picture)
            if self.bgr:
                pixels = pixels[..., ::-1]
            values = self.low + (self.high - self.low) * pixels.astype(np.float64)
            if self.mean is not None:
                values = values - np.asarray(self.mean)
            if self.std is not None:
                values = values / np.asarray(self.std)
            if self.channel_axis == 0:
                values = values.transpose(2, 0, 1)
            if dtype.kind in "iu":
                values = np.clip(np.floor(values), self.low, self.high - 1)
            out[index] = values
        return out


def _file_sha256(path: Path) -> str:
    """The file's content hash (memoised by path, size and mtime: identities are asked for per case); a file that
    cannot be read hashes as its path (the build then names the error)."""
    from model_zoo.cache import content_hash

    try:
        return content_hash(path)
    except OSError:
        return f"unreadable:{path}"


def pictures_recipe() -> str:
    """How pictures are drawn, for identities: our recipe and the versions of the wheels the pictures and the
    resizing come from (a new scikit-image may ship other pixels or resize differently)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = []
    for package in ("scikit-image", "scikit-learn"):
        try:
            versions.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            versions.append(f"{package} missing")
    return f"{PICTURES_RECIPE}; {'; '.join(versions)}"


def picture_channel_axis(sample_shape: Sequence[int], dtype: str) -> int | None:
    """Where the channels are in a sample shape that looks like a picture, or None: three dimensions, 1 or 3
    channels first (CHW) or last (HWC) and not both, sides of at least MIN_SIDE, floats or uint8."""
    from model_zoo.images import MIN_SIDE

    if len(sample_shape) != 3 or not (np.dtype(dtype).kind == "f" or np.dtype(dtype) == np.uint8):
        return None
    first, last = sample_shape[0] in (1, 3), sample_shape[2] in (1, 3)
    if first == last:
        return None
    sides = sample_shape[1:] if first else sample_shape[:2]
    if min(sides) < MIN_SIDE:
        return None
    return 0 if first else 2


@dataclass(frozen=True)
class InputLayout:
    """What a scenario says about all inputs of one model; travels as JSON to workers and to the build process.

    ``sample_shape`` is the older model-level ``input_shape``: the per-sample shape of every batched input whose
    rank fits it. ``value_range`` is the zoo catalog's declared range (token ids below the vocabulary size).
    """

    inputs: tuple[tuple[str, InputDescription], ...] = ()
    sample_shape: tuple[int, ...] | None = None
    value_range: tuple[float, float] | None = None
    # what fills inputs the description leaves to the model: "auto" (pictures for picture-shaped inputs, noise for
    # the rest: a user's file), "noise" (the zoo), "images" or "documents" (the scenario's model-level data:)
    data: str = "noise"

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> InputLayout:
        data = data or {}
        shape, low_high = data.get("input_shape"), data.get("input_range")
        described = data.get("inputs") or {}
        return cls(inputs=tuple((name, InputDescription.from_json(d)) for name, d in described.items()),
                   sample_shape=None if shape is None else tuple(int(d) for d in shape),
                   value_range=None if low_high is None else (float(low_high[0]), float(low_high[1])),
                   data=data.get("data") or "noise")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.inputs:
            data["inputs"] = {name: d.to_json() for name, d in self.inputs}
        if self.sample_shape is not None:
            data["input_shape"] = list(self.sample_shape)
        if self.value_range is not None:
            data["input_range"] = list(self.value_range)
        if self.data != "noise":
            data["data"] = self.data
        return data

    def identity(self) -> str:
        """Canonical text of the layout, for cache keys: calibration data depends on every field, and on how
        pictures are drawn (PICTURES_RECIPE) wherever they may be."""
        data = self.to_json()
        if self.data_file is not None:  # new samples in the same file are new data
            data["data_sha256"] = _file_sha256(self.data_file)
        elif self.data != "noise" or any(d.data not in (None, "noise") for _, d in self.inputs):
            data["pictures_recipe"] = pictures_recipe()
        return json.dumps(data, sort_keys=True)

    @property
    def data_file(self) -> Path | None:
        """The user's .npz of inputs (``data: inputs.npz``, an absolute path by now), or None."""
        return Path(self.data) if self.data.lower().endswith(".npz") else None

    def as_noise(self) -> InputLayout:
        """The same inputs filled with noise (calibration: {source: random}): pictures' settings dropped."""
        inputs = tuple((name, replace(d, data="noise", mean=None, std=None, channels=None)) for name, d in self.inputs)
        return replace(self, inputs=inputs, data="noise")

    @property
    def described(self) -> dict[str, InputDescription]:
        return dict(self.inputs)

    def plan(self, declared: Sequence[TensorSpec], what: str = "the model") -> list[InputPlan]:
        """One plan per declared input, in the model's order; InputError names the first input that cannot be
        planned and the description that would fix it."""
        described = self.described
        unknown = sorted(set(described) - {d.name for d in declared})
        if unknown:
            names = ", ".join(repr(d.name) for d in declared)
            raise InputError(f"{what} has no input named {unknown[0]!r} (its inputs: {names})")
        batch_name = _batch_dim_name(declared)
        return [self._plan_one(spec, described.get(spec.name, InputDescription()), batch_name) for spec in declared]

    def shapes(self, declared: Sequence[TensorSpec], batch: int, what: str = "the model") -> list[tuple[int, ...]]:
        """The shape of every input at ``batch``; what a runtime must be resized to before it allocates."""
        plans = self.plan(declared, what)
        if problem := batch_problem(plans, declared, batch):
            raise InputError(problem)
        return [plan.shape(batch) for plan in plans]

    def _plan_one(self, spec: TensorSpec, desc: InputDescription, batch_name: str | None) -> InputPlan:
        declared = tuple(spec.shape)
        value = None
        dtype = np.dtype(spec.dtype)
        if desc.dtype is not None and np.dtype(desc.dtype) != dtype:
            raise InputError(f"input {spec.name!r}: the model declares dtype {dtype.name}, not {desc.dtype}")
        if desc.value is not None:
            try:
                value = np.asarray(desc.value, dtype=dtype)
            except (TypeError, ValueError) as error:
                raise InputError(f"input {spec.name!r}: value {desc.value!r} is not a {dtype.name}: {error}") from None
            if not fits_shape(value.shape, declared):
                raise InputError(f"input {spec.name!r}: value of shape {list(value.shape)} does not fit the model's "
                                 f"{show_shape(declared)}")
            return InputPlan(spec.name, dtype.name, None, tuple(value.shape), 0, 0, value)
        batch_axis = self._batch_axis(spec, desc, batch_name)
        rest = declared if batch_axis is None else declared[:batch_axis] + declared[batch_axis + 1:]
        sample = desc.shape
        if sample is None and self.sample_shape is not None and batch_axis is not None \
                and len(self.sample_shape) == len(rest) and fits_shape(self.sample_shape, rest):
            sample = self.sample_shape
        if sample is None:
            if any(d is None for d in rest):
                example = "[" + ", ".join("N" if d is None else str(d) for d in rest) + "]"
                raise InputError(
                    f"input {spec.name!r} has dynamic dimensions {show_shape(declared)}; describe it in the scenario, "
                    f"e.g. inputs: {{{spec.name}: {{shape: {example}}}}} (the shape without the batch axis, "
                    "N replaced by a size)")
            sample = tuple(int(d) for d in rest)  # type: ignore[arg-type]
        if not fits_shape(sample, rest):
            raise InputError(f"input {spec.name!r}: shape {list(sample)} does not fit the model's "
                             f"{show_shape(declared)}"
                             + ("" if batch_axis is None else f" without its batch axis {batch_axis}"))
        channel_axis = picture_channel_axis(sample, dtype.name) if batch_axis == 0 else None
        kind = self._data_kind(spec.name, desc, tuple(sample), channel_axis)
        default = USER_FLOAT_RANGE if dtype.kind == "f" else (0, 256) if kind != "noise" else USER_INT_RANGE
        low, high = desc.range or self.value_range or default
        if not low < high:
            raise InputError(f"input {spec.name!r}: range [{low}, {high}) is empty")
        if kind == "noise":
            if desc.mean is not None or desc.std is not None or desc.channels is not None:
                raise InputError(f"input {spec.name!r}: mean, std and channels describe pictures, and this input is "
                                 "filled with noise (give it data: images)")
            return InputPlan(spec.name, dtype.name, batch_axis, tuple(sample), low, high)
        channels = sample[channel_axis]  # type: ignore[index]
        for key in ("mean", "std"):
            values = getattr(desc, key)
            if values is not None and len(values) not in (1, channels):
                raise InputError(f"input {spec.name!r}: {key} has {len(values)} values for {channels} channel(s)")
        if desc.std is not None and min(desc.std) <= 0:
            raise InputError(f"input {spec.name!r}: std must be positive, not {list(desc.std)}")
        return InputPlan(spec.name, dtype.name, batch_axis, tuple(sample), low, high, data=kind,
                         channel_axis=channel_axis, mean=desc.mean, std=desc.std, bgr=desc.channels == "bgr")

    def _data_kind(self, name: str, desc: InputDescription, sample: tuple[int, ...],
                   channel_axis: int | None) -> str:
        """What fills the input: what its description says, else the model's data; "auto" picks pictures for a
        three-channel picture-shaped input (documents where it is three times as wide as high: a line of text) and
        noise for the rest (a one-channel input may be a spectrogram: pictures there only when asked). Pictures
        asked for an input that is no picture are an error where the input's description asks, noise where the
        model-level data: does (a model's other inputs: a state, a scalar)."""
        wanted = desc.data or self.data
        if wanted == "noise" or self.data_file is not None:  # a data file's samples are used as they are
            return "noise"
        if channel_axis is None:
            if desc.data is not None:
                raise InputError(f"input {name!r}: data: {desc.data} fills inputs shaped like pictures (batch on "
                                 f"axis 0, then 1 or 3 channels first or last and two sides of at least 8); its "
                                 f"sample shape is {list(sample)}: give it data: noise")
            return "noise"
        if wanted != "auto":
            return wanted
        if sample[channel_axis] != 3:  # one channel is as often a spectrogram as a grey picture: noise unless told
            return "noise"
        height, width = (dim for axis, dim in enumerate(sample) if axis != channel_axis)
        return "documents" if width >= 3 * height else "images"

    @staticmethod
    def _batch_axis(spec: TensorSpec, desc: InputDescription, batch_name: str | None) -> int | None:
        rank = len(spec.shape)
        if desc.batch_axis is None:
            return None
        if desc.batch_axis != AUTO:
            axis = int(desc.batch_axis)
            if not 0 <= axis < max(rank, 1) or rank == 0:
                raise InputError(f"input {spec.name!r}: batch_axis {axis} is outside its rank-{rank} shape "
                                 f"{show_shape(spec.shape)}")
            return axis
        if rank == 0:
            return None  # a scalar is never batched
        names = getattr(spec, "dim_names", None) or ()
        if batch_name is not None and names.count(batch_name) == 1:
            return list(names).index(batch_name)
        return 0


def _batch_dim_name(declared: Sequence[TensorSpec]) -> str | None:
    """The symbolic name the model gives its batch dimension, if it names one: the most common name on axis 0.
    Exporters reuse it on every batched input ("batch" on the state's axis 1 of a recurrent model)."""
    first = Counter(names[0] for spec in declared
                    if (names := getattr(spec, "dim_names", None)) and meaningful_dim_name(names[0]))
    return first.most_common(1)[0][0] if first else None


def meaningful_dim_name(name: str | None) -> bool:
    """Exporters write "?" or "" for a dimension they know nothing about; such a name ties no two axes together."""
    return bool(name) and name not in ("?", "unk__", "-1")


def onnx_declared(path: str) -> list[TensorSpec]:
    """The graph inputs of an ONNX file (initializers that old exporters also list as inputs left out), with
    their dim names; a dim_value of 0 or below (PaddlePaddle's exporter writes -1) is dynamic."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    graph = onnx.load(path, load_external_data=False).graph
    constants = {init.name for init in graph.initializer}
    declared = []
    for value in graph.input:
        if value.name in constants:
            continue
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim]
        names = [d.dim_param if d.HasField("dim_param") and meaningful_dim_name(d.dim_param) else None
                 for d in tensor.shape.dim]
        declared.append(TensorSpec(value.name, tuple(dims), tensor_dtype_to_np_dtype(tensor.elem_type).name,
                                 tuple(names)))
    return declared


def describe_data(plans: Sequence[InputPlan]) -> str:
    """What fills the inputs, in words, for meta.json and the record: "images for 'x'; noise for 'state', 'sr'"."""
    from model_zoo.images import KINDS

    kinds: dict[str, list[str]] = {}
    for plan in plans:
        kind = "a fixed value" if plan.value is not None else plan.data
        kinds.setdefault(kind, []).append(repr(plan.name))
    sources = {"images": "photographs from scikit-image and scikit-learn, random crops",
               "documents": "document scans from scikit-image, random crops"}
    return "; ".join(f"{kind}{f' ({sources[kind]})' if kind in KINDS else ''} for {', '.join(names)}"
                     for kind, names in kinds.items())


def feed_problem(plans: Sequence[InputPlan], batch: int) -> str | None:
    """Why one call's data at ``batch`` is too big to make (every input together over the limit), or None. Asked
    before any data is made, by the scenario loader at the description's line and by every process that makes
    data: a shape typed with a digit too many must cost a line, not the machine's memory."""
    plan = oversized_input(plans, batch)
    if plan is None:
        return None
    limit = f"over the {max_feed_bytes() / 2**30:g} GiB limit on one call's data ({MAX_FEED_ENV}=<GiB> raises it)"
    alone = plan.nbytes(batch)
    shown = f"input {plan.name!r} at batch {batch} is {_gib(alone)} GiB of {plan.dtype} {_dims(plan.shape(batch))}"
    if alone > max_feed_bytes() or len(plans) == 1:
        return f"{shown}, {limit}"
    return f"{shown}; with the other inputs {_gib(sum(p.nbytes(batch) for p in plans))} GiB, {limit}"


def oversized_input(plans: Sequence[InputPlan], batch: int) -> InputPlan | None:
    """The largest input, where one call's data at ``batch`` (every input together: they are held at once) is over
    the limit; None where it is not."""
    sizes = [plan.nbytes(batch) for plan in plans]
    if sum(sizes) <= max_feed_bytes():
        return None
    return plans[sizes.index(max(sizes))]


def _gib(size: int) -> str:
    """A size in GiB for a message, in integer arithmetic where it is huge (a float overflows past 1e308 bytes)."""
    if size < 2**30 * 10**9:
        return f"{size / 2**30:,.1f}"
    return f"more than {10**9:,}"


def _dims(shape: Sequence[int]) -> str:
    """A shape for a message: a described rank-40 shape of huge dims is shown cut, not as a wall of digits."""
    text = str(list(shape))
    return text if len(text) <= 120 else text[:117] + "..."


def _check_feeds(plans: Sequence[InputPlan], batch: int) -> None:
    if problem := feed_problem(plans, batch):
        raise InputError(problem)


def fixed_batch_problem(plan: InputPlan, spec: TensorSpec, batch: int) -> str | None:
    """Why this input cannot take ``batch`` on its batch axis (the model fixes that axis to another size)."""
    if plan.batch_axis is None:
        return None
    declared = spec.shape[plan.batch_axis] if plan.batch_axis < len(spec.shape) else None
    if declared is None or declared == batch:
        return None
    return (f"input {spec.name!r} has a fixed batch dimension of {declared} (axis {plan.batch_axis} of "
            f"{show_shape(spec.shape)}); batch size {batch} needs a model exported with a dynamic batch, or, if that "
            f"axis is not the batch, say which is: inputs: {{{spec.name}: {{batch_axis: K}}}}")


def fixed_batch(plans: Sequence[InputPlan], declared: Sequence[TensorSpec]) -> int | None:
    """The batch size the model file fixes (a dim given on a batched input's batch axis), or None when dynamic."""
    for plan, spec in zip(plans, declared, strict=True):
        if plan.batch_axis is not None and plan.batch_axis < len(spec.shape) and spec.shape[plan.batch_axis]:
            return int(spec.shape[plan.batch_axis])  # type: ignore[arg-type]
    return None


def batch_problem(plans: Sequence[InputPlan], declared: Sequence[TensorSpec], batch: int) -> str | None:
    """Why the model cannot run ``batch`` samples in one call, or None: an input whose batch axis the model fixes to
    another size (batch 1 on a file fixed at 4 too), and, for a batch above 1, no input that carries it: with every
    input unbatched (``batch_axis: none``, fixed values, scalars) a call is one inference whatever the batch size,
    and counting it as ``batch`` items would multiply the throughput by a batch never run."""
    if batch > 1 and not any(plan.batched for plan in plans):
        names = ", ".join(repr(plan.name) for plan in plans)
        return (f"batch size {batch} needs an input that carries the batch, and no input does ({names}: unbatched, "
                "by their description or as scalars or fixed values); run it at batch 1, or give the input that "
                "carries the batch its batch_axis")
    for plan, spec in zip(plans, declared, strict=True):
        if problem := fixed_batch_problem(plan, spec, batch):
            return problem
    return None


def fits_shape(shape: Sequence[int], declared: Sequence[int | None]) -> bool:
    return len(shape) == len(declared) and all(d is None or d == s for s, d in zip(shape, declared, strict=True))


def show_shape(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


# -- data for many calls --------------------------------------------------------------------------------------


def make_feeds(plans: Sequence[InputPlan], batch: int, seed: int) -> list[np.ndarray]:
    """One call's inputs at ``batch``, seeded: what the timing loop feeds."""
    _check_feeds(plans, batch)
    rng = np.random.default_rng(seed)
    return [plan.generate(rng, batch) for plan in plans]


# How many samples a fidelity check or evaluation makes from the descriptions (noise or pictures): FEW_SAMPLES, or
# MANY_SAMPLES where one sample's inputs are at most SMALL_SAMPLE_BYTES. Why more for small inputs: their calls
# cost little, and their outputs are few values (a speech probability, a wake-word score) whose relative error over
# 16 samples hangs on the one or two largest: measured, Silero VAD's int8 file scored relative L2 0.11 on one set of
# 16 noise samples and 0.20 on another, and openWakeWord's head 0.006 and 0.23.
FEW_SAMPLES, MANY_SAMPLES = 16, 64
SMALL_SAMPLE_BYTES = 256 * 1024


def judging_samples(plans: Sequence[InputPlan]) -> int:
    """The number of samples a fidelity check or evaluation makes for inputs laid out as ``plans``."""
    per_sample = sum(plan.nbytes(1) for plan in plans if plan.batched)
    return MANY_SAMPLES if per_sample <= SMALL_SAMPLE_BYTES else FEW_SAMPLES


def make_samples(plans: Sequence[InputPlan], samples: int, seed: int) -> list[np.ndarray]:
    """``samples`` independent samples per batched input, stacked on a new leading axis, each sample keeping its
    own batch axis of size 1 (so any batch size is a concatenation along that axis); an unbatched input is one
    array shared by every sample, since a call can only take one value for it.

    The whole set is held at once (the fidelity reference, calibration), so it is bounded like one feed: where
    ``samples`` of a large input would pass the limit, fewer are drawn (at least one) and the arrays' length says
    how many (the record's sample count comes from it). Each sample is written into one preallocated array, not
    stacked from copies that would double the peak."""
    _check_feeds(plans, 1)
    per_sample = sum(plan.nbytes(1) for plan in plans if plan.batched)
    samples = max(1, min(samples, max_feed_bytes() // per_sample)) if per_sample else samples
    rng = np.random.default_rng(seed)
    arrays = []
    for plan in plans:
        if plan.batched:
            # pictures in turn over the whole set, not per sample (model_zoo.images.picture_order)
            order = picture_order(rng, plan.data, samples) if plan.data != "noise" and plan.value is None else None
            first = plan.generate(rng, 1, None if order is None else order[:1])
            stacked = np.empty((samples, *first.shape), dtype=first.dtype)
            stacked[0] = first
            for index in range(1, samples):
                stacked[index] = plan.generate(rng, 1, None if order is None else order[index:index + 1])
            arrays.append(stacked)
        else:
            arrays.append(plan.generate(rng, 1))
    return arrays


def assemble(plans: Sequence[InputPlan], arrays: Sequence[np.ndarray], start: int, batch: int) -> list[np.ndarray]:
    """One call's inputs from :func:`make_samples` arrays: samples ``start .. start+batch`` joined on each input's
    batch axis (a short final batch is padded by repeating its last sample)."""
    feeds = []
    for plan, array in zip(plans, arrays, strict=True):
        if not plan.batched:
            feeds.append(np.ascontiguousarray(array))
            continue
        chosen = [min(i, len(array) - 1) for i in range(start, start + batch)]
        feeds.append(np.ascontiguousarray(np.concatenate([array[i] for i in chosen], axis=plan.batch_axis)))
    return feeds


def sample_count(plans: Sequence[InputPlan], arrays: Sequence[np.ndarray]) -> int:
    counts = {len(a) for p, a in zip(plans, arrays, strict=True) if p.batched}
    if len(counts) > 1:
        raise InputError(f"the batched inputs hold different numbers of samples: {sorted(counts)}")
    return counts.pop() if counts else 1


def split_samples(output: np.ndarray, reference_sample_shape: Sequence[int], batch: int, name: str) -> np.ndarray:
    """A batch's output cut into per-sample pieces stacked on a new leading axis, like the reference's.

    Outputs carry their batch on an axis of their own (a recurrent model returns its new state ``[2, B, 128]``),
    which no model file names reliably; it is the one axis where this output at ``batch`` differs from the
    reference's output for one sample. An output without such an axis is not per sample and cannot be compared
    sample by sample."""
    if batch == 1:
        return output[None]
    if output.ndim != len(reference_sample_shape):
        raise InputError(f"output {name!r} has rank {output.ndim} at batch {batch}, {len(reference_sample_shape)} "
                         "for one sample")
    differing = [axis for axis, (a, r) in enumerate(zip(output.shape, reference_sample_shape, strict=True)) if a != r]
    if len(differing) != 1 or output.shape[differing[0]] != batch * reference_sample_shape[differing[0]] \
            or reference_sample_shape[differing[0]] != 1:
        raise InputError(f"output {name!r} of shape {list(output.shape)} at batch {batch} has no single batch axis "
                         f"against its one-sample shape {list(reference_sample_shape)}: it cannot be compared per "
                         "sample")
    return np.stack(np.split(output, batch, axis=differing[0]))
