"""The A/B coordinator: two sides of one case measured in one sitting, so that the machine's drift hits both.

Runs measured at different times cannot tell a 5 % change on a shared machine, whose speed swings by tens of
per cent for seconds at a time: the noise is in the time between the runs. So both sides run together:

- **lock-step** (the default): one worker per side, driven in short alternating slices of back-to-back inferences
  (tens of milliseconds); two adjacent slices, one per side, are a pair and give one log-ratio. Which side goes
  first is random within each block of two pairs (seeded, so a run is reproducible), so neither side is always
  the one that runs on a CPU the other has just warmed.
- **duet**: both sides at once, each pinned to its own half of the cores, paired by time window (Bulej et al.,
  ICPE 2020). The cores swap at random between rounds.

A pair of sessions carries its own bias (memory placement, weight packing: an A/A in one pair of sessions reads
±5 % with an interval that excludes 1), so the unit of replication is the *round*: a fresh pair of workers (or,
with ``fresh: session``, fresh sessions in the same workers) whose pairs give one log-ratio (their median).
Rounds are added until the rounds could detect a change well under the threshold, or the case's time is up; the
estimate, interval, tests and verdict come from results.paired.

Faults: a side that cannot load the case, or whose inputs differ from the other side's, is refused before
anything is measured; one that crashes or hangs mid-way ends the case with its reason, keeping the rounds done.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import select
import signal
import subprocess
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.launch import CannotStart, exit_reason, start_worker
from results.ab_record import AbRecord, AbRound, SideInfo, SlicePair
from results.paired import ALPHA, CONFIDENCE, ab_verdict, minimum_detectable_effect, paired_estimate
from scenario.cases import Case
from scenario.sides import Side

SIDES = ("base", "new")
METHODS = ("lockstep", "duet")
QUIT_GRACE_S = 2.0
# a slice (or a silence) this many times the slowest before, and this long at least, in the round given up at the
# time cap, is a side that stalled, not noise: a CPU's speed swings ~2.5x on a shared VM, a hiccup lasts < 1 s;
# a start-up (a new worker, or a renewed session) this many times the slowest before: start-ups vary less
STALL_FACTOR, START_STALL_FACTOR, STALL_FLOOR_S = 20.0, 5.0, 1.0
# The longest reply line a side's worker may send: past it the side is broken (an interpreter that writes to stdout
# without a newline was kept in memory whole, 8 GB in 25 s). The largest legitimate reply is a duet round's: measured
# on a one-node ONNX model (190,000 inferences a second a side) at 4.0 MB per round second, 21 bytes an inference;
# a reply records at most MAX_REPLY_SAMPLES inferences: 20 MB measured, 42 MB even were every number 19 digits long.
# 64 MB is above both; the line is held while it comes, then parsed (Python's objects for a line of numbers take
# about 4-5 times its size), so the limit is what a side can cost the coordinator: under half a gigabyte.
MAX_REPLY_BYTES = 64_000_000


@dataclass(frozen=True)
class AbSettings:
    """How one case is compared (a scenario's ``ab:`` block, or `accelbench ab`'s options)."""

    method: str = "lockstep"
    threshold: float = 0.05  # the change that matters
    min_effect: float | None = None  # the change "slower" needs at least; None: half the threshold
    alpha: float = ALPHA
    max_seconds: float = 60.0  # per case, worker start-ups included; the first round is always finished
    min_rounds: int = 8  # the exact signed-rank test reaches p < 0.01 from eight rounds on
    max_rounds: int = 100
    round_seconds: float = 1.0  # measured time of a round, both sides together
    slice_ms: float = 50.0
    fresh: str = "worker"  # a round's fresh pair: new worker processes, or new sessions in the same workers
    # rounds stop being added once the interval is narrow enough that, in the normal limit, its standard error
    # would detect stop_mde × threshold (a 95 % half-width of about 0.28 × threshold); the MDE reported is the
    # exact test's, a little larger at few rounds (results.paired), still below the threshold where this stops
    stop_mde: float = 0.6
    warmup_seconds: float = 0.3
    seed: int = 0

    def __post_init__(self) -> None:
        """The command line's values are checked as the scenario's are (scenario.schema.AbSpec's bounds)."""
        if self.method not in METHODS:
            raise ValueError(f"method is one of {', '.join(METHODS)}, not {self.method!r}")
        if self.fresh not in ("worker", "session"):
            raise ValueError(f"fresh is 'worker' or 'session', not {self.fresh!r}")
        if self.method == "duet" and self.fresh == "session":
            raise ValueError("a duet starts fresh workers each round (the sides swap cores): fresh: session does "
                             "not apply")
        for name in ("max_seconds", "round_seconds", "slice_ms", "threshold", "stop_mde"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, not {value!r}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold is a share between 0 and 1 (5% = 0.05), not {self.threshold!r}")
        if self.min_rounds < 2 or self.max_rounds < self.min_rounds:
            raise ValueError(f"min_rounds must be 2 or more (a spread needs two rounds) and at most max_rounds, "
                             f"not {self.min_rounds}")
        if self.seed < 0:
            raise ValueError(f"seed must be 0 or more, not {self.seed}")

    @property
    def effect(self) -> float:
        return self.threshold / 2 if self.min_effect is None else self.min_effect


class SideFailure(Exception):
    """A side's worker failed, crashed or hung; the message is the case's reason."""

    def __init__(self, side: str, reason: str, at_start: bool = False) -> None:
        super().__init__(f"{side} side: {reason}")
        self.side, self.at_start = side, at_start


class SideWorker:
    """One side's worker process and its command channel (JSON lines on stdin and stdout)."""

    def __init__(self, side: str, python: str, job: dict[str, Any], work_dir: Path, name: str,
                 cores: list[int] | None = None) -> None:
        self.side, self.python = side, python
        try:
            launched = start_worker({**job, "task": "serve"}, work_dir, name, piped=True, python=python, cores=cores)
        except CannotStart as error:  # a python= that is not an interpreter (a bad shebang, no such file)
            raise SideFailure(side, f"cannot start {python}: {error.reason}", at_start=True) from None
        self.process, self.result_path, self.log_path = launched.process, launched.result_path, launched.log_path
        self._log = launched.log
        self._buffer = b""
        self.started = False

    def send(self, command: dict[str, Any]) -> None:
        try:
            assert self.process.stdin is not None
            self.process.stdin.write((json.dumps(command) + "\n").encode())
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise SideFailure(self.side, self._why_gone(), not self.started) from None

    def receive(self, timeout_s: float, cap_at: float | None = None) -> dict[str, Any]:
        """The next reply; a hang past ``timeout_s`` or an exit becomes a SideFailure with the reason. No reply by
        ``cap_at`` (a perf_counter time: the case's time cap) kills the worker and raises _TimeUp: nobody's fault."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        asked = time.perf_counter()
        deadline = asked + timeout_s
        chunks, end = [self._buffer], self._buffer.find(b"\n")
        held = len(self._buffer)
        ends = min(deadline, cap_at) if cap_at is not None else deadline
        while end < 0:  # only each new chunk is searched: a duet's reply can be megabytes
            if held > MAX_REPLY_BYTES:
                raise self._overlong()
            # what has arrived is read first, so that a reply that made it before the cap or the timeout counts
            if not select.select([fd], [], [], max(ends - time.perf_counter(), 0.0))[0]:
                if time.perf_counter() < ends:
                    continue
                self.kill()
                if cap_at is not None and cap_at <= deadline:
                    raise _TimeUp(self.side, time.perf_counter() - asked)
                what = "did not finish loading" if not self.started else "stopped answering"
                raise SideFailure(self.side, f"worker {what} within {timeout_s:g} s (hung) and was killed; "
                                  f"log: {self.log_path}", not self.started)
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise SideFailure(self.side, self._why_gone(), not self.started)
            newline = chunk.find(b"\n")
            if newline >= 0:
                end = held + newline
            chunks.append(chunk)
            held += len(chunk)
        if end > MAX_REPLY_BYTES:
            raise self._overlong()
        data = b"".join(chunks)
        line, self._buffer = data[:end], data[end + 1:]
        try:
            reply = json.loads(line)
        except ValueError:
            reply = None
        if not isinstance(reply, dict):  # a wrapper script or a sitecustomize that prints to stdout
            self.kill()
            shown = line[:200].decode(errors="replace")
            raise SideFailure(self.side, f"worker sent {shown!r} instead of a reply (does {self.side}'s python print "
                              f"at start-up?); log: {self.log_path}", not self.started)
        if reply.get("ready"):
            self.started = True
        elif "error" in reply:
            raise SideFailure(self.side, f"worker refused a command: {reply['error']}", not self.started)
        return reply

    def _overlong(self) -> SideFailure:
        """The worker is killed: whatever it writes without a newline is no reply (and would be held whole)."""
        self.kill()
        return SideFailure(self.side, f"its worker sent a reply over {MAX_REPLY_BYTES // 10**6} MB without a newline "
                           f"(a reply is one JSON line: does the {self.side} side's python={self.python} print to "
                           f"stdout?); log: {self.log_path}", not self.started)

    def ask(self, command: dict[str, Any], timeout_s: float, cap_at: float | None = None) -> dict[str, Any]:
        self.send(command)
        return self.receive(timeout_s, cap_at)

    def _why_gone(self) -> str:
        """Why the worker is gone: its own one-line reason, a signal, or its exit status and log tail."""
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
        code = self.process.returncode
        try:
            result = json.loads(self.result_path.read_text())
        except (OSError, ValueError):
            result = {}
        if result.get("status") == "failed":
            return f"{result.get('reason')} (log: {self.log_path})"
        return exit_reason(code, self.log_path)

    def kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def close(self) -> None:
        """Ask the worker to quit; kill it if it does not within a moment (or at once if it is stuck)."""
        if self.process.poll() is None:
            try:
                self.send({"quit": True})
                self.process.wait(timeout=QUIT_GRACE_S)
            except (SideFailure, subprocess.TimeoutExpired):
                pass
        self.kill()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        self._log.close()


@dataclass
class _SideTally:
    """What a side has done so far in one case."""

    first_ready: dict[str, Any] | None = None
    slice_medians: list[float] = field(default_factory=list)
    inferences: int = 0
    startup_s: float = 0.0


class CaseComparison:
    """Compares one case on two sides; ``run()`` returns its AbRecord (also when a side fails)."""

    def __init__(self, cases: dict[str, Case], artifacts: dict[str, str], sides: dict[str, Side],
                 settings: AbSettings, work_dir: Path, env_id: str | None = None,
                 progress: Callable[[str], None] | None = None, refusal: tuple[str | None, str] | None = None,
                 index: int = 0) -> None:
        """``refusal``: (the side at fault or None, why) when the sides cannot be compared, found before (a side's
        artefact could not be built); ("skipped", why) when this machine cannot run the case at all. ``index``:
        how many comparisons of this case the run folder already holds, so that each draws its own slice order
        and writes its own logs."""
        self.cases, self.artifacts, self.sides, self.settings = cases, artifacts, sides, settings
        self.refusal = refusal
        self.work_dir, self.env_id, self.progress = work_dir, env_id, progress
        base = cases["base"]
        self.case_id = base.case_id
        self.name = f"{base.case_id}-c{index}" if index else base.case_id
        self.timeout_s = float(base.measure["timeout_s"])
        self.rng = np.random.default_rng([settings.seed, zlib.crc32(base.case_id.encode()), index])
        self.tally = {side: _SideTally() for side in SIDES}
        self.rounds: list[AbRound] = []
        self.workers: dict[str, SideWorker] = {}
        self.cores = self._duet_cores() if settings.method == "duet" else None
        self.started = 0.0
        self.round_starts: list[float] = []  # perf_counter at the start of each round (its workers' start-up on)
        self.slowest_close_s = 0.0  # the longest a pair of workers took to close: the last pair closes too
        self.slowest_by_side = dict.fromkeys(SIDES, 0.0)  # each side's slowest slice (or start-up inference)
        self.start_lengths: list[float] = []  # how long each round's pair took to be ready (spawned or renewed)
        self.slowest_what = dict.fromkeys(SIDES, "a slice")  # what took slowest_by_side: a slice, or a warm-up
        self.given_up: str | None = None  # the round under way at the time cap, dropped: why
        self.stalled: str | None = None  # a side that stalled in that round, named

    # -- the comparison ----------------------------------------------------------------------------------
    def run(self) -> AbRecord:
        record = self._blank_record()
        record.started_at = time.time()
        self.started = time.perf_counter()
        measured = 0.0
        mark = self._mark()
        try:
            if self.refusal:
                raise _Refused(*self.refusal)
            if isinstance(self.cores, str):
                raise _Refused(None, self.cores)
            while self._another_round():
                self.round_starts.append(time.perf_counter())
                mark = self._mark()
                cores = self._round_cores()
                self._fresh_pair(cores)
                if len(self.rounds) == 0:
                    self._refuse_mismatch()
                began = time.perf_counter()
                pairs = self._duet_round() if self.settings.method == "duet" else self._lockstep_round()
                measured += time.perf_counter() - began
                ratios = [math.log(p.new_ms / p.base_ms) for p in pairs if p.base_ms > 0 and p.new_ms > 0]
                self.rounds.append(AbRound(index=len(self.rounds), log_ratio=float(np.median(ratios)), pairs=pairs,
                                           base_cores=cores["base"] if cores else None,
                                           new_cores=cores["new"] if cores else None))
                if self.progress:
                    self.progress(f"round {len(self.rounds)}: new/base {math.exp(self.rounds[-1].log_ratio):.3f}")
            record.status = "compared"
        except _TimeUp as time_up:  # the round under way would have ended past the cap: dropped, the others judged
            record.status = "compared"
            self._give_up_round(time_up, mark)
        except _Refused as refusal:
            kept = f" ({len(self.rounds)} rounds kept)" if self.rounds else ""
            record.status, record.reason = "refused", f"not compared: {refusal}{kept}"
            if refusal.side == "skipped":  # the case cannot run on this machine at all
                record.status, record.reason = "skipped", str(refusal)
            if refusal.side == "new":
                record.verdict = "broken"  # the base can run the case and the new side cannot
        except SideFailure as failure:
            record.status = "refused" if failure.at_start and not self.rounds else "failed"
            kept = f" ({len(self.rounds)} rounds kept)" if self.rounds else ""
            record.reason = f"{failure}{kept}"
            if failure.side == "new" and self.tally["base"].first_ready is not None:
                record.verdict = "broken"  # the base runs the case and the new side does not
        except OSError as error:  # the logs folder cannot take a worker's files (full, read-only): nobody's side
            kept = f" ({len(self.rounds)} rounds kept)" if self.rounds else ""
            record.status = "failed"
            record.reason = f"cannot write the workers' files in {self.work_dir}: {error.strerror or error}{kept}"
        finally:
            for worker in self.workers.values():
                worker.close()
            self.workers = {}
        record.wall_s = time.perf_counter() - self.started
        record.measured_s = measured
        record.finished_at = time.time()
        self._fill(record)
        return record

    def _another_round(self) -> bool:
        done, settings = len(self.rounds), self.settings
        if done >= settings.max_rounds:
            return False
        if done == 0:
            return True
        now = time.perf_counter()
        elapsed = now - self.started
        # the next round may take as long as the slowest so far (the first, which checks the sides, aside when
        # there are others), and its pair of workers must still be closed after it: all within the case's time
        lengths = np.diff([*self.round_starts, now])
        next_round = float(max(lengths[1:] if len(lengths) > 1 else lengths)) + self.slowest_close_s
        if elapsed + next_round > settings.max_seconds:
            return False
        if done < settings.min_rounds:
            return True
        estimate = paired_estimate([r.log_ratio for r in self.rounds], alpha=settings.alpha)
        if not math.isfinite(estimate.mde):  # too few rounds for the exact test to reach alpha: more, whatever
            return True
        precise_enough = settings.stop_mde * settings.threshold
        return minimum_detectable_effect(estimate.standard_error, settings.alpha) > precise_enough

    def _fresh_pair(self, cores: dict[str, list[int]] | None) -> None:
        """New workers for both sides (started together), or new sessions in the running ones. Each side's answer
        is kept as it arrives, so that a failure of one still leaves the other's environment in the record."""
        began = time.perf_counter()
        if self.settings.fresh == "session" and self.workers:
            for worker in self.workers.values():
                worker.send({"renew": True})
        else:
            closing = time.perf_counter()
            for worker in self.workers.values():
                worker.close()
            self.slowest_close_s = max(self.slowest_close_s, time.perf_counter() - closing)
            job = {"warmup_seconds": self.settings.warmup_seconds}
            name = f"{self.name}-r{len(self.rounds)}"
            self.workers = {}
            # both spawned before either is waited for, so their start-ups overlap; in random order, so that
            # neither side is always the process that started second
            for side in (SIDES if self.rng.random() < 0.5 else SIDES[::-1]):
                case = self.cases[side]
                self.workers[side] = SideWorker(side, self.sides[side].interpreter, {
                    **job, "case": case.to_dict(), "artifact": self.artifacts[side],
                    "hints": case.model.input_hints()}, self.work_dir, f"{name}-{side}", cores and cores[side])
        for side in SIDES:
            try:
                reply = self.workers[side].receive(self.timeout_s, self._cap_at())
            except _TimeUp:  # silent since the pair was asked for, on the clock the start-ups before were timed by
                raise _TimeUp(side, time.perf_counter() - began, starting=True) from None
            tally = self.tally[side]
            tally.startup_s += time.perf_counter() - began
            if tally.first_ready is None:
                tally.first_ready = reply
            # a slice (or a duet round) lasts at least one inference: the replies' timeouts allow for it
            self._saw(side, float(reply.get("inference_s") or 0.0), "an inference (the warm-up's mean)")
        self.start_lengths.append(time.perf_counter() - began)

    def _refuse_mismatch(self) -> None:
        """Refuse sides that do not measure the same work (checked on the first pair, before any slice)."""
        base, new = (self.tally[side].first_ready or {} for side in SIDES)
        if base.get("inputs") != new.get("inputs"):
            raise _Refused(None, f"they feed different inputs (base: {_shapes(base)}; new: {_shapes(new)})")
        for side, ready in (("base", base), ("new", new)):
            if not ready.get("outputs_finite", True):
                raise _Refused(side, f"the {side} side's model produces NaN or infinite outputs")

    def _cap_at(self) -> float | None:
        """When the round under way must have ended for the case to close within ``max_seconds`` (its workers'
        close reserved): past it, the round is given up (_TimeUp). _another_round forecasts whether a round fits;
        this is the cap itself, for the round that runs slower than the forecast (a worker that stalls, a CPU
        that slows down). None for the first round: without it there is nothing to judge."""
        if not self.rounds:
            return None
        return self.started + self.settings.max_seconds - self.slowest_close_s

    def _mark(self) -> _RoundMark:
        # the first pair's start-up is the cold one (a spawn, imports from disk; with fresh: session the only spawn):
        # later ones are measured against the later ones, as _another_round forecasts rounds
        starts = self.start_lengths[1:] or self.start_lengths
        return _RoundMark(slowest_s=self.slowest_slice_s, slowest_start_s=max(starts, default=0.0), counts={
            side: (len(tally.slice_medians), tally.inferences, tally.startup_s) for side, tally in self.tally.items()})

    def _give_up_round(self, time_up: _TimeUp, mark: _RoundMark) -> None:
        """The round under way at the time cap: its workers killed at once (the round is dropped: a polite quit
        would only spend the cap), its slices taken out of the sides' tallies (the record's figures are the
        judged rounds'), and a side that stalled in it named: a slice or a silence beyond STALL_FACTOR times the
        slowest slice of the rounds before (a start-up beyond START_STALL_FACTOR times the slowest start-up; both
        beyond STALL_FLOOR_S) is no machine hiccup the forecast missed, and the rounds before it cannot speak for
        what came after (_fill turns a pass into "cannot tell")."""
        for worker in self.workers.values():
            worker.kill()
        for side, (slices, inferences, startup_s) in mark.counts.items():
            del self.tally[side].slice_medians[slices:]
            self.tally[side].inferences, self.tally[side].startup_s = inferences, startup_s
        self.given_up = f"round {len(self.rounds) + 1} given up at the time cap"
        # silent while starting: measured against the start-ups before, not the slices
        if time_up.starting and time_up.silent_s > max(START_STALL_FACTOR * mark.slowest_start_s, STALL_FLOOR_S):
            self.stalled = (f"the {time_up.side} side stalled: its start-up had not answered for "
                            f"{time_up.silent_s:.1f} s where start-ups before took at most "
                            f"{mark.slowest_start_s:.1f} s")
        normal = max(mark.slowest_s, self.settings.slice_ms / 1e3)
        for side in SIDES if not self.stalled else ():
            silent = time_up.silent_s if time_up.side == side and not time_up.starting else 0.0
            if self.settings.method == "duet":  # a duet's reply comes after the whole round: only beyond it counts
                silent = max(silent - self.settings.round_seconds, 0.0)
            took = max(self.slowest_by_side[side], silent)  # this round's, where it is over the bar below
            if took > max(STALL_FACTOR * normal, STALL_FLOOR_S):
                what = ("a slice had not answered for" if silent >= took
                        else f"{self.slowest_what[side]} took")
                self.stalled = (f"the {side} side stalled: {what} {took:.1f} s where the slices before took at most "
                                f"{normal:.2f} s")
                break
        if self.stalled:
            self.given_up += f": {self.stalled}"
        if self.progress:
            self.progress(self.given_up)

    @property
    def slowest_slice_s(self) -> float:
        """The slowest slice (or start-up inference) of either side: the timeouts and the cap's checks allow for it."""
        return max(self.slowest_by_side.values())

    def _saw(self, side: str, seconds: float, what: str = "a slice") -> None:
        """A slice (or a start-up's one inference) of ``side`` took ``seconds``."""
        if seconds > self.slowest_by_side[side]:
            self.slowest_by_side[side], self.slowest_what[side] = seconds, what

    def _slice_timeout(self) -> float:
        """How long a slice's reply may take before the side counts as hung: generous against the slowest slice
        (or inference) seen, never under 10 s or two rounds, never over the case's timeout."""
        expected = max(self.slowest_slice_s, self.settings.slice_ms / 1e3)
        return min(self.timeout_s, max(10.0, 20 * expected, 2 * self.settings.round_seconds))

    def _lockstep_round(self) -> list[SlicePair]:
        slice_s = self.settings.slice_ms / 1e3
        count = max(2, round(self.settings.round_seconds / (2 * slice_s)))
        pairs, cap_at = [], self._cap_at()
        for base_first in slice_orders(self.rng, count):
            at = time.perf_counter() - self.started
            if cap_at is not None and time.perf_counter() + 2 * self.slowest_slice_s > cap_at:
                raise _TimeUp(None, 0.0)  # a slice pair as slow as the slowest so far would not fit: not begun
            medians = {}
            for side in (SIDES if base_first else SIDES[::-1]):
                began = time.perf_counter()
                samples = self.workers[side].ask({"run": slice_s}, self._slice_timeout(), cap_at)["samples_ns"]
                self._saw(side, time.perf_counter() - began)
                medians[side] = self._count(side, samples)
            pairs.append(SlicePair(at_s=at, base_ms=medians["base"], new_ms=medians["new"], base_first=base_first))
        return pairs

    def _duet_round(self) -> list[SlicePair]:
        window_ns = int(self.settings.slice_ms * 1e6)
        start = time.perf_counter_ns() + 20_000_000  # both told before either starts
        end = start + int(self.settings.round_seconds * 1e9)
        for worker in self.workers.values():
            worker.send({"from_ns": start, "until_ns": end})
        timeout = self.settings.round_seconds + self._slice_timeout()
        replies = {side: worker.receive(timeout, self._cap_at()) for side, worker in self.workers.items()}
        windows: dict[str, dict[int, list[int]]] = {side: {} for side in SIDES}
        for side, reply in replies.items():
            for sample, ended in zip(reply["samples_ns"], reply["ends_ns"], strict=True):
                if start <= ended <= end:
                    windows[side].setdefault((ended - start) // window_ns, []).append(sample)
        pairs = []
        for index in sorted(set(windows["base"]) & set(windows["new"])):
            medians = {side: self._count(side, windows[side][index]) for side in SIDES}
            at = (start + index * window_ns) / 1e9 - self.started
            pairs.append(SlicePair(at_s=at, base_ms=medians["base"], new_ms=medians["new"]))
        if not pairs:
            raise _Refused(None, "no time window held an inference of both sides: a round is shorter than an "
                                 "inference (raise ab.round_seconds or ab.slice_ms)")
        return pairs

    def _count(self, side: str, samples_ns: list[int]) -> float:
        tally = self.tally[side]
        tally.inferences += len(samples_ns)
        median_ms = float(np.median(samples_ns)) / 1e6
        tally.slice_medians.append(median_ms)
        return median_ms

    # -- duet cores --------------------------------------------------------------------------------------
    def _duet_cores(self) -> tuple[list[int], list[int]] | str:
        """Two disjoint halves of the physical cores this process may use, or why a duet cannot run here. Whole
        cores: two hyperthreads of one core share its execution units, so a slower side would slow the other."""
        if not hasattr(os, "sched_getaffinity"):
            return "a duet pins each side to its own cores, and this system offers no CPU affinity (Linux does)"
        cores = _physical_cores(sorted(os.sched_getaffinity(0)))
        half = len(cores) // 2
        if half < 1:
            return "a duet runs the sides on disjoint cores and this machine offers one"
        first = [cpu for core in cores[:half] for cpu in core]
        second = [cpu for core in cores[half:2 * half] for cpu in core]
        for side in SIDES:
            threads = self.cases[side].backend_options.get("threads")
            if not isinstance(threads, int) or threads > len(first):
                return (f"a duet runs each side on {half} of the {len(cores)} cores: set the {side} side's threads "
                        f"to at most {len(first)} (it is {threads if threads is not None else 'the runtime default'})")
        return first, second

    def _round_cores(self) -> dict[str, list[int]] | None:
        if self.settings.method != "duet":
            return None
        assert isinstance(self.cores, tuple)
        first, second = self.cores
        if self.rng.random() < 0.5:
            first, second = second, first
        return {"base": first, "new": second}

    # -- the record --------------------------------------------------------------------------------------
    def _blank_record(self) -> AbRecord:
        case = self.cases["base"]
        settings = self.settings
        return AbRecord(case_id=case.case_id, scenario=case.scenario, model=case.model_label, backend=case.backend,
                        backend_label=case.backend_label, precision=case.precision, batch_size=case.batch_size,
                        mode=case.mode, method=settings.method, status="failed",  # until it is compared
                        base=self._side_info("base"), new=self._side_info("new"), threshold=settings.threshold,
                        min_effect=settings.effect, alpha=settings.alpha, confidence=CONFIDENCE,
                        settings=asdict(settings), env_id=self.env_id)

    def _side_info(self, side: str) -> SideInfo:
        spec = self.sides[side]
        info = SideInfo(name=side, spec=spec.spec(), description=spec.describe(), artifact=self.artifacts.get(side))
        tally = self.tally[side]
        ready = tally.first_ready
        if ready:
            environment = ready.get("environment") or {}
            info.python, info.python_version = environment.get("python"), environment.get("python_version")
            info.libraries = environment.get("libraries") or {}
            info.backend_info, info.inputs = ready.get("backend_info") or {}, ready.get("inputs") or []
        if tally.slice_medians:
            info.median_ms, info.geomean_ms = side_figures(tally.slice_medians)
        info.slices, info.inferences = len(tally.slice_medians), tally.inferences
        info.startup_s = tally.startup_s
        return info

    def _fill(self, record: AbRecord) -> None:
        record.base, record.new = self._side_info("base"), self._side_info("new")
        record.rounds = self.rounds
        self._judge(record)
        if self.stalled and record.verdict in ("unchanged", "faster"):  # never a pass over a side that stalled
            record.verdict, record.reason = "cannot tell", (
                f"{self.given_up}; the {len(self.rounds)} rounds before it said {record.verdict!r} ({record.reason}) "
                f"but cannot speak for what came after")
        elif self.given_up:
            record.reason = f"{record.reason} ({self.given_up})"

    def _judge(self, record: AbRecord) -> None:
        if len(self.rounds) < 2:
            if record.status == "compared":
                record.verdict = "cannot tell"
                record.reason = "one round only: no spread between rounds to judge by (raise ab.max_seconds)"
            return
        estimate = paired_estimate([r.log_ratio for r in self.rounds], alpha=self.settings.alpha)
        record.ratio, record.ci_low, record.ci_high = estimate.ratio, estimate.ci_low, estimate.ci_high
        record.p_value, record.t_test_p, record.mde = estimate.p_value, estimate.t_test_p, estimate.mde
        if record.status == "compared":
            record.verdict, record.reason = ab_verdict(estimate, self.settings.threshold, self.settings.effect,
                                                       self.settings.alpha)
            if record.verdict == "cannot tell" and len(self.rounds) < self.settings.min_rounds:
                record.reason += (f" (ab.max_seconds = {self.settings.max_seconds:g} s ended it after "
                                  f"{len(self.rounds)} of the {self.settings.min_rounds} rounds wanted)")


def side_figures(slice_medians: list[float]) -> tuple[float, float | None]:
    """A side's median and geometric mean of its slice medians (ms). The tables print the geometric mean: with
    slices paired one to one, new/base of the two geometric means is the exponential of the pairs' mean
    log-ratio, whereas the two medians may fall in different modes when the machine's speed is bimodal."""
    positive = [m for m in slice_medians if m > 0]
    return float(np.median(slice_medians)), float(np.exp(np.mean(np.log(positive)))) if positive else None


def slice_orders(rng: np.random.Generator, pairs: int) -> list[bool]:
    """Whether the base side goes first, for each of ``pairs`` slice pairs (rounded up to even): random, from the
    seeded generator, and balanced in every block of two pairs, so that a first-mover effect (a CPU the other side
    has just warmed, a cache it has just filled) falls on both sides alike within each round."""
    orders: list[bool] = []
    for _ in range((pairs + 1) // 2):
        orders += [bool(first) for first in rng.permutation([True, False])]
    return orders


class _TimeUp(Exception):
    """The case's time cap was reached inside a round: that round is dropped and the comparison judged. ``side``:
    the side whose reply was awaited, silent for ``silent_s`` (None: a slice pair that would not fit, not begun);
    ``starting``: the reply awaited was a start-up's."""

    def __init__(self, side: str | None, silent_s: float, starting: bool = False) -> None:
        super().__init__(side)
        self.side, self.silent_s, self.starting = side, silent_s, starting


@dataclass(frozen=True)
class _RoundMark:
    """The state before a round: what to roll back to if it is given up, and the slowest slice until then."""

    slowest_s: float
    slowest_start_s: float
    counts: dict[str, tuple[int, int, float]]  # side: (slices, inferences, start-up seconds)


class _Refused(Exception):
    """The sides cannot be compared. ``side``: the side at fault (the new one: "broken"), None, or "skipped" (the
    case cannot run on this machine: nobody's fault, nothing to compare)."""

    def __init__(self, side: str | None, reason: str) -> None:
        super().__init__(reason)
        self.side = side


def _physical_cores(cpus: list[int]) -> list[list[int]]:
    """The logical CPUs grouped by physical core (Linux's topology files; one group per CPU where they are missing)."""
    groups: dict[str, list[int]] = {}
    for cpu in cpus:
        try:
            siblings = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text().strip()
        except OSError:
            siblings = str(cpu)
        groups.setdefault(siblings, []).append(cpu)
    return list(groups.values())


def _shapes(ready: dict[str, Any]) -> str:
    inputs = ready.get("inputs") or []
    return ", ".join(f"{i['name']} {tuple(i['shape'])} {i['dtype']}" for i in inputs) or "none"
