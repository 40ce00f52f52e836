"""The worker's messages, typed: every job the harness sends a worker, every result file and every reply line it
sends back, as dataclasses that write and read exactly the JSON the wire has always carried.

Jobs and replies were plain dicts built in four places and read back by string keys, so that a key renamed on
one side failed as a KeyError far from its cause (``unit_shapes`` went worker → engine → worker → evaluation under
three spellings of the same dict). Here each message is one class; ``to_wire()`` gives the JSON object and
``from_wire()`` reads one, raising one ProtocolError that names the message and the missing key. Values are not
re-validated: both ends are this repository's code; what is checked is that the message is the one expected.

This module imports the standard library only: the worker (whose start-up is itself measured) imports it.
"""

from __future__ import annotations

import functools
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, TypeVar, Union, get_type_hints

MessageT = TypeVar("MessageT", bound="Message")


class ProtocolError(ValueError):
    """A job, result or reply that is not the message expected: not a JSON object, or without a key it needs."""


@dataclass(kw_only=True)
class Message:
    """One JSON object of the wire. A field without a default is a key the message must carry."""

    WHAT: ClassVar[str] = "a worker message"  # how an error names the message
    # keys left out of the JSON while they are None: the wire has only ever carried them when they had a value
    OMITTED_WHEN_NONE: ClassVar[frozenset[str]] = frozenset()

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {}
        for part in fields(self):
            value = getattr(self, part.name)
            if value is None and part.name in self.OMITTED_WHEN_NONE:
                continue
            wire[part.name] = value.to_wire() if isinstance(value, Message) else value
        return wire

    @classmethod
    def from_wire(cls: type[MessageT], data: Any) -> MessageT:
        """The message in ``data`` (keys it does not know are ignored: a job file carries ``spawned_at_ns``)."""
        return cls._read(data, cls.WHAT)

    @classmethod
    def _read(cls: type[MessageT], data: Any, where: str) -> MessageT:
        if not isinstance(data, dict):
            raise ProtocolError(f"{where} is not a JSON object but {type(data).__name__}")
        hints = _hints(cls)
        values: dict[str, Any] = {}
        for part in fields(cls):
            if part.name not in data:
                if part.default is MISSING and part.default_factory is MISSING:
                    raise ProtocolError(f"{where} has no {part.name!r} key")
                continue
            value = data[part.name]
            nested = _message_type(hints[part.name])
            if nested is not None and value is not None:
                value = nested._read(value, f"{where}'s {part.name!r}")
            values[part.name] = value
        return cls(**values)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _message_type(hint: Any) -> type[Message] | None:
    """The Message class a field holds (``Evaluation`` or ``Evaluation | None``), or None for plain JSON."""
    if isinstance(hint, type) and issubclass(hint, Message):
        return hint
    if typing.get_origin(hint) in (Union, types.UnionType):
        return next((arg for arg in typing.get_args(hint) if isinstance(arg, type) and issubclass(arg, Message)),
                    None)
    return None


# -- jobs: what the harness asks a worker (the job file) -------------------------------------------------------


@dataclass(kw_only=True)
class Evaluation(Message):
    """The part of a measure job that runs the reference's evaluation inputs through the case after its timing.

    ``unit_shapes`` is each reference output's shape per unit (per sample): how a case at another batch size cuts
    its outputs into the reference's units (harness.evaluation.run_batched). It comes from the reference worker's
    ReferenceResult and reaches the case's worker here, unchanged."""

    WHAT = "a measure job's evaluation"
    inputs: str  # the reference's evaluation inputs (.npz)
    outputs: str  # where this case's worker writes its outputs on them (.npz)
    reference_batch: int
    output_names: list[str]
    unit_shapes: list[list[int]]


@dataclass(kw_only=True)
class ProfileRequest(Message):
    """The part of a measure job that profiles the case per operator after its timing (backends.op_profile)."""

    WHAT = "a measure job's profile request"
    runs: int
    trace: str  # where the Chrome trace goes


@dataclass(kw_only=True)
class CaseJob(Message):
    """What every job carries: the case, the model file its backend loads, and the scenario's input hints."""

    TASK: ClassVar[str] = ""
    case: dict[str, Any]  # scenario.cases.Case.to_dict()
    artifact: str
    hints: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {"task": self.TASK, **super().to_wire()}


@dataclass(kw_only=True)
class MeasureJob(CaseJob):
    """Time one case (``accelbench run``'s unit of work), then run the evaluation inputs through it if given."""

    TASK = "measure"
    WHAT = "a measure job"
    OMITTED_WHEN_NONE = frozenset({"evaluation", "profile"})
    evaluation: Evaluation | None = None
    profile: ProfileRequest | None = None


@dataclass(kw_only=True)
class ReferenceJob(CaseJob):
    """Make a model's evaluation set (saved to ``inputs``) and the reference outputs on it (saved to ``outputs``)."""

    TASK = "reference"
    WHAT = "a reference job"
    inputs: str
    outputs: str


@dataclass(kw_only=True)
class OverheadJob(CaseJob):
    """The harness's timing loop against a bare loop over the same session (``accelbench overhead``)."""

    TASK = "overhead"
    WHAT = "an overhead job"
    rounds: int = 20
    runs_per_round: int = 500


@dataclass(kw_only=True)
class ServeJob(CaseJob):
    """One side of a same-sitting comparison: load, warm, say ready, then answer commands on stdin."""

    TASK = "serve"
    WHAT = "a serve job"
    OMITTED_WHEN_NONE = frozenset({"warmup_seconds", "warmup_runs"})
    warmup_seconds: float | None = None  # None: the case's own measure.warmup_seconds
    warmup_runs: int | None = None  # None: the case's own measure.warmup_runs


WorkerJob = MeasureJob | ReferenceJob | OverheadJob | ServeJob
JOBS: dict[str, type[CaseJob]] = {job.TASK: job for job in (MeasureJob, ReferenceJob, OverheadJob, ServeJob)}


def job_from_wire(data: Any) -> WorkerJob:
    """The job in a job file: its ``task`` picks the class (a file without one is a measure job, as ever)."""
    if not isinstance(data, dict):
        raise ProtocolError(f"a worker job is not a JSON object but {type(data).__name__}")
    task = data.get("task", "measure")
    if task not in JOBS:
        raise ProtocolError(f"a worker job's task is one of {', '.join(JOBS)}, not {task!r}")
    return typing.cast(WorkerJob, JOBS[task].from_wire(data))


# -- results: the one JSON object a worker leaves in its result file -------------------------------------------


@dataclass(kw_only=True)
class MeasureResult(Message):
    """A case's raw timings and facts; the engine does the statistics."""

    WHAT = "a measure result"
    imported_at_ns: int
    init_ns: int
    first_inference_ns: int
    warmup_runs: int
    warmup_seconds: float
    samples_ns: list[int]
    wall_ns: int
    cpu_ns: int
    per_stream_runs: list[int]  # concurrent mode: each stream's inferences; empty otherwise
    gpu_telemetry: dict[str, Any] | None
    rss_before_prepare: int
    rss_after_prepare: int
    peak_rss_bytes: int
    os_threads: int | None
    evaluation_seconds: float | None
    evaluation_error: str | None
    outputs_finite: bool
    inputs: list[dict[str, Any]]  # {"name", "shape", "dtype"} of each input fed
    outputs: list[dict[str, Any]]  # the same of each output returned
    backend_info: dict[str, Any]
    # the profiling pass: the monotonic clock when the timed loop ended and when the pass began (it must be later),
    # the pass's ProfilePass.to_wire(), or why there is none
    timed_loop_ended_ns: int | None = None
    profile_started_ns: int | None = None
    profile: dict[str, Any] | None = None
    profile_error: str | None = None


@dataclass(kw_only=True)
class ReferenceResult(Message):
    """The reference run's facts: how many samples, whether labelled, and how its outputs are laid out."""

    WHAT = "a reference result"
    samples: int
    labelled: bool
    backend_info: dict[str, Any]
    batch: int  # the batch the reference ran at: 1, or the model's fixed batch
    output_names: list[str]
    unit_shapes: list[list[int]]

    def evaluation(self, inputs: str, outputs: str) -> Evaluation:
        """The evaluation part of a case's measure job: the reference's ``inputs``, the case's ``outputs`` file."""
        return Evaluation(inputs=inputs, outputs=outputs, reference_batch=self.batch,
                          output_names=list(self.output_names), unit_shapes=[list(s) for s in self.unit_shapes])


@dataclass(kw_only=True)
class OverheadResult(Message):
    WHAT = "an overhead result"
    harness_samples_ns: list[int]
    bare_samples_ns: list[int]
    backend_info: dict[str, Any]


@dataclass(kw_only=True)
class ServeResult(Message):
    """What a serve worker leaves when it quits (its replies went out on stdout)."""

    WHAT = "a serve result"
    commands: int


TaskResult = MeasureResult | ReferenceResult | OverheadResult | ServeResult
RESULTS: dict[str, type[Message]] = {"measure": MeasureResult, "reference": ReferenceResult,
                                     "overhead": OverheadResult, "serve": ServeResult}


@dataclass(kw_only=True)
class WorkerReport:
    """A result file: who wrote it and when it began, and either the task's result (status "ok") or the worker's
    own one-line reason and the phase it failed in (status "failed"). On the wire all of it is one flat object."""

    pid: int
    entered_at_ns: int
    result: TaskResult | None = None
    reason: str | None = None
    phase: str | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"pid": self.pid, "entered_at_ns": self.entered_at_ns}
        if self.result is not None:
            return {**wire, **self.result.to_wire(), "status": "ok"}
        return {**wire, "status": "failed", "reason": self.reason, "phase": self.phase}

    @classmethod
    def from_wire(cls, data: Any, task: str) -> WorkerReport:
        """A ``task`` worker's result file; ProtocolError naming the key it lacks."""
        where = f"a {task} worker's result file"
        if not isinstance(data, dict):
            raise ProtocolError(f"{where} is not a JSON object but {type(data).__name__}")
        for key in ("pid", "entered_at_ns", "status"):
            if key not in data:
                raise ProtocolError(f"{where} has no {key!r} key")
        report = cls(pid=data["pid"], entered_at_ns=data["entered_at_ns"])
        if data["status"] == "ok":
            report.result = typing.cast(TaskResult, RESULTS[task]._read(data, f"{where} ({RESULTS[task].WHAT})"))
        else:
            if "reason" not in data:
                raise ProtocolError(f"{where} says it failed and has no 'reason' key")
            report.reason, report.phase = data["reason"], data.get("phase")
        return report


# -- a serve worker's commands (stdin) and replies (stdout), one JSON line each -----------------------------------


@dataclass(kw_only=True)
class RunSlice(Message):
    """Time back-to-back inferences for at least ``run`` seconds (one inference at least): a lock-step slice."""

    WHAT = "a run command"
    run: float


@dataclass(kw_only=True)
class RunUntil(Message):
    """Run from ``from_ns`` until the monotonic clock passes ``until_ns``, with each inference's end: a duet round."""

    WHAT = "a duet command"
    from_ns: int = 0
    until_ns: int


@dataclass(kw_only=True)
class Renew(Message):
    """Replace the session(s) with fresh ones: a new round where a new process is not wanted."""

    WHAT = "a renew command"
    renew: bool = True


@dataclass(kw_only=True)
class Quit(Message):
    WHAT = "a quit command"
    quit: bool = True


ServeCommand = RunSlice | RunUntil | Renew | Quit


def command_from_wire(data: Any) -> ServeCommand:
    """The command in a line a serve worker read (ProtocolError: no command it knows)."""
    if not isinstance(data, dict):
        raise ProtocolError(f"a serve command is not a JSON object but {type(data).__name__}")
    if "run" in data:
        return RunSlice.from_wire(data)
    if "until_ns" in data:
        return RunUntil.from_wire(data)
    if data.get("renew"):
        return Renew.from_wire(data)
    if data.get("quit"):
        return Quit.from_wire(data)
    raise ProtocolError(f"a serve command is one of run, until_ns, renew, quit; none is in {sorted(data)}")


@dataclass(kw_only=True)
class SideEnvironment(Message):
    """The interpreter and library versions a side's worker runs with, as they are."""

    WHAT = "a side's environment"
    python: str
    python_version: str
    libraries: dict[str, str]


@dataclass(kw_only=True)
class ReadyReply(Message):
    """The model is loaded, run once and warmed: what the coordinator checks the sides by, and how they run.

    ``mode`` and ``streams`` say what a slice times: ``latency`` and ``throughput`` one stream, ``concurrent``
    ``streams`` sessions at once (a slice's samples are then every stream's inferences)."""

    WHAT = "a ready reply"
    OMITTED_WHEN_NONE = frozenset({"environment"})
    pid: int
    init_ns: int
    outputs_finite: bool
    backend_info: dict[str, Any]
    inference_s: float  # the warm-up's mean inference: a slice lasts one at least
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    mode: str
    streams: int
    environment: SideEnvironment | None = None  # on the first ready of a worker, not after a renewal

    def to_wire(self) -> dict[str, Any]:
        return {"ready": True, **super().to_wire()}


@dataclass(kw_only=True)
class SliceReply(Message):
    """A lock-step slice: every inference's latency and the slice's wall time; a concurrent case's per stream."""

    WHAT = "a slice reply"
    OMITTED_WHEN_NONE = frozenset({"per_stream_runs"})
    samples_ns: list[int]
    wall_ns: int
    per_stream_runs: list[int] | None = None  # concurrent mode only: each stream's inferences in the slice


@dataclass(kw_only=True)
class UntilReply(Message):
    """A duet round: every recorded inference's latency and its end on the monotonic clock."""

    WHAT = "a duet reply"
    samples_ns: list[int]
    ends_ns: list[int]


@dataclass(kw_only=True)
class ErrorReply(Message):
    """A command the worker cannot carry out, answered (the coordinator would otherwise wait until it calls the
    worker hung)."""

    WHAT = "an error reply"
    error: str


ServeReply = ReadyReply | SliceReply | UntilReply | ErrorReply


def reply_from_wire(data: Any) -> ServeReply:
    """The reply in a line a serve worker sent, by what it carries."""
    if not isinstance(data, dict):
        raise ProtocolError(f"a serve reply is not a JSON object but {type(data).__name__}")
    if data.get("ready"):
        return ReadyReply.from_wire(data)
    if "error" in data:
        return ErrorReply.from_wire(data)
    if "ends_ns" in data:
        return UntilReply.from_wire(data)
    if "samples_ns" in data:
        return SliceReply.from_wire(data)
    raise ProtocolError(f"a serve reply carries ready, error or samples_ns; none is in {sorted(data)}")
