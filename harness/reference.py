"""The reference run: a model's evaluation set and its fp32 reference outputs, made once per model and run.

Every case's fidelity is measured against these: the worker of a measured case runs the same inputs and its
outputs are set beside the reference's (harness.engine). The reference runs on an independent backend
(harness.evaluation.reference_case: TensorFlow for a zoo model, the file's own runtime with its plainest settings
for a user file), in a worker of its own; when those settings cannot run the model, the backend's defaults are
the reference, and the record says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from harness.artifacts import ArtifactBroker
from harness.evaluation import describe_reference, load_arrays, reference_case
from harness.fidelity import top1_accuracy
from harness.launch import WorkerOutcome, run_worker
from harness.protocol import ReferenceJob, ReferenceResult
from results.store import safe_file_name
from scenario.cases import Case, ModelSpec
from scenario.skips import skip_reason

PLAIN_OPTIONS: dict[str, Any] = {"threads": None}  # the backend's own defaults: the fallback reference's settings
REFERENCE_MIN_TIMEOUT_S = 120.0  # TensorFlow's import alone takes seconds; the reference's worker gets at least this


def _hashable(value: Any) -> Any:
    """A backend option's value as something hashable that compares as the value does (dicts and lists in
    options are read-only data; their order of keys does not matter, their order of items does)."""
    if isinstance(value, dict):
        return tuple(sorted((str(key), _hashable(item)) for key, item in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_hashable(item) for item in value)
    return value


@dataclass(frozen=True)
class ReferenceKey:
    """What a reference run is made of, and so what makes two of them the same run: the model (its label names
    the evaluation folder), the reference backend and its options, the seed of the evaluation set, and the limits
    its worker runs under. What the reference case inherits from the measured case and does not use (its
    calibration, accuracy budget, baseline, race settings, scenario) is left out, so that an int8 case and the
    fp32 case of the same model share one reference."""

    model: ModelSpec
    model_label: str
    backend: str
    options: tuple[tuple[str, Any], ...]
    seed: Any
    timeout_s: Any
    memory_limit_mb: Any

    @classmethod
    def of(cls, reference: Case) -> ReferenceKey:
        """The key of a reference case (harness.evaluation.reference_case)."""
        measure = reference.measure
        return cls(model=reference.model, model_label=reference.model_label, backend=reference.backend,
                   options=_hashable(reference.backend_options), seed=measure.get("seed", 0),
                   timeout_s=measure.get("timeout_s"), memory_limit_mb=measure.get("memory_limit_mb"))


@dataclass
class Reference:
    """A model's fp32 reference in this run, or (``reason``) why it has none. When it has one: the evaluation
    inputs and reference outputs (.npz paths), the worker's result, and the labels and top-1 accuracy where the
    evaluation set has labels."""

    backend: str
    reason: str | None = None
    artifact: str | None = None
    description: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # the reference backend's options that were set
    inputs: str | None = None
    outputs: str | None = None
    result: ReferenceResult | None = None
    labels: np.ndarray | None = None
    top1: float | None = None
    precision: str = "fp32"

    @property
    def ok(self) -> bool:
        return self.result is not None


def _reference_result(outcome: WorkerOutcome) -> ReferenceResult | None:
    """The reference worker's result, or None when it failed (the reason: _failure_reason)."""
    result = outcome.report.result if outcome.report else None
    return result if isinstance(result, ReferenceResult) else None


def _failure_reason(outcome: WorkerOutcome) -> str | None:
    """Why a worker gave no result: its own one-line reason, or the parent's diagnosis of how it ended."""
    return (outcome.report.reason if outcome.report else None) or outcome.reason


class References:
    """Makes each model's reference once (by its ReferenceKey) and hands it to every case of the model."""

    def __init__(self, broker: ArtifactBroker, logs_dir: Path, evaluation_dir: Path) -> None:
        """``broker``: where the reference's artefact comes from; ``logs_dir``: the workers' job files and logs;
        ``evaluation_dir``: the run folder's evaluation/, a folder per model holding its inputs and outputs."""
        self.broker, self.logs_dir, self.evaluation_dir = broker, logs_dir, evaluation_dir
        self._made: dict[ReferenceKey, Reference] = {}

    def folder(self, case: Case) -> Path:
        """The model's evaluation folder: its inputs, its reference outputs, and each case's outputs."""
        return self.evaluation_dir / safe_file_name(case.model_label)

    def for_case(self, case: Case) -> Reference:
        """The reference ``case`` is compared with, made by a worker the first time its model asks."""
        ref_case = reference_case(case)
        key = ReferenceKey.of(ref_case)
        if key not in self._made:
            self._made[key] = self._make(case, ref_case)
        return self._made[key]

    def _make(self, case: Case, ref_case: Case) -> Reference:
        reference = Reference(backend=ref_case.backend)
        why_not = skip_reason(ref_case)
        artifact, error = (None, None) if why_not else self.broker.artifact_for(ref_case)
        if why_not or error or artifact is None:
            reference.reason = f"no fp32 reference on {ref_case.backend}: {why_not or error or 'no artefact'}"
            return reference
        folder = self.folder(case)
        job = ReferenceJob(case=ref_case.to_dict(), artifact=artifact, hints=case.model.input_hints(),
                           inputs=str(folder / "inputs.npz"), outputs=str(folder / "reference.npz"))
        outcome = self._run(job, ref_case.case_id, case)
        reference.artifact, reference.description = artifact, describe_reference(case)
        reference.options = {k: v for k, v in ref_case.backend_options.items() if v is not None}
        result = _reference_result(outcome)
        if result is None and ref_case.backend_options != PLAIN_OPTIONS:
            # The independent settings cannot run this model (LiteRT's builtin resolver lacks a custom op that the
            # default one registers): the backend's defaults are the reference then, and say so.
            first = _failure_reason(outcome)
            job = replace(job, case=replace(ref_case, backend_options=dict(PLAIN_OPTIONS)).to_dict())
            outcome = self._run(job, f"{ref_case.case_id}-default", case)
            result = _reference_result(outcome)
            reference.options = {}
            reference.description = (f"{ref_case.backend} fp32 (its default settings: the independent reference "
                                     f"could not run the model: {first})")
        if result is None:
            reference.reason = f"the fp32 reference on {ref_case.backend} failed: {_failure_reason(outcome)}"
            return reference
        reference.inputs, reference.outputs, reference.result = job.inputs, job.outputs, result
        _, ref_outputs, _ = load_arrays(Path(job.outputs))
        reference.labels = load_arrays(Path(job.inputs))[2].get("labels")
        reference.top1 = None if reference.labels is None else top1_accuracy(ref_outputs[0], reference.labels)
        return reference

    def _run(self, job: ReferenceJob, name: str, case: Case) -> WorkerOutcome:
        """The reference's worker. Not under the measured case's memory limit, and under at least
        REFERENCE_MIN_TIMEOUT_S: those bound what the case measures (a .tflite on LiteRT in 300 MB and 3 s), and
        the independent reference (TensorFlow for a zoo model) needs more memory and seconds of import; a case
        whose reference cannot run fails, so the case's limits must not starve it."""
        return run_worker(job, self.logs_dir, name, max(case.measure["timeout_s"], REFERENCE_MIN_TIMEOUT_S), None)
