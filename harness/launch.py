"""Starting a worker process, the one way: for a one-shot job (the engine's cases, the reference, the overhead
check; run_worker runs one to its end under a timeout and a memory watch) and for a piped one (a side of a
same-sitting comparison, answering commands on stdin).

Both kinds were started by two hand-written spawners that had to agree on the environment, the session, the job
file and the log; now they cannot drift. Also here: how a worker that left no result is explained (its exit status,
a signal, the end of its log).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

from harness.protocol import CaseJob, WorkerJob, WorkerReport
from results.store import safe_file_name
from sysinfo.envinfo import REPO_ROOT
from sysinfo.lifeline import child_env

# a worker's interpreter pins itself to its cores before it imports anything (numpy's and the runtime's thread
# pools take the affinity they are born with), then runs the worker as `python -m harness.worker` would
PINNED_START = ("import os, runpy, sys; os.sched_setaffinity(0, [int(c) for c in sys.argv[1].split(',')]); "
                "sys.argv = ['harness.worker', *sys.argv[2:]]; runpy.run_module('harness.worker', run_name='__main__')")
LOG_TAIL_BYTES = 64 * 1024


def pin_running(pid: int, cores: list[int]) -> None:
    """Pin every thread a running process has now to ``cores`` (a thread it starts later inherits its starter's).

    A lock-step round moves its sides onto one shared core once they are loaded and warm, rather than starting them
    there: started pinned, N sides' start-ups (imports, loading, warm-up) queue on that one core; started free, they
    overlap on all of them, and only the slices, the part that is measured, share the core. The sides' thread counts
    are set (methods.shared_cores pins none whose pool would size itself by the affinity it was born with).
    ProcessLookupError if the process is gone; a thread that ended meanwhile is skipped."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        raise ProcessLookupError(f"process {pid} has ended") from None
    for tid in tids:
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(tid), cores)


def worker_env() -> dict[str, str]:
    """The environment of child processes: our packages importable even when not pip-installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


class CannotStart(OSError):
    """The interpreter could not be started at all (no such file, a bad shebang): ``reason`` says why, in the
    operating system's words. An OSError still, as Popen's was; writing the job file or the log raises a plain one,
    so that a side's bad interpreter is told apart from a logs folder that cannot take the files."""

    def __init__(self, python: str, reason: str) -> None:
        super().__init__(f"cannot start {python}: {reason}")
        self.python, self.reason = python, reason


@dataclass
class LaunchedWorker:
    """A started worker and its files. ``log`` is this process's handle on the log, closed once the worker has
    its own (closing it again is harmless)."""

    process: subprocess.Popen
    job_path: Path
    result_path: Path
    log_path: Path
    log: IO[bytes]
    spawned_at_ns: int  # wall clock, before the job file was written: the worker's start-up is measured from it
    started_at: float  # perf_counter, just before the process was started


def start_worker(job: CaseJob | dict[str, Any], work_dir: Path, name: str, *, piped: bool = False,
                 python: str | None = None, cores: list[int] | None = None) -> LaunchedWorker:
    """Write ``job`` to ``work_dir``/NAME.job.json and start ``python -m harness.worker`` on it, in its own session
    (so that it and whatever it starts are killed as a group) and with the lifeline (it dies with this process).

    One-shot (``piped`` False): stdout and stderr go to NAME.log and stdin is closed; the worker leaves its result in
    NAME.result.json. Piped: stdin and stdout are the command channel and stderr goes to the log. ``python``: another
    interpreter (an A/B side's virtualenv); ``cores``: the CPUs the worker pins itself to before it imports anything.
    A dict ``job`` is written as it is (the coordinator's own); a typed one as its ``to_wire()``.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    name = safe_file_name(name)
    job_path, result_path, log_path = (work_dir / f"{name}.job.json", work_dir / f"{name}.result.json",
                                       work_dir / f"{name}.log")
    result_path.unlink(missing_ok=True)
    spawned = time.time_ns()
    wire = job.to_wire() if isinstance(job, CaseJob) else job
    job_path.write_text(json.dumps({**wire, "spawned_at_ns": spawned}))
    python = python or sys.executable
    command = [python, "-m", "harness.worker"]
    if cores:
        command = [python, "-c", PINNED_START, ",".join(map(str, cores))]
    command += [str(job_path), str(result_path)]
    if piped:
        streams: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE}
    else:
        streams = {"stdin": subprocess.DEVNULL, "stderr": subprocess.STDOUT}
    with open(log_path, "wb") as log:  # the worker holds its own descriptor: this one closes once it is started
        if piped:
            streams["stderr"] = log
        else:
            streams["stdout"] = log
        started = time.perf_counter()
        try:
            process = subprocess.Popen(command, env=child_env(worker_env()), start_new_session=True, **streams)
        except OSError as error:  # a python= that is not an interpreter (a bad shebang, no such file)
            raise CannotStart(python, str(error.strerror or error)) from None
    return LaunchedWorker(process, job_path, result_path, log_path, log, spawned, started)


def tail_of_log(path: Path, lines: int = 6) -> str:
    """The last non-blank lines of a worker's log, read from its last 64 KiB only: a side's interpreter or a library
    that writes without end must not make the coordinator read gigabytes to say why it failed."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - LOG_TAIL_BYTES))
            text = handle.read(LOG_TAIL_BYTES).decode(errors="replace")
    except OSError:
        return ""
    kept = [line for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(kept)


def signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def exit_reason(returncode: int | None, log_path: Path) -> str:
    """Why a worker that left no result ended: a signal (SIGKILL: the kernel's out-of-memory killer, most likely),
    or its exit status with the end of its log."""
    if returncode is not None and returncode < 0:
        name = signal_name(returncode)
        hint = " (the kernel's out-of-memory killer, most likely)" if name == "SIGKILL" else ""
        return f"worker crashed with {name}{hint}; log: {log_path}"
    tail = tail_of_log(log_path)
    if not tail:  # said in full: "... and no result: " ended on nothing
        return f"worker exited with status {returncode} and no result; its log is empty ({log_path})"
    return f"worker exited with status {returncode} and no result: {tail}"


@dataclass
class WorkerOutcome:
    """How a one-shot worker ended: its report, or the one-line reason it left none."""

    report: WorkerReport | None
    reason: str | None
    wall_ms: float
    spawned_at_ns: int
    exit_code: int | None
    log: Path


def _watch(process: subprocess.Popen, deadline: float, timeout_s: float, memory_limit_mb: int | None) -> str | None:
    """Wait for the worker; the reason it had to be killed (timeout, memory), or None if it ended by itself."""
    try:
        watched = psutil.Process(process.pid)
    except psutil.Error:  # already gone: wait() below collects its status
        watched = None
    while True:
        try:
            process.wait(timeout=0.1)
            return None
        except subprocess.TimeoutExpired:
            pass
        if time.perf_counter() > deadline:
            return f"timed out after {timeout_s:g} s (measure.timeout_s) and was killed"
        if memory_limit_mb is not None and watched is not None:
            try:
                rss_mb = watched.memory_info().rss / 2**20
            except psutil.Error:
                continue
            if rss_mb > memory_limit_mb:
                return (f"ran out of memory: RSS {rss_mb:.0f} MB passed measure.memory_limit_mb "
                        f"({memory_limit_mb} MB) and was killed")


def run_worker(job: WorkerJob, work_dir: Path, name: str, timeout_s: float,
               memory_limit_mb: int | None = None) -> WorkerOutcome:
    """Run one job in a fresh interpreter to its end (the engine's cases, the reference, the overhead check); every
    way it can end becomes a report or a one-line reason."""
    launched = start_worker(job, work_dir, name)
    process = launched.process
    try:
        killed_for = _watch(process, launched.started_at + timeout_s, timeout_s, memory_limit_mb)
    finally:  # Ctrl-C in the parent must not leave an orphaned worker measuring on
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    wall_ms = (time.perf_counter() - launched.started_at) * 1e3
    outcome = WorkerOutcome(None, None, wall_ms, launched.spawned_at_ns, process.returncode, launched.log_path)
    if killed_for:
        outcome.reason = f"worker {killed_for}"
    elif launched.result_path.exists():
        try:
            outcome.report = WorkerReport.from_wire(json.loads(launched.result_path.read_text()), job.TASK)
        except ValueError as error:  # a result this version cannot read (ProtocolError names the key)
            outcome.reason = f"worker left a result that cannot be read: {error} (log: {launched.log_path})"
    else:
        outcome.reason = exit_reason(process.returncode, launched.log_path)
    return outcome
