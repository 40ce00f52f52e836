"""Does the harness add to what it measures? Harness loop vs a bare loop over the same session, one process."""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from harness.artifacts import ArtifactBroker
from harness.launch import run_worker
from harness.protocol import OverheadJob, OverheadResult
from scenario.cases import Case, ModelSpec
from scenario.load import MeasureSpec
from scenario.skips import skip_reason

DEFAULT_BACKENDS = ("tflite_cpu", "onnxruntime_cpu")


def overhead_case(backend: str, model: str = "digits_cnn") -> Case:
    case = Case(case_id=f"overhead-{model}-{backend}", scenario="overhead", model=ModelSpec(zoo=model),
                model_label=model, backend=backend, backend_label=backend, backend_options={"threads": 1},
                precision="fp32", batch_size=1, mode="latency", measure=MeasureSpec().model_dump())
    case.skip_reason = skip_reason(case)
    return case


def measure_overhead(backends: tuple[str, ...] = DEFAULT_BACKENDS, model: str = "digits_cnn",
                     rounds: int = 20, runs_per_round: int = 500) -> dict[str, Any]:
    """Per backend: medians of both loops, interleaved in ``rounds`` blocks, and their ratio. No run folder: the
    artefacts come from the broker (no fp32 reference: nothing here is compared with one), the workers' files go to
    a temporary folder."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="accelbench-overhead-") as tmp:
        logs_dir = Path(tmp) / "logs"
        logs_dir.mkdir()
        broker = ArtifactBroker(logs_dir)
        cases = [overhead_case(backend, model) for backend in backends]
        broker.prepare_requests([case.artifact_request() for case in cases if not case.skip_reason])
        for case in cases:
            if case.skip_reason:
                results[case.backend] = {"skipped": case.skip_reason}
                continue
            artifact, error = broker.artifact_for(case)
            if error:
                results[case.backend] = {"error": error}
                continue
            job = OverheadJob(case=case.to_dict(), artifact=artifact, hints=case.model.input_hints(), rounds=rounds,
                              runs_per_round=runs_per_round)
            outcome = run_worker(job, logs_dir, case.case_id, timeout_s=600)
            raw = outcome.report.result if outcome.report else None
            if not isinstance(raw, OverheadResult):
                results[case.backend] = {"error": outcome.reason or (outcome.report and outcome.report.reason)}
                continue
            harness_us = statistics.median(raw.harness_samples_ns) / 1e3
            bare_us = statistics.median(raw.bare_samples_ns) / 1e3
            results[case.backend] = {
                "ratio": harness_us / bare_us,
                "harness_median_us": harness_us,
                "bare_median_us": bare_us,
                "samples_each": len(raw.bare_samples_ns),
                "model": model,
                "backend_info": raw.backend_info,
            }
    return results
