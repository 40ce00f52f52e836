"""Timing loops, run inside the worker. The protocol follows TFLite's benchmark_model and trtexec.

Load time, first inference, warm-up and steady state are kept apart; warm-up runs until both a run count and
a duration are met (caches, JIT paths and CPU frequency settle); steady state runs until both ``min_runs``
and ``min_seconds`` are met, capped by ``max_seconds``. Every raw sample is kept. This module imports only
the standard library: it runs in the lean worker process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from scenario.defaults import MEASURE_DEFAULTS

Call = Callable[[], object]
# The most inferences one reply of an A/B side's worker records (a lock-step slice ends there; a duet round runs on
# to its end unrecorded): a round's length does not bound its reply, a model that answers in 5 us sends 4 MB per
# round second, so a 600 s round would be a 2.4 GB line. A million is 5 s of the fastest model measured, far beyond
# the default round (1 s) and slice (50 ms), and at most 42 MB of JSON (harness.sitting.channel.MAX_REPLY_BYTES).
MAX_REPLY_SAMPLES = 1_000_000


@dataclass(frozen=True)
class MeasureSettings:
    """The timing loop's share of a case's measure settings; what a case leaves out takes scenario.defaults'."""

    warmup_runs: int
    warmup_seconds: float
    min_runs: int
    min_seconds: float
    max_seconds: float
    streams: int

    @classmethod
    def from_dict(cls, values: dict) -> MeasureSettings:
        names = cls.__dataclass_fields__
        merged = {**MEASURE_DEFAULTS, **values}
        return cls(**{key: value for key, value in merged.items() if key in names})


@dataclass
class LoopResult:
    """What a steady-state loop saw: per-run samples and the wall and CPU time of the whole loop."""

    samples_ns: list[int]
    wall_ns: int
    cpu_ns: int
    per_stream_runs: list[int] = field(default_factory=list)

    @property
    def runs(self) -> int:
        return len(self.samples_ns)


def warm_up(call: Call, runs: int, seconds: float) -> tuple[int, float]:
    """Run until both ``runs`` and ``seconds`` are reached; returns what was done."""
    clock = time.perf_counter_ns
    start = clock()
    deadline = start + int(seconds * 1e9)
    done = 0
    while done < runs or clock() < deadline:
        call()
        done += 1
    return done, (clock() - start) / 1e9


def timed_loop(call: Call, min_runs: int, min_seconds: float, max_seconds: float,
               max_runs: int | None = None) -> LoopResult:
    """Time each call back to back until ``min_runs`` and ``min_seconds`` are both met or ``max_seconds`` passes
    (or ``max_runs`` are done: an A/B slice's reply is bounded).

    Only the call sits between the two clock reads: the bookkeeping (append, stop test) happens outside the
    timed region, so the harness adds nothing to a sample that a bare loop would not.
    """
    clock = time.perf_counter_ns
    samples: list[int] = []
    append = samples.append
    cpu_start = time.process_time_ns()
    start = clock()
    min_end = start + int(min_seconds * 1e9)
    hard_end = start + int(max_seconds * 1e9)
    most = max_runs or float("inf")
    while True:
        before = clock()
        call()
        after = clock()
        append(after - before)
        if (after >= min_end and len(samples) >= min_runs) or after >= hard_end or len(samples) >= most:
            break
    wall = clock() - start
    return LoopResult(samples, wall, time.process_time_ns() - cpu_start)


def concurrent_loop(calls: list[Call], min_runs: int, min_seconds: float, max_seconds: float,
                    max_runs: int | None = None) -> LoopResult:
    """N streams, one thread and one session each, issuing back to back until the shared stop condition.

    ``min_runs`` counts runs over all streams. Native runtimes release the GIL while they compute, so the
    streams really overlap; the Python bookkeeping between calls is what a Python server would also pay.
    ``max_runs`` (over all streams) bounds an A/B slice's reply; the stop is checked every 5 ms, so the streams
    may run past it by what they do in that time.
    """
    clock = time.perf_counter_ns
    per_stream: list[list[int]] = [[] for _ in calls]
    stop = threading.Event()
    ready = threading.Barrier(len(calls) + 1)

    def stream(call: Call, samples: list[int]) -> None:
        append = samples.append
        ready.wait()
        while not stop.is_set():
            before = clock()
            call()
            append(clock() - before)

    threads = [threading.Thread(target=stream, args=(call, samples), daemon=True)
               for call, samples in zip(calls, per_stream, strict=True)]
    for thread in threads:
        thread.start()
    cpu_start = time.process_time_ns()
    start = clock()
    ready.wait()
    min_end = start + int(min_seconds * 1e9)
    hard_end = start + int(max_seconds * 1e9)
    most = max_runs or float("inf")
    while True:
        time.sleep(0.005)
        now = clock()
        done = sum(map(len, per_stream))
        if (now >= min_end and done >= min_runs) or now >= hard_end or done >= most:
            break
    stop.set()
    for thread in threads:
        thread.join()
    wall = clock() - start
    samples = [sample for stream_samples in per_stream for sample in stream_samples]
    return LoopResult(samples, wall, time.process_time_ns() - cpu_start,
                      per_stream_runs=[len(s) for s in per_stream])


def until_loop(call: Call, from_ns: int, until_ns: int,
               max_samples: int = MAX_REPLY_SAMPLES) -> tuple[list[int], list[int]]:
    """Back-to-back calls from ``from_ns`` until the monotonic clock passes ``until_ns``: each call's latency and
    end time, for the first ``max_samples`` calls.

    The duet's loop: both sides run it at once, on disjoint cores, and the coordinator pairs their samples by end
    time (perf_counter_ns is CLOCK_MONOTONIC on Linux, one clock for every process). Past ``max_samples`` the calls
    go on unrecorded, so that the other side's load stays as it was until the round's end; the windows after a
    side's last recorded call hold no pair.
    """
    clock = time.perf_counter_ns
    samples: list[int] = []
    ends: list[int] = []
    wait_s = (from_ns - clock()) / 1e9
    if wait_s > 0:
        time.sleep(wait_s)  # both sides were told together; they start together
    while True:
        before = clock()
        call()
        after = clock()
        if len(samples) < max_samples:
            samples.append(after - before)
            ends.append(after)
        if after >= until_ns:
            return samples, ends
