"""The one interface every backend adapter implements.

The harness, not the backend, owns the timing loops: a backend only knows how to load an artefact and run
one synchronous inference. That way every backend is measured by the same code, and a new backend is one
module plus one registry entry.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run on this machine; ``reason`` says exactly why not (or what it found)."""

    ok: bool
    reason: str


@dataclass(frozen=True)
class TensorSpec:
    """An input or output as the loaded artefact declares it; ``None`` marks a dynamic dimension."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str


@dataclass
class BackendOptions:
    """Options common to all backends; adapters read their own extra keys from ``extra``."""

    threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The case's precision. Most backends need not look (the artefact is already fp16 or int8), but some
    # runtimes pick their arithmetic at load time: LiteRT's GPU accelerator computes fp32 models in fp16
    # unless told otherwise.
    precision: str = "fp32"
    # The case's compression ("none", "prune:0.75", "prune:2:4"): TensorRT enables its sparse kernels for 2:4.
    compression: str = "none"


class Session(abc.ABC):
    """A loaded model, ready to run at one batch size.

    ``run`` must be synchronous: when it returns, the outputs are on the host and readable, so that the
    time around it is the true inference latency (device sync and read-back included).
    """

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    @abc.abstractmethod
    def bind(self, feeds: list[np.ndarray]) -> Callable[[], list[np.ndarray]]:
        """A zero-argument call that runs one inference on ``feeds`` (one array per input, in order).

        The harness times this call. Binding lets an adapter do its per-feed bookkeeping (name lookups, dict
        building) once, so the timed region holds what a hand-written loop against the runtime would hold.
        """

    def run(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        return self.bind(feeds)()

    def reference_loop(self, feeds: list[np.ndarray], runs: int) -> list[int]:
        """Latencies (ns) of ``runs`` inferences by the plainest loop over the runtime's own API.

        ``accelbench overhead`` compares the harness's samples with these; backends that cannot offer such a
        loop are left out of that check.
        """
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """What actually ran: provider, delegate, threads, whether the device is software or hardware."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook, most sessions need nothing
        """Release native resources early; the worker process exits right after anyway."""


class Backend(abc.ABC):
    """A way of running models. Subclasses must not import their runtime at module import time.

    ``artifact_format`` is the model format this backend loads ("tflite", "onnx", "savedmodel"): the model
    zoo produces it, so the backend never converts anything itself.
    """

    name: ClassVar[str]
    artifact_format: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    description: ClassVar[str] = ""
    # True: the backend needs the batch size baked into its artefact (GPU accelerators compile static shapes).
    static_batch: ClassVar[bool] = False

    @classmethod
    @abc.abstractmethod
    def available(cls) -> Availability:
        """Can this backend run here? Must be cheap and must never raise."""

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """Backend-specific option keys accepted in a scenario (besides ``threads``)."""
        return ()

    @classmethod
    def option_problem(cls, name: str, value: Any) -> str | None:
        """What is wrong with an option's value, or ``None``. Checked when the scenario loads, so a typo in a
        value is an error at its line, not a run of skipped cases."""
        return None

    @classmethod
    def unsupported_reason(cls, precision: str, options: BackendOptions) -> str | None:
        """Why this backend cannot serve a combination, or ``None`` when it can."""
        if precision not in cls.precisions:
            return f"{cls.name} does not run {precision} models (it runs: {', '.join(cls.precisions)})"
        return None

    @abc.abstractmethod
    def prepare(self, artifact: str, options: BackendOptions, batch_size: int,
                sample_shape: tuple[int, ...] | None = None) -> Session:
        """Load ``artifact`` and make it ready for ``batch_size`` inputs.

        ``sample_shape`` (per-sample, without batch) fills dynamic dimensions other than the batch one; see
        :func:`concrete_shape`.
        """


class ShapeError(ValueError):
    """An input shape the artefact cannot take; the message is shown to the user as the case's reason."""


def concrete_shape(spec: TensorSpec, batch_size: int, sample_shape: tuple[int, ...] | None) -> tuple[int, ...]:
    """The shape to feed ``spec`` at ``batch_size``.

    The first dimension is the batch. A fixed batch dimension other than the requested one is an error rather
    than a silent benchmark of a different batch size.
    """
    if not spec.shape:
        raise ShapeError(f"input {spec.name!r} is a scalar; accelbench needs a batch dimension")
    declared_batch, *rest = spec.shape
    if declared_batch is not None and declared_batch != batch_size:
        raise ShapeError(
            f"input {spec.name!r} has a fixed batch dimension of {declared_batch}; "
            f"batch size {batch_size} needs a model exported with a dynamic batch dimension"
        )
    if sample_shape is not None and len(sample_shape) == len(rest):
        for declared, wanted in zip(rest, sample_shape, strict=True):
            if declared is not None and declared != wanted:
                raise ShapeError(f"input {spec.name!r} has shape {spec.shape}; input_shape {sample_shape} does not fit")
        return (batch_size, *sample_shape)
    if any(dim is None for dim in rest):
        raise ShapeError(
            f"input {spec.name!r} has dynamic dimensions {spec.shape}; give the model an input_shape in the scenario"
        )
    return (batch_size, *rest)  # type: ignore[return-value]


def module_version(distribution: str) -> str | None:
    """Installed version of a distribution without importing it (imports can cost seconds)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def installed_and_importable(distributions: tuple[str, ...], module: str) -> tuple[str | None, Availability | None]:
    """(version, None) when one of `distributions` is installed and `module` imports; else (version, why not).

    Both failures are common and have different fixes: a package that is absent, and one that is installed but
    fails to import for native reasons (a missing shared library, a CUDA mismatch). The exact error is kept.
    """
    import importlib

    version = next((v for v in map(module_version, distributions) if v is not None), None)
    if version is None:
        return None, Availability(False, f"{distributions[0]} is not installed (pip install {distributions[0]})")
    try:
        importlib.import_module(module)
    except Exception as error:  # native import failures raise all kinds of errors; the reason is what matters
        return version, Availability(False, f"{distributions[0]} {version} is installed but does not import: {error}")
    return version, None
