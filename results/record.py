"""The results record: one per case, the project's contract, typed.

Every field a record may hold is declared here, once, with its unit in its name. Writing goes through `Record`
(a misspelt key is an error, not a silent None); reading a run folder goes through `Record.read` (a record written
by an earlier version reads as it was: `to_json` returns exactly the keys it was given; fields a newer version
added are dropped); and the flat row that the report's table and the history share comes from `Record.flat`.

Statuses: passed (measured, valid, within the fidelity guard and budgets); invalid (measured, but the measurement
misses the scenario's protocol: too few runs, too short a steady state; its timings are shown, flagged); failed
(did not run to the end, or ran and missed the guard: timings kept); skipped (could not run here, with why).
"""

from __future__ import annotations

import copy
import math
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from model_zoo.fidelity import worst
from results.profile import ProfileSummary

STATUSES = ("passed", "failed", "skipped", "invalid")
# statuses whose timings describe a complete measurement: drawn, compared, given speed-ups
MEASURED = ("passed", "invalid")

Status = Literal["passed", "failed", "skipped", "invalid"]
# single figures of a record that are measured times, rates or sizes: finite whenever they are set
TIMING_FIELDS = ("throughput_ips", "init_ms", "first_inference_ms", "peak_rss_mb", "prepare_rss_delta_mb",
                 "cpu_percent", "measured_seconds", "started_at", "finished_at")


def one_line(text: str) -> str:
    """A reason on one line whatever the library said: runtimes end their messages with a newline or wrap them
    (ONNX Runtime's "pthread_create failed, error code: 11 ... Resource temporarily unavailable\n"), and a reason is
    printed in tables, one-line checks and the history. The whole text stays in the worker's log."""
    return " ".join(text.split())


# a record's `reason`, in results.jsonl and ab.jsonl: whitespace collapsed however it is set
OneLine = Annotated[str, AfterValidator(one_line)]


class RecordError(ValueError):
    """A record read from a run folder with a known field of the wrong kind; the message names the field."""


class _Part(BaseModel):
    """A part of the record whose keys are all known: an unknown one is a bug in the writer."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)  # a value set later is checked too


class Latency(_Part):
    """Summary of the raw samples, in ms (results.stats.latency_summary_ms writes every field; p50 is the one
    a record cannot do without)."""

    p50: float
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    q1: float | None = None
    q3: float | None = None
    iqr: float | None = None


class MedianInterval(_Part):
    """Confidence interval of the median, in ms (results.stats.median_ci_ms)."""

    low: float
    high: float
    confidence: float | None = None
    method: str | None = None


class ModelSource(_Part):
    zoo: str | None = None
    path: str | None = None
    input_shape: list[int] | None = None


class Warmup(_Part):
    runs: int
    seconds: float


class WorkerInfo(_Part):
    """The isolated worker process that ran the case: how long it lived, how it ended, what start-up cost."""

    wall_ms: float | None = None
    exit_code: int | None = None
    log: str | None = None
    pid: int | None = None
    startup_ms: float | None = None
    import_ms: float | None = None
    fixed_cost_ms: float | None = None
    os_threads: int | None = None  # the process's OS threads after the timed loop (runtime pools included)


class TensorInfo(_Part):
    name: str
    shape: list[int | None] | None = None
    dtype: str | None = None


class OutputFidelity(_Part):
    """One output against the fp32 reference's (model_zoo.fidelity.output_fidelity), the metric that judged it
    (model_zoo.fidelity.judge: cosine, rel_l2, exact_match or abs_floor) and its comparable score."""

    name: str
    reference_name: str | None = None
    class_scores: bool | None = None  # declared or inferred; top-1 agreement only where true
    judged_by: str | None = None
    score: float | None = None
    values_per_sample: int | None = None
    rel_l2_err: float | None = None
    exact_match: float | None = None
    max_abs_err: float | None = None
    mean_abs_err: float | None = None
    max_rel_err: float | None = None
    cosine: float | None = None
    cosine_min: float | None = None
    top1_agreement: float | None = None
    atol: float | None = None
    rtol: float | None = None
    out_of_tolerance: int | None = None
    within_tolerance: bool | None = None


class ReferenceInfo(_Part):
    """What the fp32 reference was: an independent runtime or settings, named."""

    backend: str | None = None
    precision: str | None = None
    artifact: str | None = None
    top1: float | None = None
    description: str | None = None
    options: dict[str, Any] | None = None


class FidelitySummary(_Part):
    """The case's fidelity in one figure: its worst output's judgement, in the units of the metric that judged it
    (metric, value, bar) and as the comparable score (model_zoo.fidelity.SCORE_DEFINITION) the chart plots."""

    metric: str | None = None
    value: float | None = None
    score: float | None = None
    bar: float | None = None
    text: str | None = None


class Guard(_Part):
    min_cosine: float | None = None
    source: str | None = None  # "default" (the precision's bar) or "scenario"


class Accuracy(_Part):
    """Fidelity to the reference, task accuracy where there are labels, and what the case missed. Empty for a case
    that produced no outputs; only `error` when its outputs could not be compared."""

    reference: ReferenceInfo | None = None
    is_reference: bool | None = None
    guard: Guard | None = None
    samples: int | None = None
    outputs: list[OutputFidelity] | None = None
    cosine_min: float | None = None
    max_abs_err: float | None = None
    top1_agreement: float | None = None
    fidelity: FidelitySummary | None = None
    top1: float | None = None
    top1_drop: float | None = None
    warning: str | None = None
    budget: dict[str, Any] | None = None
    violations: list[str] | None = None
    error: str | None = None

    def judged(self) -> FidelitySummary | None:
        """The case's fidelity in one figure: as recorded, or for a record written before it was (no `fidelity`),
        judged from its outputs by the same rule (model_zoo.fidelity.judge) against its guard's bar."""
        if self.fidelity is not None or not self.outputs:
            return self.fidelity
        bar = self.guard.min_cosine if self.guard else None
        verdict = worst([out.model_dump() for out in self.outputs], bar)
        if verdict is None:
            return None
        return FidelitySummary(metric=verdict.metric, value=verdict.value, score=verdict.score, bar=verdict.bar,
                               text=verdict.text(with_bar=verdict.bar is not None))


class Record(_Part):
    """One case's result. Free-form parts (backend_info, artifact_meta, gpu_telemetry) are the adapters' and the
    zoo's own facts, passed through as they report them."""

    case_id: str
    scenario: str | None = None
    model: str | None = None
    model_source: ModelSource | None = None
    backend: str
    backend_label: str | None = None
    backend_options: dict[str, Any] | None = None
    precision: str
    compression: str = "none"
    calibration: dict[str, Any] | None = None
    batch_size: Annotated[int, Field(ge=1, lt=2**31)]
    mode: str = "latency"
    status: Status
    reason: OneLine | None = None
    measure: dict[str, Any] | None = None
    latency_ms: Latency | None = None
    median_ci_ms: MedianInterval | None = None
    throughput_ips: float | None = None
    init_ms: float | None = None
    first_inference_ms: float | None = None
    peak_rss_mb: float | None = None
    prepare_rss_delta_mb: float | None = None
    cpu_percent: float | None = None
    model_size_bytes: int | None = None
    model_size_gzip_bytes: int | None = None
    samples_ns: list[Annotated[int, Field(ge=0, lt=2**63)]] = []  # durations: what int64 columns can hold
    runs: int | None = None
    measured_seconds: float | None = None
    warmup: Warmup | None = None
    per_stream_runs: list[int] | None = None
    inputs: list[TensorInfo] | None = None
    outputs: list[TensorInfo] | None = None
    accuracy: Accuracy = Accuracy()
    backend_info: dict[str, Any] = {}
    gpu_telemetry: dict[str, Any] | None = None
    artifact: str | None = None
    artifact_meta: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None
    env_id: str | None = None
    worker: WorkerInfo | None = None
    profile: ProfileSummary | None = None  # the per-operator profiling pass's summary (results.profile), if asked
    started_at: float | None = None
    finished_at: float | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        """A record as written to results.jsonl (by this version or an earlier one); pydantic's ValidationError
        names the field that does not fit."""
        return cls.model_validate(data)

    @classmethod
    def read(cls, data: dict[str, Any]) -> Record:
        """A record from a run folder, leniently: fields this version does not know (a newer accelbench wrote
        them) are dropped; a known field holding the wrong kind of value, or a timing that is not a finite number
        (an edited or foreign file: NaN would poison every comparison and the history), is a RecordError naming
        it."""
        record = cls._validated(data)
        if problem := record.timing_problem():
            raise RecordError(problem)
        return record

    def timing_problem(self) -> str | None:
        """The first timing figure that no measurement can produce (NaN, infinite), or None. Negative samples are
        refused by the field's type; an interval of NaN is what a case without samples records, and stays allowed
        there."""
        latency = self.latency_ms.model_dump() if self.latency_ms else {}
        figures: dict[str, Any] = {f"latency_ms.{name}": value for name, value in latency.items()}
        if self.samples_ns and self.median_ci_ms is not None:
            figures.update({"median_ci_ms.low": self.median_ci_ms.low, "median_ci_ms.high": self.median_ci_ms.high})
        figures.update({name: getattr(self, name) for name in TIMING_FIELDS})
        for name, value in figures.items():
            if isinstance(value, float) and not math.isfinite(value):
                return f"{name}: {value} is not a finite number"
        return None

    @classmethod
    def _validated(cls, data: dict[str, Any]) -> Record:
        return validate_leniently(cls, data)

    def to_json(self) -> dict[str, Any]:
        """The JSON object for results.jsonl: the keys that were set, so a record read back writes as it was."""
        return self.model_dump(exclude_unset=True)  # python mode: a NaN interval stays NaN, as json.dumps writes it

    @property
    def measured(self) -> bool:
        return self.status in MEASURED

    @property
    def p50_ms(self) -> float | None:
        return self.latency_ms.p50 if self.latency_ms is not None else None

    @property
    def label(self) -> str:
        """The backend as the scenario labelled it (one backend may appear twice under two labels)."""
        return self.backend_label or self.backend

    @property
    def software_gpu(self) -> bool:
        """A "GPU" case whose adapter was a software rasteriser on the CPU: its numbers are not GPU numbers."""
        return bool(self.backend_info.get("software_device"))

    @property
    def kept_fp32(self) -> tuple[int, int] | None:
        """(nodes left fp32, nodes the conversion could have converted) where a conversion's node search says so
        (the artefact's meta.json): an int8 file that keeps most of its nodes in fp32 is nearly an fp32 file, and
        its figures must not read as int8's."""
        kept = ((self.artifact_meta or {}).get("quantization") or {}).get("kept_fp32")
        if not isinstance(kept, dict) or not isinstance(kept.get("of_nodes"), int) or not kept["of_nodes"]:
            return None
        return int(kept.get("nodes") or 0), int(kept["of_nodes"])

    @property
    def mostly_fp32(self) -> bool:
        """Whether the conversion kept more than half of the nodes it could convert in fp32: nearly an fp32 file."""
        kept = self.kept_fp32
        return kept is not None and kept[0] * 2 > kept[1]

    @property
    def kept_fp32_text(self) -> str | None:
        """"16 of 47 nodes kept fp32" (None where no node search ran or it kept none)."""
        kept = self.kept_fp32
        if kept is None or not kept[0]:
            return None
        return f"{kept[0]} of {kept[1]} nodes kept fp32" + (" (mostly fp32)" if self.mostly_fp32 else "")

    def flat(self) -> dict[str, Any]:
        """The record as one row of named scalars: what the report's table, its CSV and the history draw from."""
        latency, interval, accuracy = self.latency_ms, self.median_ci_ms, self.accuracy
        judged = accuracy.judged()
        gpu = self.gpu_telemetry or {}
        size, gzip_size = self.model_size_bytes, self.model_size_gzip_bytes
        return {
            "scenario": self.scenario, "case_id": self.case_id, "model": self.model, "backend": self.backend,
            "backend_label": self.label, "precision": self.precision,
            "compression": self.compression or "none", "batch_size": self.batch_size, "mode": self.mode,
            "status": self.status, "reason": self.reason,
            "p50_ms": latency.p50 if latency else None, "p90_ms": latency.p90 if latency else None,
            "p95_ms": latency.p95 if latency else None, "p99_ms": latency.p99 if latency else None,
            "mean_ms": latency.mean if latency else None, "q1_ms": latency.q1 if latency else None,
            "q3_ms": latency.q3 if latency else None,
            "ci_low_ms": interval.low if interval else None, "ci_high_ms": interval.high if interval else None,
            "runs": self.runs, "throughput_ips": self.throughput_ips,
            "init_ms": self.init_ms, "first_inference_ms": self.first_inference_ms, "peak_rss_mb": self.peak_rss_mb,
            "gpu_memory_mb": gpu.get("gpu_memory_peak_mb"), "cpu_percent": self.cpu_percent,
            "gpu_util_pct": gpu.get("gpu_util_mean_pct"),
            "size_mb": size / 1e6 if size else None, "gzip_mb": gzip_size / 1e6 if gzip_size else None,
            "cosine": accuracy.cosine_min, "max_abs_err": accuracy.max_abs_err,
            "fidelity": judged.score if judged else None, "fidelity_text": judged.text if judged else None,
            "fidelity_warning": accuracy.warning, "kept_fp32_text": self.kept_fp32_text,
            "top1_agreement": accuracy.top1_agreement, "top1": accuracy.top1, "top1_drop": accuracy.top1_drop,
            "software_gpu": self.software_gpu, "device": self.device,
            "env_id": self.env_id, "os_threads": self.worker.os_threads if self.worker else None,
        }

    @property
    def device(self) -> str | None:
        """What really ran the case, as the backend reported it (a software adapter is named as such)."""
        for key in ("adapter", "gpu", "providers", "device"):
            value = self.backend_info.get(key)
            if value:
                return ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        return None


ModelT = TypeVar("ModelT", bound=BaseModel)


def validate_leniently(model: type[ModelT], data: dict[str, Any]) -> ModelT:
    """``data`` as ``model``, dropping fields this version does not know (a newer accelbench wrote them): one
    RecordError naming the first known field that holds the wrong kind of value."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = [e for e in error.errors() if e["type"] != "extra_forbidden"]
        if problems:
            where = ".".join(map(str, problems[0]["loc"]))
            raise RecordError(f"{where}: {problems[0]['msg']}") from None
        cleaned = copy.deepcopy(data)
        for extra in error.errors():
            *parents, key = extra["loc"]
            holder: Any = cleaned
            for part in parents:
                holder = holder[part]
            holder.pop(key, None)
        return model.model_validate(cleaned)
