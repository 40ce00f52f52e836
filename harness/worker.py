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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


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


def make_feeds(specs: list[Any], batch_size: int, hints: dict[str, Any], seed: int) -> list[np.ndarray]:
    """Deterministic inputs for one call at ``batch_size``, made as the scenario describes each input (shape,
    batch axis, dtype, value range or fixed value) and, where it says nothing, as the model declares it."""
    from model_zoo.inputs import InputLayout
    from model_zoo.inputs import make_feeds as feeds_for

    return feeds_for(InputLayout.from_json(hints).plan(specs), batch_size, seed)


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
    """A case's model loaded, its inputs bound and its first inference run: what ``measure`` and an A/B side share,
    so that both time the same thing the same way."""

    case: Any
    settings: Any
    backend: Any
    options: dict[str, Any]
    layout: Any
    session: Any
    call: Any
    feeds: list[np.ndarray]
    outputs: list[Any]
    imported_at_ns: int
    rss_before_prepare: int
    rss_after_prepare: int
    init_ns: int
    first_inference_ns: int

    def outputs_finite(self) -> bool:
        return bool(all(np.isfinite(np.asarray(o, dtype=np.float64)).all() for o in self.outputs
                   if np.asarray(o).dtype.kind in "fc"))

    def shapes(self) -> dict[str, list[dict[str, Any]]]:
        """The inputs fed and the outputs returned, by name: how two sides of an A/B are checked to match."""
        return {"inputs": [{"name": s.name, "shape": list(f.shape), "dtype": str(f.dtype)}
                           for s, f in zip(self.session.inputs, self.feeds, strict=True)],
                "outputs": [{"name": s.name, "shape": list(np.shape(o)), "dtype": str(np.asarray(o).dtype)}
                            for s, o in zip(self.session.outputs, self.outputs, strict=True)]}


def _load(job: dict[str, Any], phase: _Phases) -> _Loaded:
    from backends.registry import get_backend
    from harness.measure import MeasureSettings
    from model_zoo.inputs import InputLayout
    from scenario.cases import Case
    from scenario.skips import backend_options

    case = Case.from_dict(job["case"])
    hints = job.get("hints", {})
    layout = InputLayout.from_json(hints)
    with phase("import backend"):
        backend = get_backend(case.backend)()
        options = backend_options(case)
    imported = time.time_ns()
    rss_before = _rss()
    with phase("load model", subject=job["artifact"]):  # a corrupt file is named in the reason
        start = time.perf_counter_ns()
        session = backend.prepare(job["artifact"], options, case.batch_size, layout)
        init_ns = time.perf_counter_ns() - start
    rss_after_prepare = _rss()
    with phase("make inputs"):
        feeds = make_feeds(session.inputs, case.batch_size, hints, case.measure.get("seed", 0))
        call = session.bind(feeds)
    with phase("first inference"):
        start = time.perf_counter_ns()
        outputs = call()
        first_ns = time.perf_counter_ns() - start
    return _Loaded(case, MeasureSettings.from_dict(case.measure), backend, options, layout, session, call, feeds,
                   outputs, imported, rss_before, rss_after_prepare, init_ns, first_ns)


def measure(job: dict[str, Any], phase: _Phases) -> dict[str, Any]:
    from harness.measure import concurrent_loop, timed_loop, warm_up

    loaded = _load(job, phase)
    case, settings, session, call, feeds = loaded.case, loaded.settings, loaded.session, loaded.call, loaded.feeds
    finite = loaded.outputs_finite()
    with phase("warm-up"):
        if case.mode == "concurrent":
            sessions = [session] + [loaded.backend.prepare(job["artifact"], loaded.options, case.batch_size,
                                                           loaded.layout) for _ in range(settings.streams - 1)]
            calls = [call] + [s.bind(feeds) for s in sessions[1:]]
            warm = concurrent_loop(calls, settings.warmup_runs, settings.warmup_seconds,
                                   max(settings.warmup_seconds, 1.0) * 10)
            warmup_runs, warmup_seconds = warm.runs, warm.wall_ns / 1e9
        else:
            warmup_runs, warmup_seconds = warm_up(call, settings.warmup_runs, settings.warmup_seconds)
    from sysinfo.gpu_telemetry import GpuSampler

    with phase("measure"), GpuSampler() as gpu:  # NVML on a thread; a no-op without NVIDIA's driver
        if case.mode == "concurrent":
            loop = concurrent_loop(calls, settings.min_runs, settings.min_seconds, settings.max_seconds)
        else:
            loop = timed_loop(call, settings.min_runs, settings.min_seconds, settings.max_seconds)
    info = session.info()
    if case.mode == "concurrent":
        info = {**info, "streams": settings.streams, "sessions": settings.streams}
    peak_rss = _peak_rss_bytes()  # before the evaluation pass, which holds a whole data set in memory
    os_threads = _os_threads()  # the runtime's pools are up now: does `threads: N` give N workers?
    evaluation = job.get("evaluation")
    evaluation_seconds = evaluation_error = None
    if evaluation:  # a failure here costs the accuracy figures, never the timings already taken
        started = time.perf_counter()
        try:
            _evaluate(session, case.batch_size, evaluation)
            evaluation_seconds = time.perf_counter() - started
        except Exception as error:
            traceback.print_exc()
            detail = str(error).strip() or type(error).__name__
            evaluation_error = f"evaluation on the reference inputs failed: {detail}"
    return {
        "imported_at_ns": loaded.imported_at_ns,
        "init_ns": loaded.init_ns,
        "first_inference_ns": loaded.first_inference_ns,
        "warmup_runs": warmup_runs,
        "warmup_seconds": warmup_seconds,
        "samples_ns": loop.samples_ns,
        "wall_ns": loop.wall_ns,
        "cpu_ns": loop.cpu_ns,
        "per_stream_runs": loop.per_stream_runs,
        "gpu_telemetry": gpu.result(),
        "rss_before_prepare": loaded.rss_before_prepare,
        "rss_after_prepare": loaded.rss_after_prepare,
        "peak_rss_bytes": peak_rss,
        "os_threads": os_threads,
        "evaluation_seconds": evaluation_seconds,
        "evaluation_error": evaluation_error,
        "outputs_finite": finite,
        **loaded.shapes(),
        "backend_info": info,
    }


def _evaluate(session: Any, batch_size: int, evaluation: dict[str, Any]) -> None:
    """Run the reference's evaluation inputs through this session, batched by the case's batch size, and save the
    outputs cut into the reference's units (samples), so that the parent compares like with like."""
    from harness.evaluation import load_arrays, match_order, run_batched, save_arrays, stored_plans

    names, arrays, extra = load_arrays(Path(evaluation["inputs"]))
    order = match_order([s.name for s in session.inputs], names, "input")
    plans = stored_plans(extra, [session.inputs[order.index(i)].dtype for i in range(len(names))])
    feeds = [arrays[i].astype(np.dtype(spec.dtype), copy=False) for i, spec in zip(order, session.inputs, strict=True)]
    ordered_plans = [plans[i] for i in order]
    output_order = match_order([s.name for s in session.outputs], evaluation["output_names"], "output")
    unit_shapes = [evaluation["unit_shapes"][j] for j in output_order]
    outputs = run_batched(session.run, ordered_plans, feeds, batch_size, evaluation["reference_batch"], unit_shapes,
                          [s.name for s in session.outputs])
    save_arrays(Path(evaluation["outputs"]), [s.name for s in session.outputs], outputs)


def reference(job: dict[str, Any], phase: _Phases) -> dict[str, Any]:
    """Make the model's evaluation set and the reference outputs on it (see harness.evaluation)."""
    from backends.registry import get_backend
    from harness.evaluation import make_evaluation_set, run_batched, save_arrays
    from model_zoo.inputs import InputLayout, sample_count
    from scenario.cases import Case
    from scenario.skips import backend_options

    case = Case.from_dict(job["case"])
    hints = job.get("hints", {})
    layout = InputLayout.from_json(hints)
    with phase("import backend"):
        backend = get_backend(case.backend)()
        options = backend_options(case)
    with phase("load model", subject=job["artifact"]):
        session = backend.prepare(job["artifact"], options, 1, layout)
    with phase("describe the inputs"):
        plans = layout.plan(session.inputs)
        fixed = {spec.shape[p.batch_axis] for spec, p in zip(session.inputs, plans, strict=True)
                 if p.batch_axis is not None and p.batch_axis < len(spec.shape)} - {None, 1}
    # a model exported for one batch size only runs at that size
    batch = fixed.pop() if len(fixed) == 1 else 1
    if batch != 1:
        with phase("load model", subject=job["artifact"]):
            session = backend.prepare(job["artifact"], options, batch, layout)
    with phase("make the evaluation set"):
        arrays, labels = make_evaluation_set(plans, hints.get("dataset"), case.measure.get("seed", 0))
        save_arrays(Path(job["inputs"]), [s.name for s in session.inputs], arrays, labels=labels,
                    batch_axes=np.array(json.dumps([p.batch_axis for p in plans])))
    with phase("run the reference"):
        outputs = run_batched(session.run, plans, arrays, batch)
        save_arrays(Path(job["outputs"]), [s.name for s in session.outputs], outputs)
    return {"samples": sample_count(plans, arrays), "labelled": labels is not None,
            "backend_info": session.info(), "batch": batch, "output_names": [s.name for s in session.outputs],
            "unit_shapes": [list(o.shape[1:]) for o in outputs]}


def overhead(job: dict[str, Any], phase: _Phases) -> dict[str, Any]:
    """Harness loop and bare loop over the same session, interleaved in rounds so drift hits both alike."""
    from backends.registry import get_backend
    from harness.measure import timed_loop, warm_up
    from model_zoo.inputs import InputLayout
    from scenario.cases import Case
    from scenario.skips import backend_options

    case = Case.from_dict(job["case"])
    hints = job.get("hints", {})
    rounds, runs = int(job.get("rounds", 20)), int(job.get("runs_per_round", 500))
    with phase("load model"):
        session = get_backend(case.backend)().prepare(job["artifact"], backend_options(case), case.batch_size,
                                                      InputLayout.from_json(hints))
        feeds = make_feeds(session.inputs, case.batch_size, hints, 0)
        call = session.bind(feeds)
    with phase("warm-up"):
        warm_up(call, 200, 0.5)
        session.bare_loop(feeds, 200)
    harness_samples: list[int] = []
    bare_samples: list[int] = []
    with phase("measure"):
        for _ in range(rounds):
            harness_samples += timed_loop(call, runs, 0.0, 60.0).samples_ns
            bare_samples += session.bare_loop(feeds, runs)
    return {"harness_samples_ns": harness_samples, "bare_samples_ns": bare_samples,
            "backend_info": session.info()}


# distributions whose versions an A/B side reports: what a library upgrade changes
SIDE_LIBRARIES = ("numpy", "onnxruntime", "onnxruntime-gpu", "ai-edge-litert", "tflite-runtime", "tensorflow",
                  "tensorrt", "onnx")


def side_environment() -> dict[str, Any]:
    """The interpreter and library versions this worker runs with: an A/B side's environment, as it is (another
    virtualenv's interpreter reports its own)."""
    from importlib.metadata import PackageNotFoundError, version

    libraries = {}
    for name in SIDE_LIBRARIES:
        with contextlib.suppress(PackageNotFoundError):
            libraries[name] = version(name)
    return {"python": sys.executable, "python_version": sys.version.split()[0], "libraries": libraries}


def _loaded_side(job: dict[str, Any], phase: _Phases) -> tuple[Any, Any, dict[str, Any]]:
    """Load, run and warm the case's model: (session, call, facts for the coordinator)."""
    from harness.measure import warm_up

    loaded = _load(job, phase)
    finite = loaded.outputs_finite()
    with phase("warm-up"):
        runs, seconds = warm_up(loaded.call, max(loaded.settings.warmup_runs, 1),
                                float(job.get("warmup_seconds", loaded.settings.warmup_seconds)))
    facts = {"init_ns": loaded.init_ns, "outputs_finite": finite, "backend_info": loaded.session.info(),
             "inference_s": seconds / runs, **loaded.shapes()}
    return loaded.session, loaded.call, facts


def serve(job: dict[str, Any], phase: _Phases) -> dict[str, Any]:
    """One side of an A/B comparison (harness.sitting drives it): load and warm the model, say "ready", then run
    slices of inferences when told, until told to quit.

    Commands arrive as JSON lines on stdin; replies go out as JSON lines on the process's original stdout, and
    everything else the process prints (a runtime's banner on fd 1) goes to the log, so it can never corrupt a
    reply. ``{"run": s}`` times back-to-back inferences for at least s seconds (one at least);
    ``{"from_ns": t0, "until_ns": t1}`` runs from t0 until the monotonic clock (one clock for all processes) passes
    t1, with each inference's end time, for the duet; ``{"renew": true}`` replaces the session with a fresh one (a new
    round where a new process is not wanted); ``{"quit": true}`` ends.
    """
    from harness.measure import MAX_REPLY_SAMPLES, timed_loop, until_loop

    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)

    def send(message: dict[str, Any]) -> None:
        replies.write(json.dumps(message) + "\n")
        replies.flush()

    session, call, facts = _loaded_side(job, phase)
    send({"ready": True, "pid": os.getpid(), **facts, "environment": side_environment()})
    commands = 0
    while line := sys.stdin.readline():
        command = json.loads(line)
        commands += 1
        with phase("measure"):
            if "run" in command:
                seconds = float(command["run"])
                loop = timed_loop(call, 1, seconds, max(10.0, seconds * 100), MAX_REPLY_SAMPLES)
                send({"samples_ns": loop.samples_ns, "wall_ns": loop.wall_ns})
            elif "until_ns" in command:
                samples, ends = until_loop(call, int(command.get("from_ns", 0)), int(command["until_ns"]))
                send({"samples_ns": samples, "ends_ns": ends})
            elif command.get("renew"):
                session.close()
                session = call = None  # the old session's memory goes before the new one takes its place
                session, call, facts = _loaded_side(job, phase)
                send({"ready": True, "pid": os.getpid(), **facts})
            elif command.get("quit"):
                break
            else:  # answered, or the coordinator would wait for a reply until it calls this worker hung
                send({"error": f"unknown command {line.strip()[:200]}"})
    return {"commands": commands}


TASKS = {"measure": measure, "overhead": overhead, "reference": reference, "serve": serve}


def main(argv: list[str]) -> int:
    entered = time.time_ns()
    from sysinfo.lifeline import die_with_parent

    die_with_parent()
    job_path, result_path = argv
    job = json.loads(Path(job_path).read_text())
    result: dict[str, Any] = {"pid": os.getpid(), "entered_at_ns": entered}
    phase = _Phases()
    try:
        result.update(TASKS[job.get("task", "measure")](job, phase))
        result["status"] = "ok"
    except PhaseError as error:
        traceback.print_exc()
        result.update(status="failed", reason=str(error), phase=error.phase)
    tmp = Path(result_path).with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, result_path)  # the parent never sees a half-written result
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
