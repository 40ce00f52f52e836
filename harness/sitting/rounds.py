"""Rounds of a sitting: N sides measured together, each round on fresh workers (or fresh sessions), under one cap.

Runs measured at different times cannot tell a 5 % change on a shared machine, whose speed swings by tens of per
cent for seconds at a time: the noise is in the time between the runs. So the sides run together, in rounds. A
session carries its own bias (memory placement, weight packing: an A/A in one pair of sessions reads ±5 % with
an interval that excludes 1), so the unit of replication is the round: fresh workers (or, with ``fresh:
session``, fresh sessions in the same workers) whose blocks give one log-ratio per pair of sides (their median).

`accelbench ab` (harness.ab: two sides, rounds until precise enough) and a run's races (harness.race: every
passing configuration of a group, eliminated as they fall behind) drive a `Sitting`; what they conclude is theirs.
The sitting owns the workers, the time cap and the faults:

- **The cap.** ``max_seconds`` covers everything, worker start-ups included. `next_round_fits` forecasts whether a
  round as long as the slowest so far still fits; a round still under way at the cap (a side that turns slow, a
  worker that stalls) is given up, its workers killed, its slices taken back out of the tallies, and the rounds
  before it are judged. Only the first round is always finished: without it there is nothing to judge.
- **Stalls.** A side that stalled in the round given up (a slice 20× the slowest before, a start-up 5× the slowest
  later start-up, and over a second either way) is named (``stalled``): the rounds before it cannot speak for what
  came after, so the caller never reads a pass into them.
- **Faults.** A side that cannot start, crashes, hangs or answers nonsense raises SideFailure with its reason; a
  logs folder that cannot take the workers' files raises OSError. The caller keeps the rounds done.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np

from backends.registry import find_backend
from harness.launch import pin_running
from harness.protocol import ReadyReply, Renew, RunSlice, RunUntil, ServeJob, ServeReply, SliceReply, UntilReply
from harness.sitting.channel import SideFailure, SideWorker, TimeUp
from harness.sitting.methods import block_orders, shared_cores
from scenario.cases import Case

# a slice (or a silence) this many times the slowest before, and this long at least, in the round given up at the
# time cap, is a side that stalled, not noise: a CPU's speed swings ~2.5x on a shared VM, a hiccup lasts < 1 s;
# a start-up (a new worker, or a renewed session) this many times the slowest before: start-ups vary less
STALL_FACTOR, START_STALL_FACTOR, STALL_FLOOR_S = 20.0, 5.0, 1.0
ReplyT = TypeVar("ReplyT", ReadyReply, SliceReply, UntilReply)


class Timing(Protocol):
    """What a sitting needs of its caller's settings (harness.ab.AbSettings, harness.race.RaceSettings)."""

    method: str
    fresh: str
    max_seconds: float
    round_seconds: float
    slice_ms: float
    warmup_seconds: float
    warmup_runs: int | None  # None: the case's own measure.warmup_runs


@dataclass
class Block:
    """One slice of every side of the round (lock-step: one after another, in ``order``), or one time window of a
    duet (``order`` None: all at once): each side's median latency in it, ms."""

    at_s: float  # seconds since the sitting started
    medians: dict[str, float]
    order: list[str] | None = None


@dataclass
class SideTally:
    """What a side has done so far in one sitting."""

    first_ready: ReadyReply | None = None
    slice_medians: list[float] = field(default_factory=list)
    inferences: int = 0
    startup_s: float = 0.0

    def figures(self) -> tuple[float | None, float | None]:
        """(median, geometric mean) of its slice medians, None before any: see side_figures."""
        return side_figures(self.slice_medians) if self.slice_medians else (None, None)


def side_figures(slice_medians: list[float]) -> tuple[float, float | None]:
    """A side's median and geometric mean of its slice medians (ms). The tables print the geometric mean: with
    slices paired one to one, new/base of the two geometric means is the exponential of the pairs' mean
    log-ratio, whereas the two medians may fall in different modes when the machine's speed is bimodal."""
    positive = [m for m in slice_medians if m > 0]
    return float(np.median(slice_medians)), float(np.exp(np.mean(np.log(positive)))) if positive else None


class Refused(Exception):
    """The sides cannot be compared. ``side``: the side at fault (the new one: "broken"), None, or "skipped" (the
    case cannot run on this machine: nobody's fault, nothing to compare)."""

    def __init__(self, side: str | None, reason: str) -> None:
        super().__init__(reason)
        self.side = side


@dataclass(frozen=True)
class _RoundMark:
    """The state before a round: what to roll back to if it is given up, and the slowest slice until then."""

    slowest_s: float
    slowest_start_s: float
    counts: dict[str, tuple[int, int, float]]  # side: (slices, inferences, start-up seconds)


class Sitting:
    """The workers and the clock of one same-sitting measurement of ``cases`` (by side name)."""

    def __init__(self, cases: dict[str, Case], artifacts: dict[str, str], interpreters: dict[str, str],
                 timing: Timing, work_dir: Path, name: str, rng: np.random.Generator,
                 progress: Callable[[str], None] | None = None,
                 cores: tuple[list[int], list[int]] | None = None) -> None:
        """``interpreters``: each side's python; ``name``: the logs' prefix; ``cores``: a duet's two halves."""
        self.cases, self.artifacts, self.interpreters = cases, artifacts, interpreters
        self.timing, self.work_dir, self.name, self.rng, self.progress = timing, work_dir, name, rng, progress
        self.cores = cores
        self.timeout_s = max(float(case.measure["timeout_s"]) for case in cases.values())
        self.tally = {side: SideTally() for side in cases}
        self.workers: dict[str, SideWorker] = {}
        self.rounds_done = 0
        self.started = time.perf_counter()
        self.measured_s = 0.0
        self.round_starts: list[float] = []  # perf_counter at the start of each round (its workers' start-up on)
        self.slowest_close_s = 0.0  # the longest the workers took to close: the last ones close too
        self.slowest_by_side = dict.fromkeys(cases, 0.0)  # each side's slowest slice (or start-up inference)
        self.slowest_what = dict.fromkeys(cases, "a slice")  # what took slowest_by_side: a slice, or a warm-up
        self.start_lengths: list[float] = []  # how long each round's workers took to be ready (spawned or renewed)
        self.inference_s = dict.fromkeys(cases, 0.0)  # each side's latest warm-up mean: how long its slice lasts
        self.given_up: str | None = None  # the round under way at the time cap, dropped: why
        self.stalled: str | None = None  # a side that stalled in that round, named
        self.round_cores: dict[str, list[int]] | None = None  # each side's cores in the last round (None: any)

    # -- rounds ------------------------------------------------------------------------------------------
    def next_round_fits(self) -> bool:
        """Whether one more round, as long as the slowest so far (the first, which checks the sides, aside when
        there are others), and the close of its workers after it, still ends within ``max_seconds``."""
        if self.rounds_done == 0:
            return True
        now = time.perf_counter()
        lengths = np.diff([*self.round_starts, now])
        next_round = float(max(lengths[1:] if len(lengths) > 1 else lengths)) + self.slowest_close_s
        return now - self.started + next_round <= self.timing.max_seconds

    def round(self, sides: list[str], check: Callable[[dict[str, ReadyReply]], None] | None = None
              ) -> list[Block] | None:
        """One round of ``sides``: fresh workers or sessions, then their blocks. None when the time cap came
        inside it (the round is dropped: ``given_up`` says why, ``stalled`` names a side that stalled). ``check``
        sees every side's ready reply in the first round, before any slice (it raises Refused to stop)."""
        self.round_starts.append(time.perf_counter())
        mark = self._mark()
        in_slices = False
        try:
            self._fresh(sides)
            if self.rounds_done == 0 and check is not None:
                check({side: ready for side in sides if (ready := self.tally[side].first_ready) is not None})
            began = time.perf_counter()
            in_slices = self.timing.method != "duet"  # a duet's failure can leave the other's reply unread
            blocks = self._duet_round(sides) if self.timing.method == "duet" else self._lockstep_round(sides)
            self.measured_s += time.perf_counter() - began
        except TimeUp as time_up:
            self._give_up_round(time_up, mark, sides)
            return None
        except SideFailure as failure:  # its slices go (the record's figures are whole rounds'), then the failure
            self._roll_back(mark)
            # in lock-step slices the others have answered every command; a failure while the workers started (or
            # renewed) leaves the later ones' "ready" unread, which the next round would take for its own and then
            # read the next reply as a slice's: they are closed too, and the next round starts them afresh
            self.close([failure.side] if in_slices else None)
            raise
        self.rounds_done += 1
        return blocks

    def close(self, sides: list[str] | None = None) -> None:
        """Close the workers of ``sides`` (all by default)."""
        for side in list(self.workers) if sides is None else sides:
            worker = self.workers.pop(side, None)
            if worker is not None:
                worker.close()

    @property
    def wall_s(self) -> float:
        return time.perf_counter() - self.started

    def _fresh(self, sides: list[str]) -> None:
        """New workers for ``sides`` (started together), or new sessions in the running ones; workers of sides no
        longer wanted are closed first. Each side's answer is kept as it arrives, so that a failure of one still
        leaves the others' environments in the record."""
        self.close([side for side in self.workers if side not in sides])
        began = time.perf_counter()
        renewing = self.timing.fresh == "session"
        if not renewing or not all(side in self.workers for side in sides):
            closing = time.perf_counter()
            self.close()
            self.slowest_close_s = max(self.slowest_close_s, time.perf_counter() - closing)
        spawned = not (renewing and self.workers)
        if not spawned:
            for side in sides:
                self.workers[side].send(Renew())
        else:
            self.round_cores = self._round_cores(sides)
            # a duet's sides start on their own halves; lock-step sides start free and move to their shared core
            # once ready (launch.pin_running), so that their start-ups do not queue on it
            at_launch = self.round_cores if self.timing.method == "duet" else None
            # all spawned before any is waited for, so their start-ups overlap; in random order, so that no side is
            # always the process that started last
            for index in self.rng.permutation(len(sides)):
                side = sides[index]
                case = self.cases[side]
                job = ServeJob(case=case.to_dict(), artifact=self.artifacts[side], hints=case.model.input_hints(),
                               warmup_seconds=self.timing.warmup_seconds, warmup_runs=self.timing.warmup_runs)
                self.workers[side] = SideWorker(side, self.interpreters[side], job, self.work_dir,
                                                f"{self.name}-r{self.rounds_done}-{side}",
                                                at_launch and at_launch[side])
        for side in sides:
            try:
                reply = self._expect(side, ReadyReply, self.workers[side].receive(self.timeout_s, self._cap_at()))
            except TimeUp:  # silent since the workers were asked for, on the clock the start-ups before were timed by
                raise TimeUp(side, time.perf_counter() - began, starting=True) from None
            tally = self.tally[side]
            tally.startup_s += time.perf_counter() - began
            if tally.first_ready is None:
                tally.first_ready = reply
            # a slice (or a duet round) lasts at least one inference: the replies' timeouts allow for it
            self._saw(side, reply.inference_s, "an inference (the warm-up's mean)")
            self.inference_s[side] = reply.inference_s
        if spawned and self.round_cores and self.timing.method != "duet":  # renewed sessions stay where they were
            for side in sides:
                self._pin(side, self.round_cores[side])
        self.start_lengths.append(time.perf_counter() - began)

    def _pin(self, side: str, cores: list[int]) -> None:
        """Move a ready side's worker, every thread of it, onto its round's cores."""
        worker = self.workers[side]
        try:
            pin_running(worker.process.pid, cores)
        except ProcessLookupError:  # it said ready, then ended: the next command finds out why
            pass
        except OSError as error:  # a CPU taken away meanwhile (a container's cpuset shrunk)
            raise SideFailure(side, f"cannot pin its worker to CPUs {cores}: {error.strerror or error}") from None

    def _round_cores(self, sides: list[str]) -> dict[str, list[int]] | None:
        """Each side's cores for this round: a duet's halves, swapped at random between rounds; in lock-step the
        same cores for every side (methods.shared_cores), unless a side runs several streams at once."""
        if self.timing.method != "duet":
            if any(self.cases[side].mode == "concurrent" or not _threads_are_its_cores(self.cases[side].backend)
                   for side in sides):
                return None
            shared = shared_cores(self.rng, [self.cases[side].backend_options.get("threads") for side in sides])
            return dict.fromkeys(sides, shared) if shared else None
        if self.cores is None:
            return None
        first, second = self.cores
        if self.rng.random() < 0.5:
            first, second = second, first
        return dict(zip(sides, (first, second), strict=True))

    def _cap_at(self) -> float | None:
        """When the round under way must have ended for the sitting to close within ``max_seconds`` (its workers'
        close reserved): past it, the round is given up (TimeUp). None for the first round."""
        if not self.rounds_done:
            return None
        return self.started + self.timing.max_seconds - self.slowest_close_s

    # -- methods -----------------------------------------------------------------------------------------
    def _lockstep_round(self, sides: list[str]) -> list[Block]:
        slice_s = self.timing.slice_ms / 1e3
        blocks, cap_at = [], self._cap_at()
        for order in block_orders(self.rng, sides, self.blocks_per_round(sides)):
            at = time.perf_counter() - self.started
            if cap_at is not None and time.perf_counter() + len(sides) * self.slowest_slice_s > cap_at:
                raise TimeUp(None, 0.0)  # a block as slow as the slowest so far would not fit: not begun
            medians = {}
            for side in order:
                began = time.perf_counter()
                reply = self.workers[side].ask(RunSlice(run=slice_s), self._slice_timeout(), cap_at)
                samples = self._expect(side, SliceReply, reply).samples_ns
                self._saw(side, time.perf_counter() - began)
                medians[side] = self._count(side, samples)
            blocks.append(Block(at_s=at, medians=medians, order=list(order)))
        return blocks

    def blocks_per_round(self, sides: list[str]) -> int:
        """How many blocks fill ``round_seconds`` (two at least; block_orders rounds up to a multiple of the sides).
        A slice lasts ``slice_ms`` or one inference, whichever is longer: a model whose inference outlasts the slice
        would otherwise run rounds many times ``round_seconds`` long (resnet50 at batch 8, 330 ms an inference: nine
        blocks of three sides, a 9 s round, three rounds in a 45 s race)."""
        slice_s = self.timing.slice_ms / 1e3
        block_s = sum(max(slice_s, self.inference_s.get(side, 0.0)) for side in sides)
        return max(2, round(self.timing.round_seconds / block_s))

    def _duet_round(self, sides: list[str]) -> list[Block]:
        window_ns = int(self.timing.slice_ms * 1e6)
        start = time.perf_counter_ns() + 20_000_000  # all told before any starts
        end = start + int(self.timing.round_seconds * 1e9)
        for side in sides:
            self.workers[side].send(RunUntil(from_ns=start, until_ns=end))
        timeout = self.timing.round_seconds + self._slice_timeout()
        replies = {side: self._expect(side, UntilReply, self.workers[side].receive(timeout, self._cap_at()))
                   for side in sides}
        windows: dict[str, dict[int, list[int]]] = {side: {} for side in sides}
        for side, reply in replies.items():
            for sample, ended in zip(reply.samples_ns, reply.ends_ns, strict=True):
                if start <= ended <= end:
                    windows[side].setdefault((ended - start) // window_ns, []).append(sample)
        shared = set.intersection(*(set(windows[side]) for side in sides))
        blocks = []
        for index in sorted(shared):
            medians = {side: self._count(side, windows[side][index]) for side in sides}
            blocks.append(Block(at_s=(start + index * window_ns) / 1e9 - self.started, medians=medians))
        if not blocks:
            raise Refused(None, "no time window held an inference of both sides: a round is shorter than an "
                                "inference (raise ab.round_seconds or ab.slice_ms)")
        return blocks

    def _expect(self, side: str, kind: type[ReplyT], reply: ServeReply) -> ReplyT:
        """The reply, if it is the kind the command asks for; a worker that answers out of turn is broken."""
        if not isinstance(reply, kind):
            self.workers[side].kill()
            raise SideFailure(side, f"worker answered {reply.WHAT} where {kind.WHAT} was due (a protocol error); "
                              f"log: {self.workers[side].log_path}")
        return reply

    def _count(self, side: str, samples_ns: list[int]) -> float:
        tally = self.tally[side]
        tally.inferences += len(samples_ns)
        median_ms = float(np.median(samples_ns)) / 1e6
        tally.slice_medians.append(median_ms)
        return median_ms

    # -- the clock ---------------------------------------------------------------------------------------
    @property
    def slowest_slice_s(self) -> float:
        """The slowest slice (or start-up inference) of any side: the timeouts and the cap's checks allow for it."""
        return max(self.slowest_by_side.values())

    def _saw(self, side: str, seconds: float, what: str = "a slice") -> None:
        """A slice (or a start-up's one inference) of ``side`` took ``seconds``."""
        if seconds > self.slowest_by_side[side]:
            self.slowest_by_side[side], self.slowest_what[side] = seconds, what

    def _slice_timeout(self) -> float:
        """How long a slice's reply may take before the side counts as hung: generous against the slowest slice
        (or inference) seen, never under 10 s or two rounds, never over the case's timeout."""
        expected = max(self.slowest_slice_s, self.timing.slice_ms / 1e3)
        return min(self.timeout_s, max(10.0, 20 * expected, 2 * self.timing.round_seconds))

    def _mark(self) -> _RoundMark:
        # the first start-up is the cold one (a spawn, imports from disk; with fresh: session the only spawn): later
        # ones are measured against the later ones, as next_round_fits forecasts rounds
        starts = self.start_lengths[1:] or self.start_lengths
        return _RoundMark(slowest_s=self.slowest_slice_s, slowest_start_s=max(starts, default=0.0), counts={
            side: (len(tally.slice_medians), tally.inferences, tally.startup_s) for side, tally in self.tally.items()})

    def _roll_back(self, mark: _RoundMark) -> None:
        """Take the round under way out of the sides' tallies."""
        for side, (slices, inferences, startup_s) in mark.counts.items():
            del self.tally[side].slice_medians[slices:]
            self.tally[side].inferences, self.tally[side].startup_s = inferences, startup_s

    def _give_up_round(self, time_up: TimeUp, mark: _RoundMark, sides: list[str]) -> None:
        """The round under way at the time cap: its workers killed at once (the round is dropped: a polite quit
        would only spend the cap), its slices taken out of the sides' tallies (the record's figures are the
        judged rounds'), and a side that stalled in it named: a slice or a silence beyond STALL_FACTOR times the
        slowest slice of the rounds before (a start-up beyond START_STALL_FACTOR times the slowest start-up; both
        beyond STALL_FLOOR_S) is no machine hiccup the forecast missed."""
        for worker in self.workers.values():
            worker.kill()
        self._roll_back(mark)
        self.given_up = f"round {self.rounds_done + 1} given up at the time cap"
        # silent while starting: measured against the start-ups before, not the slices
        if time_up.starting and time_up.silent_s > max(START_STALL_FACTOR * mark.slowest_start_s, STALL_FLOOR_S):
            self.stalled = (f"the {time_up.side} side stalled: its start-up had not answered for "
                            f"{time_up.silent_s:.1f} s where start-ups before took at most "
                            f"{mark.slowest_start_s:.1f} s")
        normal = max(mark.slowest_s, self.timing.slice_ms / 1e3)
        for side in sides if not self.stalled else ():
            silent = time_up.silent_s if time_up.side == side and not time_up.starting else 0.0
            if self.timing.method == "duet":  # a duet's reply comes after the whole round: only beyond it counts
                silent = max(silent - self.timing.round_seconds, 0.0)
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


def _threads_are_its_cores(backend: str) -> bool:
    """Whether the backend computes on its ``threads`` alone (backends.base.Backend.threads_are_its_cores); an
    adapter that cannot say is left to the scheduler."""
    found = find_backend(backend)
    return found is not None and found.threads_are_its_cores


def log_ratio(blocks: list[Block], side: str, against: str) -> float:
    """The round's log-ratio of ``side`` against ``against``: the median over its blocks of log(side / against)
    (blocks with a zero median, a slice shorter than the clock's tick, left out; NaN when none is left)."""
    ratios = [math.log(b.medians[side] / b.medians[against]) for b in blocks
              if b.medians.get(side, 0) > 0 and b.medians.get(against, 0) > 0]
    return float(np.median(ratios)) if ratios else math.nan
