"""Is a new run slower than a base run? Per case: the change of the median with a confidence interval, a rank
test with an effect size, and a verdict; accuracy changes too.

Why blocks and not raw samples: consecutive samples of one run are not independent. A machine's speed drifts
and toggles (sysinfo.stability measures this VM's: ~1.8x every few seconds), so a run's 10^5 samples behave like
a handful of independent observations, and a Mann-Whitney U test on them calls every 0.1 % difference
"significant". The unit of replication is a time block: each run's samples are cut into `BLOCKS` contiguous
blocks, each block's median is one observation, and both the test (Mann-Whitney U on block medians, with Cliff's
delta as effect size) and the interval (bootstrap resampling blocks) are computed on those.

The verdict needs both evidence and size, as asv's does: "slower" when the test rejects "no change" at `alpha`
and the estimated change is at least `min_effect` (by default half the threshold: a slowdown of the threshold's
size must be caught even when noise makes it look a little smaller). Blocks capture the noise inside a run, not
the offset between two runs (a machine whose speed changes for seconds at a time moves a whole run); where the
history holds earlier runs of a case on the same machine, their run-to-run spread σ sets a noise floor: the
change must also exceed Z·√2·σ (one-sided 1 %), so that run-to-run noise alone rarely passes for a regression.
Cases measured on another machine or with other library versions are "not comparable" unless asked otherwise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.stats import mannwhitneyu

from results.record import Record
from sysinfo.envinfo import machine_id
from tracking.changepoints import noise_sigma

BLOCKS = 20
BOOTSTRAP_RESAMPLES = 2000
DEFAULT_ALPHA = 0.01
CI_CONFIDENCE = 0.95
TOP1_TOLERANCE = 0.0  # same inputs, same labels: any change of top-1 is real
COSINE_TOLERANCE = 1e-5  # thread-order float noise moves the 7th digit; a real change moves more
NOISE_FLOOR_Z = 2.326  # one-sided 1 %: how far beyond run-to-run noise a change must be
MIN_NOISE_RUNS = 5  # fewer earlier runs than this say too little about a case's noise
MIN_BLOCKS = 5  # with 5 blocks a side the exact two-sided U test can reach p = 0.008; with 4, never below 0.029


def block_medians(samples_ns: list[int] | np.ndarray, blocks: int = BLOCKS) -> np.ndarray:
    """Medians of `blocks` contiguous, equal slices of the samples in measurement order (fewer when short)."""
    samples = np.asarray(samples_ns, dtype=np.float64)
    count = min(blocks, samples.size)
    return np.array([np.median(part) for part in np.array_split(samples, count)]) if count else samples


@dataclass
class TimingChange:
    ratio: float  # new median / base median: 1.05 is 5 % slower
    ci_low: float
    ci_high: float
    p_value: float
    cliffs_delta: float  # P(new block > base block) - P(new block < base block), in [-1, 1]
    base_blocks: int
    new_blocks: int


def timing_change(base_ns: list[int], new_ns: list[int], blocks: int = BLOCKS,
                  rng: np.random.Generator | None = None) -> TimingChange:
    """The ratio of medians (all samples), its bootstrap CI over blocks, and the block-level rank test."""
    rng = rng or np.random.default_rng(0)
    base, new = block_medians(base_ns, blocks), block_medians(new_ns, blocks)
    ratio = float(np.median(np.asarray(new_ns, dtype=np.float64)) / np.median(np.asarray(base_ns, dtype=np.float64)))
    base_boot = np.median(rng.choice(base, size=(BOOTSTRAP_RESAMPLES, base.size), replace=True), axis=1)
    new_boot = np.median(rng.choice(new, size=(BOOTSTRAP_RESAMPLES, new.size), replace=True), axis=1)
    tail = (1 - CI_CONFIDENCE) / 2
    low, high = np.quantile(new_boot / base_boot, (tail, 1 - tail))
    test = mannwhitneyu(new, base, alternative="two-sided")
    delta = 2.0 * float(test.statistic) / (new.size * base.size) - 1.0
    return TimingChange(ratio, float(low), float(high), float(test.pvalue), delta, int(base.size), int(new.size))


@dataclass
class CaseComparison:
    case_id: str
    verdict: str  # slower | faster | unchanged | broken | missing | not comparable
    reason: str = ""
    base_p50_ms: float | None = None
    new_p50_ms: float | None = None
    timing: TimingChange | None = None
    required_change: float | None = None  # the smallest change this case could be called slower for
    accuracy: dict[str, Any] = field(default_factory=dict)  # {metric: {"base", "new", "change", "verdict"}}

    @property
    def regressed(self) -> bool:
        """Slower, broken (measured before, not now), or less accurate where the two are comparable."""
        if self.verdict in ("slower", "broken"):
            return True
        comparable = self.verdict not in ("not comparable", "missing")
        return comparable and any(change["verdict"] == "worse" for change in self.accuracy.values())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "regressed": self.regressed}


def required_change(min_effect: float, run_sigma: float | None) -> float:
    """The change a case must show: the minimum effect, or more where its runs are noisier than that."""
    if run_sigma is None:
        return min_effect
    return max(min_effect, float(np.expm1(NOISE_FLOOR_Z * np.sqrt(2) * run_sigma)))


def run_to_run_sigma(medians: list[float]) -> float | None:
    """σ of log median across earlier runs of a case (oldest first), robust to a step: from the median absolute
    successive difference, as the change-point detector estimates noise. None with fewer than MIN_NOISE_RUNS."""
    values = np.asarray([m for m in medians if m and m > 0], dtype=np.float64)
    return noise_sigma(np.log(values)) if values.size >= MIN_NOISE_RUNS else None


def timing_verdict(change: TimingChange, min_effect: float, alpha: float) -> str:
    if change.p_value >= alpha:
        return "unchanged"
    if change.ratio >= 1 + min_effect and change.ci_low > 1:
        return "slower"
    if change.ratio <= 1 / (1 + min_effect) and change.ci_high < 1:
        return "faster"
    return "unchanged"


def accuracy_changes(base: Record, new: Record) -> dict[str, Any]:
    """Top-1 and fidelity of the two records, where both have them; "worse" on any top-1 loss."""
    changes = {}
    for metric, tolerance in (("top1", TOP1_TOLERANCE), ("cosine_min", COSINE_TOLERANCE)):
        before, after = getattr(base.accuracy, metric), getattr(new.accuracy, metric)
        if before is None or after is None:
            continue
        delta = after - before
        verdict = "worse" if delta < -tolerance else "better" if delta > tolerance else "same"
        changes[metric] = {"base": before, "new": after, "change": delta, "verdict": verdict}
    return changes


def _machine_id(env: dict[str, Any]) -> str:
    return env.get("machine_id") or machine_id(env.get("machine") or {})


# what must be the same for two records of one case id to measure the same thing
ALIKE_FIELDS = ("backend", "backend_options", "precision", "compression", "batch_size", "mode", "model_source",
                "calibration", "measure")


def not_comparable_reason(base: Record, new: Record, base_env: dict[str, Any],
                          new_env: dict[str, Any], any_machine: bool, any_software: bool) -> str | None:
    """Why two records of one case id cannot be compared: not both measured, or not measured alike (the case id
    stays the same when a scenario changes its input shape, measurement or calibration)."""
    for record, which in ((base, "base"), (new, "new")):
        if not record.measured or not record.samples_ns:
            return f"{which} {record.status}: {record.reason or 'no samples'}"
    before, after = base.model_dump(include=set(ALIKE_FIELDS)), new.model_dump(include=set(ALIKE_FIELDS))
    for key in ALIKE_FIELDS:
        if before[key] != after[key]:
            return f"{key} differs: {before[key]!r} vs {after[key]!r}"
    if not any_machine and _machine_id(base_env) != _machine_id(new_env):
        return "measured on different machines (--any-machine compares them anyway)"
    before, after = base_env.get("libraries") or {}, new_env.get("libraries") or {}
    if not any_software and before != after:
        changed = sorted(k for k in {**before, **after} if before.get(k) != after.get(k))
        return f"library versions differ ({', '.join(changed)}; --any-software compares them anyway)"
    blocks = min(len(base.samples_ns), len(new.samples_ns), BLOCKS)
    if blocks < MIN_BLOCKS:
        return f"too few samples for the test ({blocks} blocks; at least {MIN_BLOCKS})"
    return None


def compare_runs(base: dict[str, Record], new: dict[str, Record], base_env: dict[str, Any],
                 new_env: dict[str, Any], threshold: float = 0.05, min_effect: float | None = None,
                 alpha: float = DEFAULT_ALPHA, any_machine: bool = False, any_software: bool = False,
                 noise: dict[str, float | None] | None = None) -> list[CaseComparison]:
    """Every case of either run, in the new run's order (then cases only the base has). noise: run-to-run σ
    of log median per case id, from the history (see run_to_run_sigma); without it only min_effect applies."""
    min_effect = threshold / 2 if min_effect is None else min_effect
    results = []
    for case_id in [*new, *(c for c in base if c not in new)]:
        if case_id not in new:  # dropped from the scenario, or lost: either way worth a line
            results.append(CaseComparison(case_id, "missing", "in the base run, not in the new one"))
            continue
        if case_id not in base:
            results.append(CaseComparison(case_id, "not comparable", "not in the base run"))
            continue
        before, after = base[case_id], new[case_id]
        if before.measured and not after.measured:
            why = f"measured before, now {after.status}: {after.reason}"
            results.append(CaseComparison(case_id, "broken", why, base_p50_ms=before.p50_ms))
            continue
        comparison = CaseComparison(case_id, "not comparable", base_p50_ms=before.p50_ms, new_p50_ms=after.p50_ms,
                                    accuracy=accuracy_changes(before, after))
        why = not_comparable_reason(before, after, base_env, new_env, any_machine, any_software)
        if why:
            comparison.reason = why
        else:
            comparison.timing = timing_change(before.samples_ns, after.samples_ns)
            comparison.required_change = required_change(min_effect, (noise or {}).get(case_id))
            comparison.verdict = timing_verdict(comparison.timing, comparison.required_change, alpha)
        results.append(comparison)
    return results
