"""A user's own Python callable as the thing measured: pre-processing, a session and post-processing together.

The accelbench fixture's ``measure_callable`` gives it a target. ``"package.module:make_runner"`` names a factory
the worker imports and calls (with the batch size, where it takes an argument) while loading: it sets up whatever
it needs (a session, an image, a tokenizer) and returns the zero-argument call that does one inference, the call
the harness times, in its own worker process like any case. A callable object that cannot be named so (a lambda, a
closure in a test) is measured in the test's own process instead, through the same code, and its record says "not
isolated" (``backend_info.isolation``): its peak RSS is the whole test process's, and nothing else in the record
differs.

There is no model file: nothing is converted, and the outputs are the callable's own, with no reference to compare
them with. A scenario cannot name this backend (skips.py says so for any case that does).
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from backends.base import Availability, Backend, BackendOptions, Session
from model_zoo.inputs import InputLayout

IN_PROCESS: dict[str, Callable[..., Any]] = {}  # "in-process:<key>" targets: callables the test handed over
IN_PROCESS_PREFIX = "in-process:"
ISOLATION_NOTE = "not isolated: measured in the test's own process (its peak RSS is the whole process's)"


def resolve(target: str) -> Callable[..., Any]:
    """The factory a target names: ``module:attribute`` (dotted attributes allowed) or a handed-over callable."""
    if target.startswith(IN_PROCESS_PREFIX):
        return IN_PROCESS[target]
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{target!r} is not module:function (e.g. mypackage.pipeline:make_runner)")
    found: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        found = getattr(found, part)
    if not callable(found):
        raise TypeError(f"{target} is a {type(found).__name__}, not a callable")
    return found


def _takes_an_argument(factory: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: called with none
        return False
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in parameters)


class CallableSession(Session):
    """The factory's call: no inputs to make (the callable holds its own), no outputs to check."""

    def __init__(self, call: Callable[[], Any], target: str, in_process: bool) -> None:
        self.inputs, self.outputs = [], []
        self._call, self._target, self._in_process = call, target, in_process

    def bind(self, feeds: list[np.ndarray]) -> Callable[[], list[np.ndarray]]:
        call = self._call

        def run() -> list[np.ndarray]:
            call()  # its result is the user's: the harness checks none
            return []

        return run

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"runtime": "python", "runtime_version": sys.version.split()[0],
                                "target": self._target, "device": "cpu", "software_device": False}
        if self._in_process:
            info["isolation"] = ISOLATION_NOTE
        return info


class PythonCallable(Backend):
    name: ClassVar[str] = "python_callable"
    artifact_format: ClassVar[str] = "python"
    description: ClassVar[str] = "a user's callable (the accelbench fixture's measure_callable)"

    @classmethod
    def available(cls) -> Availability:
        return Availability(True, "the Python interpreter")

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return ("target", "python_path")

    def prepare(self, artifact: str, options: BackendOptions, batch_size: int,
                layout: InputLayout | None = None) -> Session:
        """``artifact`` is the target; ``python_path``: folders the test process imports from, so that the worker
        finds the user's module where the test did."""
        for folder in reversed(options.extra.get("python_path") or []):
            if folder not in sys.path:
                sys.path.insert(0, folder)
        factory = resolve(artifact)
        call = factory(batch_size) if _takes_an_argument(factory) else factory()
        if not callable(call):
            raise TypeError(f"{artifact} returned a {type(call).__name__}, not the zero-argument call to time")
        return CallableSession(call, artifact, artifact.startswith(IN_PROCESS_PREFIX))
