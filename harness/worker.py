"""The worker: one fresh process per case. ``python -m harness.worker JOB.json RESULT.json``.

Isolation is the point: runtimes leak threads, memory and global state, a crash must not take the run down,
and peak RSS only means something per process. So this module stays lean (standard library, numpy, psutil
and the one backend the case needs; TensorFlow only for the tensorflow backend) and reports raw numbers; the
parent process does the statistics.

A failure the worker understands (a corrupt model, an impossible shape) is written as a result with a one-line
reason and the traceback goes to the log; anything else (a segfault, a hang, running out of memory) is
diagnosed by the parent from the exit status.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.measure import MAX_REPLY_SAMPLES, LoopResult, concurrent_loop, timed_loop, until_loop, warm_up
from harness.protocol import (
    CaseJob,
    ErrorReply,
    Evaluation,
    MeasureJob,
    MeasureResult,
    Message,
    OverheadJob,
    OverheadResult,
    ProfileRequest,
    ReadyReply,
    ReferenceJob,
    ReferenceResult,
    Renew,
    RunSlice,
    RunUntil,
    ServeJob,
    ServeResult,
    SideEnvironment,
    SliceReply,
    TaskResult,
    UntilReply,
    WorkerReport,
    command_from_wire,
    job_from_wire,
)


class PhaseError(Exception):
    """An error in a named phase of the case; its message becomes the case's reason."""

    def __init__(self, phase: str, error: BaseException, subject: str | None = None) -> None:
        detail = str(error).strip() or type(error).__name__
        if subject and subject not in detail:
            detail = f"{subject}: {detail}"
        super().__init__(f"{phase} failed: {detail}")
        self.phase = phase


class _Phases:
    """Tags every exception with the phase it happened in, so reasons read 'load model failed: …'."""

    def __init__(self) -> None:
        self.current = "start"
        self.subject: str | None = None

    def __call__(self, name: str, subject: str | None = None) -> _Phases:
        """Enter phase ``name``; ``subject`` (a file, say) is named in its error unless the error names it."""
        self.current, self.subject = name, subject
        return self

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, error: BaseException | None, tb: Any) -> bool:
        if error is not None and not isinstance(error, PhaseError) and isinstance(error, Exception):
            raise PhaseError(self.current, error, self.subject) from error
        return False


def phases() -> _Phases:
    """A fresh phase tracker: for running a task's code in another process than a worker (an in-process callable)."""
    return _Phases()


def make_feeds(specs: list[Any], batch_size: int, hints: dict[str, Any], seed: int) -> list[np.ndarray]:
    """Deterministic inputs for one call at ``batch_size``, made as the scenario describes each input (shape,
    batch axis, dtype, value range or fixed value) and, where it says nothing, as the model declares it."""
    from model_zoo.inputs import InputLayout
    from model_zoo.npz_inputs import layout_feeds

    layout = InputLayout.from_json(hints)
    return layout_feeds(layout, layout.plan(specs), specs, batch_size, seed)


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _os_threads() -> int | None:
    """The worker process's OS threads right after the timed loop: the runtime's thread pools included, so a
    backend that ignores its `threads` setting (or spins up more) shows it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None  # no procfs (macOS): not measured rather than guessed


def _peak_rss_bytes() -> int:
    """This process's own high-water RSS since it exec'd the worker.

    Not ``getrusage().ru_maxrss``: Linux keeps that across fork and execve, so a worker spawned by a parent that
    holds 1.2 GB (a pytest process that imported TensorFlow) reported 1.2 GB for a 60 kB model. ``VmHWM`` in
    /proc/self/status belongs to the address space that exec created, so it counts the worker alone.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # reported in kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # no procfs (macOS): the best there is
    return peak if sys.platform == "darwin" else peak * 1024


@dataclass
class _Loaded:
    """A case's model loaded, its inputs bound and its first inference run: what every task shares, so that ``measure``
    and an A/B side time the same thing the same way. A concurrent case adds its other streams' sessions
    (open_streams), and then warms and times all of them at once, in ``measure`` and ``serve`` alike."""

    case: Any
    settings: Any
    backend: Any
    options: dict[str, Any]
    layout: Any
    artifact: str
    batch_size: int
    session: Any
    call: Any  # None (and feeds, outputs empty) when loaded without binding: the reference binds its own data
    feeds: list[np.ndarray]
    outputs: list[Any]
    imported_at_ns: int
    rss_before_prepare: int
    rss_after_prepare: int
    init_ns: int
    first_inference_ns: int
    other_sessions: list[Any] = field(default_factory=list)  # a concurrent case's streams after the first
    other_calls: list[Any] = field(default_factory=list)

    @property
    def concurrent(self) -> bool:
        return self.case.mode == "concurrent"

    @property
    def calls(self) -> list[Any]:
        """One bound call per stream."""
        return [self.call, *self.other_calls]

    def open_streams(self) -> None:
        """A concurrent case's other sessions, one per stream beyond the first, bound to the same inputs."""
        if not self.concurrent:
            return
        for _ in range(self.settings.streams - 1 - len(self.other_sessions)):
            session = self.backend.prepare(self.artifact, self.options, self.batch_size, self.layout)
            self.other_sessions.append(session)
            self.other_calls.append(session.bind(self.feeds))

    def warm(self, runs: int, seconds: float) -> tuple[int, float, float]:
        """Warm every stream up: (inferences run, seconds taken, the mean inference's seconds)."""
        if self.concurrent:
            loop = concurrent_loop(self.calls, runs, seconds, max(seconds, 1.0) * 10)
            mean = sum(loop.samples_ns) / loop.runs / 1e9 if loop.runs else 0.0
            return loop.runs, loop.wall_ns / 1e9, mean
        done, took = warm_up(self.call, runs, seconds)
        return done, took, took / done if done else 0.0

    def timed(self, min_runs: int, min_seconds: float, max_seconds: float, max_runs: int | None = None) -> LoopResult:
        """Steady state in the case's mode: one stream back to back, or every stream at once (concurrent)."""
        if self.concurrent:
            return concurrent_loop(self.calls, min_runs, min_seconds, max_seconds, max_runs)
        return timed_loop(self.call, min_runs, min_seconds, max_seconds, max_runs)

    def info(self) -> dict[str, Any]:
        info = self.session.info()
        if self.concurrent:
            info = {**info, "streams": len(self.calls), "sessions": len(self.calls)}
        return info

    def close(self) -> None:
        for session in (self.session, *self.other_sessions):
            session.close()

    def outputs_finite(self) -> bool:
        return bool(all(np.isfinite(np.asarray(o, dtype=np.float64)).all() for o in self.outputs
                   if np.asarray(o).dtype.kind in "fc"))

    def shapes(self) -> dict[str, list[dict[str, Any]]]:
        """The inputs fed and the outputs returned, by name: how two sides of an A/B are checked to match."""
        return {"inputs": [{"name": s.name, "shape": list(f.shape), "dtype": str(f.dtype)}
                           for s, f in zip(self.session.inputs, self.feeds, strict=True)],
                "outputs": [{"name": s.name, "shape": list(np.shape(o)), "dtype": str(np.asarray(o).dtype)}
                            for s, o in zip(self.session.outputs, self.outputs, strict=True)]}


def _load(job: CaseJob, phase: _Phases, batch_size: int | None = None, bind: bool = True) -> _Loaded:
    """Load the job's model at ``batch_size`` (the case's own when None); with ``bind``, make its inputs and run the
    first inference. Every task loads through here, so that all load a model the same way."""
    from backends.registry import get_backend
    from harness.measure import MeasureSettings
    from model_zoo.inputs import InputLayout
    from scenario.cases import Case
    from scenario.skips import backend_options

    case = Case.from_dict(job.case)
    batch = case.batch_size if batch_size is None else batch_size
    layout = InputLayout.from_json(job.hints)
    with phase("import backend"):
        backend = get_backend(case.backend)()
        options = backend_options(case)
    imported = time.time_ns()
    rss_before = _rss()
    with phase("load model", subject=job.artifact):  # a corrupt file is named in the reason
        start = time.perf_counter_ns()
        session = backend.prepare(job.artifact, options, batch, layout)
        init_ns = time.perf_counter_ns() - start
    rss_after_prepare = _rss()
    feeds: list[np.ndarray] = []
    call, outputs, first_ns = None, [], 0
    if bind:
        with phase("make inputs"):
            feeds = make_feeds(session.inputs, batch, job.hints, case.measure.get("seed", 0))
            call = session.bind(feeds)
        with phase("first inference"):
            start = time.perf_counter_ns()
            outputs = call()
            first_ns = time.perf_counter_ns() - start
    return _Loaded(case, MeasureSettings.from_dict(case.measure), backend, options, layout, job.artifact, batch,
                   session, call, feeds, outputs, imported, rss_before, rss_after_prepare, init_ns, first_ns)


def measure(job: MeasureJob, phase: _Phases) -> MeasureResult:
    loaded = _load(job, phase)
    settings = loaded.settings
    finite = loaded.outputs_finite()
    with phase("warm-up"):
        loaded.open_streams()
        warmup_runs, warmup_seconds, _ = loaded.warm(settings.warmup_runs, settings.warmup_seconds)
    from sysinfo.gpu_telemetry import GpuSampler

    with phase("measure"), GpuSampler() as gpu:  # NVML on a thread; a no-op without NVIDIA's driver
        loop = loaded.timed(settings.min_runs, settings.min_seconds, settings.max_seconds)
    timed_loop_ended_ns = time.monotonic_ns()
    info = loaded.info()
    peak_rss = _peak_rss_bytes()  # before the evaluation pass, which holds a whole data set in memory
    os_threads = _os_threads()  # the runtime's pools are up now: does `threads: N` give N workers?
    evaluation_seconds = evaluation_error = None
    if job.evaluation:  # a failure here costs the accuracy figures, never the timings already taken
        started = time.perf_counter()
        try:
            _evaluate(loaded.session, loaded.batch_size, job.evaluation)
            evaluation_seconds = time.perf_counter() - started
        except Exception as error:
            traceback.print_exc()
            detail = str(error).strip() or type(error).__name__
            evaluation_error = f"evaluation on the reference inputs failed: {detail}"
    profile_started_ns = time.monotonic_ns()
    profile, profile_error = _profile(loaded, job.profile) if job.profile else (None, None)
    return MeasureResult(
        imported_at_ns=loaded.imported_at_ns, init_ns=loaded.init_ns, first_inference_ns=loaded.first_inference_ns,
        warmup_runs=warmup_runs, warmup_seconds=warmup_seconds, samples_ns=loop.samples_ns, wall_ns=loop.wall_ns,
        cpu_ns=loop.cpu_ns, per_stream_runs=loop.per_stream_runs, gpu_telemetry=gpu.result(),
        rss_before_prepare=loaded.rss_before_prepare, rss_after_prepare=loaded.rss_after_prepare,
        peak_rss_bytes=peak_rss, os_threads=os_threads, evaluation_seconds=evaluation_seconds,
        evaluation_error=evaluation_error, outputs_finite=finite, **loaded.shapes(), backend_info=info,
        timed_loop_ended_ns=timed_loop_ended_ns, profile_started_ns=profile_started_ns if job.profile else None,
        profile=profile, profile_error=profile_error)


def _profile(loaded: _Loaded, request: ProfileRequest) -> tuple[dict[str, Any] | None, str | None]:
    """The case's per-operator profile, in a pass of its own after the timed loop and the evaluation: (the pass,
    None) or (None, why not). A failure costs the profile, never the timings already taken."""
    from backends.op_profile import ProfileUnavailable

    try:
        passed = loaded.backend.profile(loaded.artifact, loaded.options, loaded.batch_size, loaded.layout,
                                        loaded.feeds, request.runs, request.trace)
    except ProfileUnavailable as reason:
        return None, str(reason)
    except Exception as error:  # a profiler's failure is the runtime's: said, with the traceback in the log
        traceback.print_exc()
        return None, f"the profiling pass failed: {str(error).strip() or type(error).__name__}"
    return passed.to_wire(), None


def _evaluate(session: Any, batch_size: int, evaluation: Evaluation) -> None:
    """Run the reference's evaluation inputs through this session, batched by the case's batch size, and save the
    outputs cut into the reference's units (samples), so that the parent compares like with like."""
    from harness.evaluation import load_arrays, match_order, run_batched, save_arrays, stored_plans

    names, arrays, extra = load_arrays(Path(evaluation.inputs))
    order = match_order([s.name for s in session.inputs], names, "input")
    plans = stored_plans(extra, [session.inputs[order.index(i)].dtype for i in range(len(names))])
    feeds = [arrays[i].astype(np.dtype(spec.dtype), copy=False) for i, spec in zip(order, session.inputs, strict=True)]
    ordered_plans = [plans[i] for i in order]
    output_order = match_order([s.name for s in session.outputs], evaluation.output_names, "output")
    unit_shapes = [evaluation.unit_shapes[j] for j in output_order]
    outputs = run_batched(session.run, ordered_plans, feeds, batch_size, evaluation.reference_batch, unit_shapes,
                          [s.name for s in session.outputs])
    save_arrays(Path(evaluation.outputs), [s.name for s in session.outputs], outputs)


def reference(job: ReferenceJob, phase: _Phases) -> ReferenceResult:
    """Make the model's evaluation set and the reference outputs on it (see harness.evaluation)."""
    from harness.evaluation import make_evaluation_set, run_batched, save_arrays
    from model_zoo.inputs import sample_count

    # at the reference case's batch: 1, or the batch a user's file fixes (scenario.file_inputs.reference_batch)
    loaded = _load(job, phase, bind=False)  # the evaluation set is its input, not random feeds
    with phase("describe the inputs"):
        plans = loaded.layout.plan(loaded.session.inputs)
        fixed = {spec.shape[p.batch_axis] for spec, p in zip(loaded.session.inputs, plans, strict=True)
                 if p.batch_axis is not None and p.batch_axis < len(spec.shape)} - {None, 1}
    # a model exported for one batch size only runs at that size (one the expansion could not read: a converted file)
    batch = fixed.pop() if len(fixed) == 1 else loaded.case.batch_size
    if batch != loaded.case.batch_size:
        loaded.close()
        loaded = _load(job, phase, batch_size=batch, bind=False)
    session = loaded.session
    with phase("make the evaluation set"):
        arrays, labels = make_evaluation_set(loaded.layout, plans, session.inputs, job.hints.get("dataset"),
                                             loaded.case.measure.get("seed", 0))
        save_arrays(Path(job.inputs), [s.name for s in session.inputs], arrays, labels=labels,
                    batch_axes=np.array(json.dumps([p.batch_axis for p in plans])))
    with phase("run the reference"):
        outputs = run_batched(session.run, plans, arrays, batch)
        save_arrays(Path(job.outputs), [s.name for s in session.outputs], outputs)
    return ReferenceResult(samples=sample_count(plans, arrays), labelled=labels is not None,
                           backend_info=session.info(), batch=batch, output_names=[s.name for s in session.outputs],
                           unit_shapes=[list(o.shape[1:]) for o in outputs])


def overhead(job: OverheadJob, phase: _Phases) -> OverheadResult:
    """Harness loop and bare loop over the same session, interleaved in rounds so drift hits both alike."""
    loaded = _load(job, phase)
    session, call, feeds = loaded.session, loaded.call, loaded.feeds
    with phase("warm-up"):
        warm_up(call, 200, 0.5)
        session.bare_loop(feeds, 200)
    harness_samples: list[int] = []
    bare_samples: list[int] = []
    with phase("measure"):
        for _ in range(job.rounds):
            harness_samples += timed_loop(call, job.runs_per_round, 0.0, 60.0).samples_ns
            bare_samples += session.bare_loop(feeds, job.runs_per_round)
    return OverheadResult(harness_samples_ns=harness_samples, bare_samples_ns=bare_samples,
                          backend_info=session.info())


# distributions whose versions an A/B side reports: what a library upgrade changes
SIDE_LIBRARIES = ("numpy", "onnxruntime", "onnxruntime-gpu", "ai-edge-litert", "tflite-runtime", "tensorflow",
                  "tensorrt", "onnx")


def side_environment() -> SideEnvironment:
    """The interpreter and library versions this worker runs with: an A/B side's environment, as it is (another
    virtualenv's interpreter reports its own)."""
    from importlib.metadata import PackageNotFoundError, version

    libraries = {}
    for name in SIDE_LIBRARIES:
        with contextlib.suppress(PackageNotFoundError):
            libraries[name] = version(name)
    return SideEnvironment(python=sys.executable, python_version=sys.version.split()[0], libraries=libraries)


def _loaded_side(job: ServeJob, phase: _Phases) -> tuple[_Loaded, ReadyReply]:
    """Load, run and warm the case's model, every stream of it (concurrent): the side and its ready reply."""
    loaded = _load(job, phase)
    finite = loaded.outputs_finite()
    with phase("warm-up"):
        loaded.open_streams()
        seconds = loaded.settings.warmup_seconds if job.warmup_seconds is None else float(job.warmup_seconds)
        runs = loaded.settings.warmup_runs if job.warmup_runs is None else int(job.warmup_runs)
        _, _, inference_s = loaded.warm(max(runs, 1), seconds)
    ready = ReadyReply(pid=os.getpid(), init_ns=loaded.init_ns, outputs_finite=finite, backend_info=loaded.info(),
                       inference_s=inference_s, **loaded.shapes(), mode=loaded.case.mode, streams=len(loaded.calls))
    return loaded, ready


def serve(job: ServeJob, phase: _Phases) -> ServeResult:
    """One side of an A/B comparison or a race (harness.sitting drives it): load and warm the model, say "ready",
    then run slices of inferences when told, until told to quit.

    Commands arrive as JSON lines on stdin; replies go out as JSON lines on the process's original stdout, and
    everything else the process prints (a runtime's banner on fd 1) goes to the log, so it can never corrupt a
    reply. The messages are harness.protocol's: ``{"run": s}`` (RunSlice) times inferences for at least s seconds
    (one at least) in the case's mode, as ``measure`` does: a concurrent case runs all its streams at once and says
    how many inferences each stream ran; ``{"from_ns": t0, "until_ns": t1}`` (RunUntil) runs from t0 until the
    monotonic clock (one clock for all processes) passes t1, with each inference's end time, for the duet, which
    times one stream a side (a concurrent case is refused with an error reply); ``{"renew": true}`` replaces the
    session(s) with fresh ones (a new round where a new process is not wanted); ``{"quit": true}`` ends.
    """
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)

    def send(message: Message) -> None:
        replies.write(json.dumps(message.to_wire()) + "\n")
        replies.flush()

    loaded, ready = _loaded_side(job, phase)
    ready.environment = side_environment()
    send(ready)
    commands = 0
    while line := sys.stdin.readline():
        commands += 1
        try:
            command = command_from_wire(json.loads(line))
        except ValueError:  # answered, or the coordinator would wait for a reply until it calls this worker hung
            send(ErrorReply(error=f"unknown command {line.strip()[:200]}"))
            continue
        with phase("measure"):
            if isinstance(command, RunSlice):
                seconds = float(command.run)
                loop = loaded.timed(1, seconds, max(10.0, seconds * 100), MAX_REPLY_SAMPLES)
                send(SliceReply(samples_ns=loop.samples_ns, wall_ns=loop.wall_ns,
                                per_stream_runs=loop.per_stream_runs if loaded.concurrent else None))
            elif isinstance(command, RunUntil):
                if loaded.concurrent:
                    send(ErrorReply(error=f"a duet times one stream a side and this case is concurrent "
                                          f"({len(loaded.calls)} streams): compare it with method lockstep"))
                    continue
                samples, ends = until_loop(loaded.call, int(command.from_ns), int(command.until_ns))
                send(UntilReply(samples_ns=samples, ends_ns=ends))
            elif isinstance(command, Renew):
                loaded.close()
                del loaded  # the old sessions' memory goes before the new ones take their place
                loaded, ready = _loaded_side(job, phase)
                send(ready)
            else:
                break
    return ServeResult(commands=commands)


TASKS: dict[str, Callable[[Any, _Phases], TaskResult]] = {
    "measure": measure, "overhead": overhead, "reference": reference, "serve": serve}


def main(argv: list[str]) -> int:
    entered = time.time_ns()
    from sysinfo.lifeline import die_with_parent

    die_with_parent()
    job_path, result_path = argv
    report = WorkerReport(pid=os.getpid(), entered_at_ns=entered)
    phase = _Phases()
    try:
        try:
            job = job_from_wire(json.loads(Path(job_path).read_text()))
        except ValueError as error:  # a job file this version cannot read: said, not a traceback in the log only
            raise PhaseError("read the job", error, job_path) from error
        report.result = TASKS[job.TASK](job, phase)
    except PhaseError as error:
        traceback.print_exc()
        report.reason, report.phase = str(error), error.phase
    tmp = Path(result_path).with_suffix(".tmp")
    tmp.write_text(json.dumps(report.to_wire()))
    os.replace(tmp, result_path)  # the parent never sees a half-written result
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
