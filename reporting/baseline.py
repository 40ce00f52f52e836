"""Which case a speed-up divides by, and which case answers "what is fastest?", from one run's records.

Plain records, no pandas: the console summary (harness/console.py) and the HTML report (reporting/frame.py,
reporting/html.py) must name the same baseline and the same best case, and the console must stay cheap to import.

A record's `baseline` is either what the scenario named, `{"backend": LABEL_OR_NAME, "precision": P}`, or "not
named" (`None`, a missing key, or `{"auto": true}`). Not named means: per (scenario, model, batch size, mode) the
first record in the run's order (the scenario's configuration order) that is fp32, dense and passed. A default
that names a fixed backend (tflite_cpu) cannot run a user's .onnx file, so a scenario of user models would get no
speed-up at all; the first fp32 case that ran always exists when anything fp32 ran.

Where the run raced a group's configurations in one sitting (harness.race, race.jsonl), every speed-up of that
group is the race's paired ratio against the baseline, with its interval, and the group's answer is the race's:
cases measured minutes apart differ by 5-23 % on a shared machine, so their p50s alone cannot name a winner. A
group without a race (a run from before races, `race: false`, fewer than two configurations that passed) keeps
the ratio of sequential p50s, and says so ("sequential") wherever it is shown.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from results.baseline import (  # noqa: F401 - the report's and the console's names for them
    AUTO_PRECISION,
    GROUP_KEYS,
    Baseline,
    group_key,
    named_baseline,
    p50_of,
    resolve_baselines,
)
from results.race_record import RaceEntry, RaceRecord, pair_figures
from results.race_stats import round_log_ratio
from results.record import Record

# reason prefixes of a case that ran and was timed but whose outputs are not faithful enough to count
FIDELITY_PREFIXES = (("fidelity", "fidelity"), ("accuracy budget not met", "accuracy budget"))

SpeedupSource = Literal["race", "sequential", "sequential, far outside the noise"]
RACE: SpeedupSource = "race"
SEQUENTIAL: SpeedupSource = "sequential"
EXCLUDED: SpeedupSource = "sequential, far outside the noise"  # left out of the race by its own sequential p50
NOT_RACED_NOTE = "fastest by sequential p50 (not raced)"


def speedup(record: Record, baseline: Baseline | None) -> float | None:
    """Baseline p50 ÷ this case's p50, for cases whose numbers stand (passed, or INVALID and flagged as such).

    A failed case keeps its timings (a conversion that misses its fidelity guard still ran), but a speed-up of a
    wrong answer is no speed-up: it gets none.
    """
    p50 = p50_of(record)
    if baseline is None or p50 is None or not record.measured:
        return None
    return baseline.p50_ms / p50


def failure_label(status: str | None, reason: str | None) -> str:
    """A failed case's short label: "failed: fidelity" for a conversion that ran but gives wrong outputs."""
    if status != "failed":
        return "INVALID" if status == "invalid" else str(status)
    text = (reason or "").lower()
    for prefix, kind in FIDELITY_PREFIXES:
        if text.startswith(prefix):
            return f"failed: {kind}"
    return "failed"


def fastest_passed(records: Iterable[tuple[int, Record]]) -> int | None:
    """The index of the passed, measured record with the lowest p50 (the first of equals), or None.

    Only passed counts: an INVALID case's numbers are not trustworthy, a failed one's answer is wrong.
    """
    best: tuple[float, int] | None = None
    for index, record in records:
        p50 = p50_of(record)
        if record.status == "passed" and p50 is not None and (best is None or p50 < best[0]):
            best = (p50, index)
    return None if best is None else best[1]


def best_per_group(records: list[Record]) -> dict[tuple[Any, ...], int | None]:
    """Per (scenario, model, batch size, mode) of one run, in the run's order: the fastest passed record."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for index, record in enumerate(records):
        groups.setdefault(group_key(record), []).append(index)
    return {group: fastest_passed((i, records[i]) for i in indices) for group, indices in groups.items()}


@dataclass(frozen=True)
class Speedup:
    """One case's speed-up against its group's baseline and where it comes from.

    ``value`` is the baseline's latency over the case's (1.46: 1.46× faster). A race's ratio carries its interval
    (``low``, ``high``; ``high`` may be infinite when the rounds were too few), the race's verdict on the pair and
    the race's threshold, so the text can say "≈ baseline" or "cannot tell" instead of a bare "faster".
    """

    value: float
    source: SpeedupSource
    low: float | None = None
    high: float | None = None
    verdict: str | None = None  # the race's verdict of this case against the baseline (results.race_record)
    threshold: float | None = None
    is_baseline: bool = False

    @property
    def within_threshold(self) -> bool:
        """A race's interval lies wholly inside ±threshold (or the race judged the pair unchanged): the case is
        as fast as the baseline as far as the race can tell, however its point estimate leans."""
        if self.source != RACE or self.is_baseline:
            return False
        if self.verdict == "unchanged":
            return True
        if self.low is None or self.high is None or self.threshold is None:
            return False
        return math.isfinite(self.high) and self.low > 1 / (1 + self.threshold) and self.high < 1 + self.threshold

    @property
    def shown_as_faster(self) -> bool | None:
        """True or False where the case may be drawn faster or slower than the baseline; None where it must not
        (the baseline itself, a tie with it, a race that cannot tell)."""
        if self.is_baseline or self.within_threshold or (self.source == RACE and self.verdict == "cannot tell"):
            return None
        return self.value > 1


def races_by_group(races: Iterable[RaceRecord] | None) -> dict[tuple[Any, ...], RaceRecord]:
    """One run's race records by group; a resumed run's later record of a group wins."""
    return {race.group: race for race in races or ()}


def resolve_speedups(records: list[Record], races: Iterable[RaceRecord] | None = None,
                     baselines: list[Baseline | None] | None = None) -> list[Speedup | None]:
    """For each record of ONE run, its speed-up against its group's baseline, or None where it has none.

    From the group's race when it raced: the entry's paired ratio (survived or eliminated: both raced), or for an
    entry left out as far outside the noise its own sequential ratio, labelled so. Otherwise (no race.jsonl, a
    group "not raced", an entry that could not race) the sequential p50 ratio, labelled "sequential". A failed
    case gets none either way: a speed-up of a wrong answer is no speed-up.
    """
    baselines = resolve_baselines(records) if baselines is None else baselines
    by_group = races_by_group(races)
    resolved: list[Speedup | None] = []
    for index, (record, base) in enumerate(zip(records, baselines, strict=True)):
        sequential = speedup(record, base)
        if sequential is None and not (record.measured and p50_of(record) is not None):
            resolved.append(None)  # failed, skipped or unmeasured: nothing to show, whatever the race says
            continue
        race = by_group.get(group_key(record))
        entry = race.entry(record.case_id) if race is not None and race.status == "raced" else None
        raced = _raced_speedup(race, entry, sequential) if race is not None and entry is not None else None
        if raced is not None:
            resolved.append(raced)
        elif sequential is not None:
            resolved.append(Speedup(sequential, SEQUENTIAL, is_baseline=base is not None and base.index == index))
        else:
            resolved.append(None)
    return resolved


def entry_speedup(race: RaceRecord, entry: RaceEntry) -> Speedup | None:
    """A race entry's speed-up against the group's baseline from the race record alone: paired where it raced,
    else its own sequential ratio (labelled), else None."""
    if race.status == "raced" and (raced := _raced_speedup(race, entry, None)) is not None:
        return raced
    if entry.is_baseline:
        return Speedup(1.0, SEQUENTIAL, is_baseline=True)
    return Speedup(1 / entry.sequential_ratio, SEQUENTIAL) if entry.sequential_ratio else None


def _raced_speedup(race: RaceRecord, entry: RaceEntry, sequential: float | None) -> Speedup | None:
    """An entry's speed-up as its race has it, or None where the race has none for it (it could not race)."""
    if entry.is_baseline:
        return Speedup(1.0, RACE, 1.0, 1.0, threshold=race.threshold, is_baseline=True)
    if entry.status in ("survived", "eliminated") and entry.vs_baseline is not None:
        value, low, high = entry.vs_baseline.speedup()
        return Speedup(value, RACE, low, high, verdict=entry.vs_baseline.verdict, threshold=race.threshold)
    if entry.status == "excluded":
        ratio = 1 / entry.sequential_ratio if entry.sequential_ratio else sequential
        return None if ratio is None else Speedup(ratio, EXCLUDED)
    return None


@dataclass(frozen=True)
class GroupAnswer:
    """"Which configuration?" for one group of one run: the record to show (None: no case passed) and how it was
    chosen, in words ("won the race", a tie with its recommendation, "cannot tell", or the sequential fallback)."""

    index: int | None
    note: str
    race: RaceRecord | None = None  # the race that chose it; None where the group was not raced

    @property
    def raced(self) -> bool:
        return self.race is not None


def tie_spread(race: RaceRecord, names: list[str]) -> float | None:
    """How far apart the named entries' paired ratios against the baseline lie (0.012: within 1.2 %), or None
    where one of them has no paired ratio. The baseline's own ratio is 1."""
    ratios = []
    for name in names:
        entry = next((e for e in race.entries if e.name == name), None)
        if entry is None:
            return None
        if entry.is_baseline:
            ratios.append(1.0)
        elif entry.vs_baseline is not None and entry.vs_baseline.ratio > 0:
            ratios.append(entry.vs_baseline.ratio)
        else:
            return None
    return max(ratios) / min(ratios) - 1 if ratios else None


def race_note(race: RaceRecord) -> str:
    """What a raced group's race concluded, in the words the console and the report share."""
    if race.outcome == "winner":
        rounds = sum(not one.for_budgets for one in race.rounds)  # its own: those for budgets came after
        return f"won the race ({rounds} round{'' if rounds == 1 else 's'})"
    names = race.tied
    recommended = (f"; recommended: {race.recommended}" + (f" ({race.recommendation})" if race.recommendation
                                                            else "")) if race.recommended else ""
    if race.outcome == "tie":
        spread = tie_spread(race, names)
        within = f", within {spread * 100:.1f} %" if spread is not None else ""
        return f"tie: {' ≈ '.join(names)}{within}{recommended}"
    return f"cannot tell among {', '.join(names) or 'the survivors'}{recommended}"


def entry_status(entry: RaceEntry) -> str:
    """How one configuration fared in its race, in words."""
    if entry.status == "eliminated":
        rounds = entry.eliminated_after
        return f"eliminated after {rounds} round{'s' if rounds != 1 else ''}" if rounds is not None else "eliminated"
    if entry.status == "excluded":
        return "excluded (far outside the noise)"
    if entry.status == "not raced":
        return "not raced" + (f": {entry.reason}" if entry.reason else "")
    return entry.status


def race_outcome(race: RaceRecord) -> str:
    """What a group's race concluded: the winner, the tie, "cannot tell", or why it did not race."""
    if race.status != "raced" or race.outcome is None:
        return race.status + (f": {race.reason}" if race.reason else "")
    if race.outcome == "winner":
        return f"winner: {race.winner}"
    return race_note(race)


def answer_per_group(records: list[Record], races: Iterable[RaceRecord] | None = None
                     ) -> dict[tuple[Any, ...], GroupAnswer]:
    """Per (scenario, model, batch size, mode) of one run, in the run's order: the case that answers "which
    configuration?" and how it was chosen.

    A raced group names its winner only when one won; a tie or "cannot tell" shows the one the race recommends
    (else the fastest sequential p50 among the survivors) with the race's words. A group without a race keeps the
    fastest passed case by sequential p50, labelled as such.
    """
    by_group = races_by_group(races)
    answers: dict[tuple[Any, ...], GroupAnswer] = {}
    for group, fastest in best_per_group(records).items():
        race = by_group.get(group)
        if fastest is None:
            answers[group] = GroupAnswer(None, "no case passed")
            continue
        if race is None or race.status != "raced" or race.outcome is None:
            answers[group] = GroupAnswer(fastest, NOT_RACED_NOTE)
            continue
        index_of = {record.case_id: i for i, record in enumerate(records)
                    if group_key(record) == group and record.status == "passed"}
        by_name = {entry.name: index_of.get(entry.case_id) for entry in race.entries}
        chosen = by_name.get(race.winner) if race.outcome == "winner" and race.winner else None
        if chosen is None and race.recommended:
            chosen = by_name.get(race.recommended)
        if chosen is None and race.tied:
            chosen = fastest_passed((i, records[i]) for i in (by_name.get(n) for n in race.tied) if i is not None)
        if chosen is None:  # the race names no case of this run: it cannot answer for it
            answers[group] = GroupAnswer(fastest, NOT_RACED_NOTE)
            continue
        answers[group] = GroupAnswer(chosen, race_note(race), race)
    return answers


def round_log_ratios(race: RaceRecord, name: str, against: str) -> list[tuple[int, float]]:
    """(round index, log(name / against)) for each round both raced: the median over the round's blocks of the
    paired slice medians' log-ratio, the unit of replication of the race's statistics (as `ab`'s rounds)."""
    return [(one.index, round_log_ratio(one.slices, name, against)) for one in race.rounds
            if one.slices.get(name) and one.slices.get(against)]


def race_pair_speedup(race: RaceRecord, name: str, against: str) -> Speedup | None:
    """``against``'s latency over ``name``'s, paired over the rounds both raced, with its interval and verdict
    at the race's threshold, or None with fewer than two such rounds. For a comparison the race did not record
    itself (the console's "× fp32" of a backend whose fp32 case is not the group's baseline)."""
    if name == against:
        return Speedup(1.0, RACE, 1.0, 1.0, threshold=race.threshold, is_baseline=True)
    pair = pair_figures([one.slices for one in race.rounds], name, against, race.threshold, race.min_effect,
                        race.alpha)
    if pair is None:
        return None
    value, low, high = pair.speedup()
    return Speedup(value, RACE, low, high, verdict=pair.verdict, threshold=race.threshold)
