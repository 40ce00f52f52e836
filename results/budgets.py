"""Judging performance budgets (scenario ``budgets:``): one verdict per (case, limit), written to budgets.jsonl.

Relative limits (``min_speedup``, ``max_slowdown``) are judged on the same-sitting race's paired ratio of the case
against its partner (the ``against`` configuration, else the group's baseline, fixed when the scenario is expanded)
and that ratio's exact signed-rank interval at BUDGET_CONFIDENCE: passed when the whole interval meets the limit,
missed when the whole interval misses it, and "cannot tell" when it straddles it. The race may look at an
undecided budget again as its rounds grow (harness.race, at most MAX_BUDGET_LOOKS looks with the final verdict):
at 99 % each look errs on one side with at most 0.5 %, so the verdict errs with at most 5 % over all of them. Two
p50s measured minutes apart would be the sequential comparison whose 5-23 % drift the race removes, so without a
race (``race: false``, a group that could not race) the answer is "cannot tell", never a pass.

Absolute limits (``max_p50_ms``, ``max_p99_ms``, ``min_throughput_ips``, ``max_peak_rss_mb``,
``max_model_size_mb``) are a service-level objective: judged on the measured figure itself, and the verdict
carries the median's in-run interval (for p99: the range of its time blocks' p99s), so a reader sees whether a
miss is clear or inside the noise. One tied to a
machine (``machine:`` its machine_id or the ACCELBENCH_MACHINE label) is judged only there: elsewhere its verdict
says "other machine" and what was measured, and fails nothing.

A case that did not pass (failed, invalid, skipped) is never judged: an INVALID measurement never passes a budget.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from results.baseline import group_key
from results.paired import PairedEstimate, paired_estimate
from results.race_record import RaceRecord, entry_name
from results.race_stats import Round, pair_log_ratios
from results.record import Record, validate_leniently
from results.stats import BLOCKS, block_p99_range_ms

BudgetStatus = Literal["passed", "missed", "cannot tell", "not judged", "other machine"]
BUDGET_CONFIDENCE = 0.99  # the paired interval a relative budget is judged on (see the module's docstring)
MAX_BUDGET_LOOKS = 10  # the looks at one budget's interval, the final verdict included
MACHINE_LABEL_ENV = "ACCELBENCH_MACHINE"
RELATIVE = ("min_speedup", "max_slowdown")
UNITS = {"max_p50_ms": "ms", "max_p99_ms": "ms", "min_throughput_ips": "items/s", "max_peak_rss_mb": "MB",
         "max_model_size_mb": "MB"}
WHAT = {"max_p50_ms": "p50", "max_p99_ms": "p99", "min_throughput_ips": "throughput", "max_peak_rss_mb": "peak RSS",
        "max_model_size_mb": "model size"}


class BudgetVerdict(BaseModel):
    """One limit of one budget, judged for one case."""

    model_config = ConfigDict(extra="forbid")

    scenario: str | None = None
    case_id: str
    where: str  # the budget in the scenario, e.g. "budgets[0]" or "models[1].budgets[0]"
    limit_name: str
    limit: float
    status: BudgetStatus
    value: float | None = None  # the figure judged: a speed-up or slow-down (×), or ms, items/s, MB
    low: float | None = None  # its interval: the paired ratio's (99 %), or the median's in-run interval for p50
    high: float | None = None
    against: str | None = None  # relative: the configuration compared with, as the race names it
    rounds: int | None = None  # relative: the paired rounds the interval rests on
    machine: str | None = None  # absolute: the machine it is tied to
    message: str  # the whole verdict in one line: numbers beside the limit
    fails: bool = False  # whether it fails its pytest item and `accelbench run`

    def to_json(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        for key in ("low", "high", "value"):  # JSON has no infinity: an interval without an end is written null
            if isinstance(data[key], float) and not math.isfinite(data[key]):
                data[key] = None
        return data

    @classmethod
    def read(cls, data: dict[str, Any]) -> BudgetVerdict:
        return validate_leniently(cls, data)


def _x(value: float) -> str:
    return "∞" if not math.isfinite(value) else f"{value:.3g}"


def _figure(value: float) -> str:
    return f"{value:.4g}"


def judge_absolute(record: Record, budget: dict[str, Any], machine_id: str, machine_label: str | None
                   ) -> list[BudgetVerdict]:
    """The budget's absolute limits against the case's own figures (point values; the median's interval beside)."""
    verdicts = []
    tied = budget.get("machine")
    here = machine_id + (f" (label {machine_label})" if machine_label else "")
    elsewhere = tied is not None and tied not in (machine_id, machine_label)
    for name, limit in budget["limits"].items():
        if name in RELATIVE:
            continue
        base = {"scenario": record.scenario, "case_id": record.case_id, "where": budget["where"], "limit_name": name,
                "limit": limit, "machine": tied}
        shown = f"{name} {_figure(limit)}"
        if (problem := _not_judged(record)) is not None:
            verdicts.append(BudgetVerdict(**base, status="not judged", message=f"{shown}: not judged: {problem}"))
            continue
        value, low, high = _absolute_value(record, name)
        if value is None:
            verdicts.append(BudgetVerdict(**base, status="not judged",
                                          message=f"{shown}: not judged: the case has no {WHAT[name]} figure"))
            continue
        unit = UNITS[name]
        what = "the median's 95 % CI in the run" if name == "max_p50_ms" else f"its {BLOCKS} time blocks' p99s"
        interval = f" ({what} {_figure(low)}–{_figure(high)} ms)" if low is not None and high is not None else ""
        measured = f"{WHAT[name]} {_figure(value)} {unit}{interval}"
        met = value >= limit if name.startswith("min_") else value <= limit
        if elsewhere:
            verdicts.append(BudgetVerdict(
                **base, status="other machine", value=value, low=low, high=high,
                message=f"{shown}: not enforced: set for machine {tied!r}, measured on {here}: {measured} "
                        f"({'within' if met else 'outside'} the limit here)"))
            continue
        status, text = ("passed", "passed") if met else ("missed", "MISSED")
        if low is not None and high is not None:  # whether the verdict is clear or inside the noise
            clear = "meets" if met else "misses"
            text += (" (inside the noise: the interval reaches the limit)" if low <= limit <= high else
                     f" (clear: the whole interval {clear} it)")
        on = f" on machine {tied!r}" if tied else ""
        verdicts.append(BudgetVerdict(**base, status=status, value=value, low=low, high=high, fails=status == "missed",
                                      message=f"{shown}{on}: {text}: {measured}"))
    return verdicts


def _absolute_value(record: Record, name: str) -> tuple[float | None, float | None, float | None]:
    interval = record.median_ci_ms
    if name == "max_p50_ms":
        return record.p50_ms, interval.low if interval else None, interval.high if interval else None
    if name == "max_p99_ms":
        spread = block_p99_range_ms(record.samples_ns) if record.samples_ns else None
        return (record.latency_ms.p99 if record.latency_ms else None), *(spread or (None, None))
    if name == "min_throughput_ips":
        return record.throughput_ips, None, None
    if name == "max_peak_rss_mb":
        return record.peak_rss_mb, None, None
    size = record.model_size_bytes
    return (size / 1e6 if size else None), None, None


def _not_judged(record: Record) -> str | None:
    if record.status == "invalid":
        return f"its measurement is INVALID ({record.reason})"
    if record.status != "passed":
        return f"the case {record.status}" + (f" ({record.reason})" if record.reason else "")
    return None


def partner_name(record: Record, budget: dict[str, Any], records: list[Record], race: RaceRecord | None
                 ) -> str | None:
    """The race's name for what a relative budget compares ``record`` with: its ``against`` (the scenario's, or the
    baseline it resolved to when expanded), else the race's baseline."""
    partner = partner_record(record, budget, records)
    if partner is not None:
        return entry_name(partner)
    return race.baseline if race is not None and budget.get("against") is None else None


def partner_record(record: Record, budget: dict[str, Any], records: list[Record]) -> Record | None:
    """The record of the configuration ``budget`` names in ``record``'s group (the last, if run twice)."""
    against = budget.get("against")
    if against is None:
        return None
    key = group_key(record)
    found = [other for other in records if group_key(other) == key and against["backend"] in (other.label,
             other.backend) and other.precision == against["precision"]
             and other.compression == against.get("compression", "none")]
    return found[-1] if found else None


def budget_estimate(rounds: list[Round], name: str, partner: str) -> PairedEstimate | None:
    """``name``'s latency over ``partner``'s in the rounds both raced, with its BUDGET_CONFIDENCE interval."""
    values = pair_log_ratios(rounds, name, partner)
    return paired_estimate(values, confidence=BUDGET_CONFIDENCE) if len(values) >= 2 else None


def judge_relative(record: Record, budget: dict[str, Any], records: list[Record], race: RaceRecord | None,
                   raced: bool) -> list[BudgetVerdict]:
    """The budget's relative limits on the race's paired ratio. ``raced``: whether the case's model races at all
    (race: false leaves no same-sitting ratio)."""
    verdicts = []
    name = entry_name(record)
    partner = partner_record(record, budget, records)
    against = partner_name(record, budget, records, race)
    for limit_name, limit in budget["limits"].items():
        if limit_name not in RELATIVE:
            continue
        shown = f"{limit_name} {_figure(limit)}×" + (f" against {against}" if against else "")
        base = {"scenario": record.scenario, "case_id": record.case_id, "where": budget["where"],
                "limit_name": limit_name, "limit": limit, "against": against}
        if (problem := _not_judged(record)) is not None:
            verdicts.append(BudgetVerdict(**base, status="not judged", message=f"{shown}: not judged: {problem}"))
            continue
        why = _no_ratio(record, budget, partner, against, race, raced)
        estimate = None
        if why is None and race is not None and against is not None:
            estimate = budget_estimate([r.slices for r in race.rounds], name, against)
            if estimate is None:
                why = "no same-sitting ratio: the two did not race together for two rounds"
        if estimate is None:
            fails = budget.get("cannot_tell") == "fail"
            verdicts.append(BudgetVerdict(**base, status="cannot tell", fails=fails,
                                          message=f"{shown}: CANNOT TELL: {why}"))
            continue
        status, value, low, high = relative_outcome(limit_name, limit, estimate)
        sittings = "one sitting" if race is None or race.heats <= 1 else f"{race.heats} heats of one race"
        figure = (f"{'speed-up' if limit_name == 'min_speedup' else 'slow-down'} {_x(value)}× "
                  f"({BUDGET_CONFIDENCE * 100:g} % CI {_x(low)}–{_x(high)}×, paired, {estimate.rounds} rounds in "
                  f"{sittings})")
        text = {"passed": "passed", "missed": "MISSED (the whole interval misses the limit)",
                "cannot tell": "CANNOT TELL (the interval straddles the limit)"}[status]
        if not math.isfinite(estimate.ci_high) or estimate.ci_low <= 0:
            text = (f"CANNOT TELL ({estimate.rounds} rounds are too few for a {BUDGET_CONFIDENCE * 100:g} % interval, "
                    f"which takes {_rounds_for_an_interval()}: give the race more time, race.max_seconds)")
        figure += _raced_differently(race, record, partner)
        fails = status == "missed" or (status == "cannot tell" and budget.get("cannot_tell") == "fail")
        verdicts.append(BudgetVerdict(**base, status=status, value=value, low=low, high=high, rounds=estimate.rounds,
                                      fails=fails, message=f"{shown}: {text}: {figure}"))
    return verdicts


def _rounds_for_an_interval() -> int:
    """The fewest paired rounds whose exact signed-rank interval at BUDGET_CONFIDENCE has finite ends."""
    return next(n for n in range(2, 100) if paired_estimate([0.01 * i for i in range(n)],
                                                            confidence=BUDGET_CONFIDENCE).ci_high < math.inf)


def _raced_differently(race: RaceRecord | None, record: Record, partner: Record | None) -> str:
    """Where the race ran a configuration with options of its own (ONNX Runtime's pools stop spinning between
    runs, harness.race), the verdict says so: that configuration's p50 alone was measured without them, and on a
    tiny model the two can differ by more than the ratio itself."""
    if race is None:
        return ""
    notes = []
    for one in (record, partner):
        entry = race.entry(one.case_id) if one is not None else None
        if entry is not None and entry.race_options:
            options = ", ".join(f"{key}: {value}" for key, value in entry.race_options.items())
            notes.append(f"{entry.name} raced with {options}")
    return f"; {'; '.join(notes)} (its own p50 was measured without)" if notes else ""


def _no_ratio(record: Record, budget: dict[str, Any], partner: Record | None, against: str | None,
              race: RaceRecord | None, raced: bool) -> str | None:
    """Why there is no same-sitting ratio to judge a relative budget on, or None."""
    if not raced:
        return ("no same-sitting ratio: the model's race is off (race: false), and p50s measured apart cannot "
                "judge it")
    if budget.get("against") is not None and (partner is None or partner.status != "passed"):
        what = f"{budget['against']['backend']} {budget['against']['precision']}"
        return f"nothing to compare with: {what} " + ("did not run" if partner is None else f"{partner.status}")
    if against is None:
        return "nothing to compare with: the group has no baseline (no dense fp32 case passed)"
    if against == entry_name(record):
        return "it is the configuration it would be compared with"
    if race is None:
        return "no same-sitting ratio: the group was not raced (fewer than two of its cases passed)"
    if race.status != "raced":
        return f"no same-sitting ratio: the race {race.status} ({race.reason})"
    for entry in (race.entry(record.case_id), partner and race.entry(partner.case_id)):
        if entry and (entry.status == "not raced" or entry.budget_failure):
            return f"{entry.name} did not race to the end: {entry.budget_failure or entry.reason}"
    return None


def relative_outcome(limit_name: str, limit: float, estimate: Any) -> tuple[BudgetStatus, float, float, float]:
    """(passed / missed / cannot tell, the figure, its interval) of a relative limit on a paired ratio (an object
    with ``ratio``, ``ci_low``, ``ci_high``): the whole interval must meet the limit to pass, or miss it to fail.
    The ratio is this case's latency over its partner's; a speed-up is its inverse, the interval's ends swapped."""
    ratio, ci_low, ci_high = estimate.ratio, estimate.ci_low, estimate.ci_high
    if limit_name == "min_speedup":
        value, low, high = 1 / ratio, (1 / ci_high if ci_high > 0 else 0.0), (1 / ci_low if ci_low > 0 else math.inf)
        met, missed = low >= limit, high < limit
    else:
        value, low, high = ratio, ci_low, ci_high
        met, missed = high <= limit, low > limit
    return ("passed" if met else "missed" if missed else "cannot tell"), value, low, high


def judge_case(record: Record, budgets: Iterable[dict[str, Any]], records: list[Record],
               races: list[RaceRecord], raced: bool, machine_id: str, machine_label: str | None,
               relative: bool = True, absolute: bool = True) -> list[BudgetVerdict]:
    """Every limit of every budget that holds for the case."""
    race = next((r for r in races if r.group == group_key(record)), None)
    verdicts = []
    for budget in budgets:
        if absolute:
            verdicts += judge_absolute(record, budget, machine_id, machine_label)
        if relative:
            verdicts += judge_relative(record, budget, records, race, raced)
    return verdicts
