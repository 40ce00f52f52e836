"""Why a case cannot run here, decided before any process is spawned."""

from __future__ import annotations

from functools import cache

from backends.base import Availability, BackendOptions
from backends.registry import availability, get_backend
from harness.cases import Case


@cache
def cached_availability(backend: str) -> Availability:
    """Availability does not change during a run; checking once keeps collection fast."""
    return availability(backend)


def backend_options(case: Case) -> BackendOptions:
    options = dict(case.backend_options)
    return BackendOptions(threads=options.pop("threads", None), extra=options, precision=case.precision,
                          compression=case.compression)


def skip_reason(case: Case) -> str | None:
    from model_zoo.artifacts import unsupported_reason

    state = cached_availability(case.backend)
    if not state.ok:
        return f"{case.backend} is not available: {state.reason}"
    backend = get_backend(case.backend)
    reason = backend.unsupported_reason(case.precision, backend_options(case))
    if reason:
        return reason
    return unsupported_reason(case.artifact_request())
