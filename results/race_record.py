"""The race record: one per (scenario, model, batch size, mode) group of a run whose configurations were raced in
one sitting (harness.race), written one JSON line per group to the run folder's race.jsonl, beside results.jsonl.

A case record keeps each configuration's own isolated measurement (percentiles, throughput, memory, fidelity);
the race record keeps what every "A is faster than B" of the run rests on: the rounds (each configuration's slice
medians, aligned by block, with the order they ran in), when each configuration left the race and why, the looks
taken, and each configuration's paired ratio against the group's baseline with its interval. Speed-ups read from
here are paired ("race"); a case of a group without a race record has only a sequential speed-up, and the tables
say so.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from model_zoo.requests import compression_label
from results.paired import ab_verdict
from results.race_stats import Round, pair_estimate
from results.record import OneLine, Record, RecordError, validate_leniently

RaceStatus = Literal["raced", "not raced", "failed"]  # not raced: fewer than two configurations could race
RaceOutcome = Literal["winner", "tie", "cannot tell"]
# survived: in the race to its end; eliminated: left at a look, significantly slower than the best; excluded: far
# outside the noise by its own sequential figures, never raced; not raced: could not race (why in its reason)
EntryStatus = Literal["survived", "eliminated", "excluded", "not raced"]
PairVerdict = Literal["faster", "slower", "unchanged", "cannot tell"]


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PairFigures(_Part):
    """One configuration against another over the rounds both raced: ``ratio`` is this one's latency over the
    other's (1.05: 5 % slower), the Hodges-Lehmann estimate, with its exact signed-rank interval and test."""

    against: str
    rounds: int
    ratio: float
    ci_low: float
    ci_high: float  # infinite when the rounds are too few for an interval; written null
    p_value: float
    mde: float | None = None  # a share; infinite (null) when the rounds cannot detect any change
    verdict: PairVerdict  # this configuration against ``against``, as `accelbench ab` judges new against base

    def speedup(self) -> tuple[float, float, float]:
        """(speed-up, low, high): the other's latency over this one's, 1.46 = 1.46× faster, with the interval."""
        return 1 / self.ratio, (1 / self.ci_high if self.ci_high > 0 else 0.0), (
            1 / self.ci_low if self.ci_low > 0 else math.inf)


def pair_figures(rounds: list[Round], name: str, against: str, threshold: float, min_effect: float,
                 alpha: float) -> PairFigures | None:
    """``name`` against ``against`` over the rounds both raced, judged as `accelbench ab` judges new against base;
    None with fewer than two such rounds. One computation for what the race records against its baseline and what
    the report pairs afterwards (the console's "× fp32" of a backend whose fp32 case is not the baseline)."""
    estimate = pair_estimate(rounds, name, against, alpha)
    if estimate is None:
        return None
    verdict, _ = ab_verdict(estimate, threshold, min_effect, alpha)
    return PairFigures(against=against, rounds=estimate.rounds, ratio=estimate.ratio, ci_low=estimate.ci_low,
                       ci_high=estimate.ci_high, p_value=estimate.p_value, mde=estimate.mde, verdict=verdict)


def entry_name(record: Record) -> str:
    """How a race names a configuration: unique within its group (one model, batch size and mode)."""
    name = f"{record.label} {record.precision}"
    return name if record.compression == "none" else f"{name} {compression_label(record.compression)}"


class RaceEntry(_Part):
    """One configuration of the group (one case of the run)."""

    name: str  # how the race names it: the backend's label, precision and compression where not "none"
    case_id: str
    backend: str
    backend_label: str
    precision: str
    compression: str = "none"
    status: EntryStatus
    reason: OneLine | None = None
    is_baseline: bool = False
    eliminated_after: int | None = None  # the rounds done when it left the race
    vs_baseline: PairFigures | None = None  # paired, from the race; None for the baseline and unraced entries
    sequential_ratio: float | None = None  # its own p50 over the baseline's, from the cases' separate runs
    median_ms: float | None = None  # of its slice medians over the rounds it raced
    geomean_ms: float | None = None
    slices: int = 0
    inferences: int = 0
    startup_s: float = 0.0
    race_options: dict[str, Any] = Field(default_factory=dict)  # backend options set for the race only
    fidelity: float | None = None  # the score the recommendation among tied ones compares (higher is better)
    budget_failure: OneLine | None = None  # its worker failed in a round run for budgets, after the race's outcome
    size_bytes: int | None = None


class RaceRound(_Part):
    """Fresh sessions (or workers) of every configuration still racing: the unit of replication."""

    index: int
    at_s: float  # seconds since the race started
    slices: dict[str, list[float]]  # each configuration's slice medians (ms), aligned by block
    orders: list[list[str]] = Field(default_factory=list)  # the order each block ran in
    cores: list[int] | None = None  # the CPUs every configuration of the round was pinned to (None: any)
    look: bool = False  # the race was judged after this round
    eliminated: list[str] = Field(default_factory=list)  # left at this round's look
    for_budgets: bool = False  # run after the race's outcome, for budgets it left undecided (harness.race)


class RaceRecord(_Part):
    scenario: str
    model: str
    batch_size: int
    mode: str
    status: RaceStatus
    outcome: RaceOutcome | None = None
    reason: OneLine | None = None
    winner: str | None = None  # named only when it won: the last one left
    tied: list[str] = Field(default_factory=list)  # the survivors of a tie (or of "cannot tell")
    recommended: str | None = None  # the winner, or one of the tied by the stated rule
    recommendation: OneLine | None = None  # that rule, in words
    baseline: str | None = None  # the entry speed-ups are against
    entries: list[RaceEntry] = Field(default_factory=list)
    rounds: list[RaceRound] = Field(default_factory=list)
    looks: list[int] = Field(default_factory=list)  # the rounds done at each look taken
    min_rounds: int = 0
    threshold: float = 0.05
    min_effect: float = 0.025
    alpha: float = 0.01  # family-wise, over all looks and comparisons
    look_alpha: float | None = None  # each planned look's share (alpha / looks)
    look_levels: list[float] = Field(default_factory=list)  # the level of each look taken: the last takes what is left
    confidence: float = 0.95
    heats: int = 1  # more than one: the group's sessions could not all be held in memory at once
    settings: dict[str, Any] = Field(default_factory=dict)
    wall_s: float = 0.0  # the whole race, worker start-ups included
    measured_s: float = 0.0  # of which slices were running
    started_at: float | None = None
    finished_at: float | None = None
    env_id: str | None = None

    @property
    def group(self) -> tuple[str, str, int, str]:
        """The key it shares with its cases (reporting.baseline's group)."""
        return self.scenario, self.model, self.batch_size, self.mode

    @property
    def budget_rounds(self) -> int:
        """Rounds run after its outcome for budgets it had left undecided (harness.race): its own figures rest on
        the others."""
        return sum(one.for_budgets for one in self.rounds)

    def rounds_text(self) -> str:
        """Its rounds in words: "12 rounds", or "12 rounds, 4 of them for budgets"."""
        return (f"{len(self.rounds)} round{'' if len(self.rounds) == 1 else 's'}"
                + (f", {self.budget_rounds} of them for budgets" if self.budget_rounds else ""))

    def entry(self, case_id: str) -> RaceEntry | None:
        return next((entry for entry in self.entries if entry.case_id == case_id), None)

    def to_json(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        # JSON has no infinity: an interval without an upper end, or an MDE of no bound, is written null
        for entry, written in zip(self.entries, data["entries"], strict=True):
            pair = entry.vs_baseline
            if pair is None:
                continue
            for name in ("ci_high", "mde"):
                value = getattr(pair, name)
                if value is not None and not math.isfinite(value):
                    written["vs_baseline"][name] = None
        return data

    @classmethod
    def read(cls, data: dict[str, Any], where: str) -> RaceRecord:
        """A record from race.jsonl, as leniently as a results record; a malformed one is one ValueError naming
        ``where`` and the field."""
        try:
            record = validate_leniently(cls, _infinities_back(data))
        except RecordError as error:
            raise ValueError(f"{where}: {error}") from None
        if problem := record.figure_problem():
            raise ValueError(f"{where}: {problem}")
        return record

    def figure_problem(self) -> str | None:
        """The first figure no race can produce (NaN, a non-positive time or ratio), named by its path, or None."""
        for index, entry in enumerate(self.entries):
            pair = entry.vs_baseline
            checks: list[tuple[str, Any, bool]] = [
                ("median_ms", entry.median_ms, entry.median_ms is None or _positive(entry.median_ms)),
                ("geomean_ms", entry.geomean_ms, entry.geomean_ms is None or _positive(entry.geomean_ms)),
                ("sequential_ratio", entry.sequential_ratio,
                 entry.sequential_ratio is None or _positive(entry.sequential_ratio))]
            if pair is not None:
                checks += [("vs_baseline.ratio", pair.ratio, _positive(pair.ratio)),
                           ("vs_baseline.ci_low", pair.ci_low, math.isfinite(pair.ci_low) and pair.ci_low >= 0),
                           ("vs_baseline.ci_high", pair.ci_high, pair.ci_high > 0 and pair.ci_high >= pair.ci_low),
                           ("vs_baseline.p_value", pair.p_value, 0 <= pair.p_value <= 1)]
            for name, value, fine in checks:
                if not fine:
                    return f"entries.{index}.{name}: {value} is not a possible figure"
        for index, one in enumerate(self.rounds):
            if len({len(medians) for medians in one.slices.values()}) > 1:  # blocks pair by index
                return f"rounds.{index}.slices: the configurations hold different numbers of blocks"
            for name, medians in one.slices.items():
                if not all(_positive(m) for m in medians):
                    return f"rounds.{index}.slices.{name}: holds a slice median that is not a positive time"
        return None


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def _infinities_back(data: dict[str, Any]) -> dict[str, Any]:
    """null interval ends and MDEs, as to_json writes infinities, read back as infinite."""
    for entry in data.get("entries") or []:
        pair = entry.get("vs_baseline") if isinstance(entry, dict) else None
        if isinstance(pair, dict):
            if pair.get("ci_high", 0) is None:
                pair["ci_high"] = math.inf
            if "mde" in pair and pair["mde"] is None:
                pair["mde"] = math.inf
    return data
