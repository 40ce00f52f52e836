"""The one interface every backend adapter implements.

The harness, not the backend, owns the timing loops: a backend only knows how to load an artefact and run
one synchronous inference. That way every backend is measured by the same code, and a new backend is one
module plus one registry entry.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, ClassVar

import numpy as np

from backends.op_profile import ProfilePass, ProfileUnavailable
from model_zoo.inputs import InputError, InputLayout, TensorSpec


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run on this machine; ``reason`` says exactly why not (or what it found)."""

    ok: bool
    reason: str


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

    def bare_loop(self, feeds: list[np.ndarray], runs: int) -> list[int]:
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
    # True: its ``threads`` option is all the CPU it computes with (no driver or delegate threads of its own), so a
    # same-sitting comparison may pin its process to that many cores and still measure it as it runs
    # (harness.sitting.methods.shared_cores). A GPU delegate's software driver, say, spawns threads of its own.
    threads_are_its_cores: ClassVar[bool] = False

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
                layout: InputLayout | None = None) -> Session:
        """Load ``artifact`` and make it ready for ``batch_size`` inputs.

        ``layout`` (the scenario's description of the model's inputs) says where each input's batch axis is and
        fills dynamic dimensions; see :func:`input_shapes`.
        """

    def profile(self, artifact: str, options: BackendOptions, batch_size: int, layout: InputLayout | None,
                feeds: list[np.ndarray], runs: int, trace_path: str) -> ProfilePass:
        """A per-operator profile of ``runs`` inferences on ``feeds`` in a pass of its own (backends.op_profile),
        with its Chrome trace written to ``trace_path``. Called after the timed loop, in the same worker; raises
        ProfileUnavailable with the reason where the runtime offers no profiler this adapter can reach."""
        raise ProfileUnavailable(f"{self.name}: accelbench has no per-operator profiler for this backend")


class ShapeError(ValueError):
    """An input shape the artefact cannot take; the message is shown to the user as the case's reason."""


def input_shapes(specs: list[TensorSpec], batch_size: int, layout: InputLayout | None) -> list[tuple[int, ...]]:
    """The shape to feed every input at ``batch_size``, as the scenario describes them (model.inputs) or, where it
    says nothing, as the model declares them. A fixed batch dimension other than the requested one is an error
    rather than a silent benchmark of a different batch size."""
    try:
        return (layout or InputLayout()).shapes(specs, batch_size)
    except InputError as error:
        raise ShapeError(str(error)) from None


def module_version(distribution: str) -> str | None:
    """Installed version of a distribution without importing it (imports can cost seconds)."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def installed_and_importable(distributions: tuple[str, ...], module: str) -> tuple[str | None, Availability | None]:
    """(version, None) when one of `distributions` is installed and `module` imports; else (version, why not).

    Both failures are common and have different fixes: a package that is absent, and one that is installed but
    fails to import for native reasons (a missing shared library, a CUDA mismatch). The exact error is kept.
    """
    version = next((v for v in map(module_version, distributions) if v is not None), None)
    if version is None:
        return None, Availability(False, f"{distributions[0]} is not installed (pip install {distributions[0]})")
    try:
        importlib.import_module(module)
    except Exception as error:  # native import failures raise all kinds of errors; the reason is what matters
        return version, Availability(False, f"{distributions[0]} {version} is installed but does not import: {error}")
    return version, None
