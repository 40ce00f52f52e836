"""Why a case cannot run here, decided before any process is spawned."""

from __future__ import annotations

import os
from functools import cache

from backends.base import Availability, BackendOptions
from backends.registry import availability, get_backend
from scenario.cases import Case


@cache
def cached_availability(backend: str) -> Availability:
    """Availability does not change during a run; checking once keeps collection fast."""
    return availability(backend)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: a container's or taskset's limit, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity API (macOS)
        return os.cpu_count() or 1


def backend_options(case: Case) -> BackendOptions:
    """The options a backend is prepared with. An unset ``threads`` is every usable core, for every backend:
    left to themselves LiteRT's Python Interpreter and ONNX Runtime pick differently (one thread against all
    physical cores), and an unset scenario would compare a single thread with the whole machine."""
    options = dict(case.backend_options)
    threads = options.pop("threads", None) or usable_cores()
    return BackendOptions(threads=threads, extra=options, precision=case.precision, compression=case.compression)


def skip_reason(case: Case) -> str | None:
    from model_zoo.artifacts import unsupported_reason

    if case.backend == "python_callable":  # the fixture measures its cases without asking (Engine.run_callable)
        return ("python_callable measures a Python callable handed to the accelbench fixture "
                "(accelbench.measure_callable), not a scenario's model")
    state = cached_availability(case.backend)
    if not state.ok:
        return f"{case.backend} is not available: {state.reason}"
    backend = get_backend(case.backend)
    reason = backend.unsupported_reason(case.precision, backend_options(case))
    if reason:
        return reason
    return unsupported_reason(case.artifact_request())
