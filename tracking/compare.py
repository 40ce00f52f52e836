"""Is a new run slower than a base run? Per case: the change of the median with a confidence interval, a rank
test with an effect size, and a verdict; accuracy changes too.

Why blocks and not raw samples: consecutive samples of one run are not independent. A machine's speed drifts
and toggles (sysinfo.stability measures this VM's: ~1.8x every few seconds), so a run's 10^5 samples behave like
a handful of independent observations, and a Mann-Whitney U test on them calls every 0.1 % difference
"significant". The unit of replication is a time block: each run's samples are cut into `BLOCKS` contiguous
blocks, each block's median is one observation; the test (Mann-Whitney U, with Cliff's delta as effect size), the
estimate (the Hodges-Lehmann shift) and its interval all come from the same block medians (timing_change).

Blocks capture the noise inside a run, not the offset between two runs: a machine whose speed changes for
seconds at a time moves a whole run (two runs of one scenario on a loaded VM differed by 27-42 % with p down to
1e-7). So a verdict needs to know how far runs of the case move between runs: where the history holds earlier
runs of a case on the same machine, their run-to-run spread σ sets a noise floor (the change must also exceed
Z·√2·σ, one-sided 1 %). Without it, compare gives no verdict: "cannot tell", with the smallest change that the
blocks alone could show (a lower bound of what runs at different times can tell) and the way to an answer
(`accelbench ab`, which measures both sides in one sitting, or a history). `blocks_only` (--no-noise-floor) judges
by the blocks alone anyway, for a quiet dedicated machine. Verdicts need evidence and size, as asv's do:
"slower" when the test rejects "no change" at `alpha` and the estimated change is at least `min_effect` (by
default half the threshold). Cases measured on another machine or with other library versions are "not
comparable" unless asked otherwise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.stats import mannwhitneyu, norm
from scipy.stats import t as t_dist

from results.record import Record
from results.stats import BLOCKS, block_medians
from sysinfo.envinfo import env_differences, env_machine_id, software_facts
from tracking.changepoints import noise_sigma

DEFAULT_ALPHA = 0.01
CI_CONFIDENCE = 0.95
TOP1_TOLERANCE = 0.0  # same inputs, same labels: any change of top-1 is real
COSINE_TOLERANCE = 1e-5  # thread-order float noise moves the 7th digit; a real change moves more
NOISE_FLOOR_Z = 2.326  # one-sided 1 %: how far beyond run-to-run noise a change must be
MIN_NOISE_RUNS = 5  # fewer earlier runs than this say too little about a case's noise
MIN_BLOCKS = 5  # with 5 blocks a side the exact two-sided U test can reach p = 0.008; with 4, never below 0.029


@dataclass
class TimingChange:
    ratio: float  # new / base, the Hodges-Lehmann shift of the log block medians: 1.05 is 5 % slower
    ci_low: float
    ci_high: float
    p_value: float
    cliffs_delta: float  # P(new block > base block) - P(new block < base block), in [-1, 1]
    base_blocks: int
    new_blocks: int


def timing_change(base_ns: list[int], new_ns: list[int], blocks: int = BLOCKS,
                  confidence: float = CI_CONFIDENCE) -> TimingChange:
    """The change of the run's level as one estimator gives it, with that estimator's own interval and test.

    On the logs of the block medians: the Hodges-Lehmann shift (the median of every new-block minus base-block
    difference) is the estimate; the interval is the distribution-free one that goes with it (the order statistics
    of the same differences that the Mann-Whitney U distribution picks, Moses 1965), and the test is that
    Mann-Whitney U test. So the point always lies inside its interval, and the interval excludes "no change"
    exactly when the test at 1 - confidence would reject it (up to the normal approximation of U's quantile)."""
    base, new = np.log(block_medians(base_ns, blocks)), np.log(block_medians(new_ns, blocks))
    differences = np.sort(np.subtract.outer(new, base).ravel())
    m, n = new.size, base.size
    shift = float(np.median(differences))
    z = float(norm.ppf(0.5 + confidence / 2))
    # Hollander & Wolfe: the interval is [D_(C), D_(mn+1-C)] (1-based) with C the U test's lower critical value
    critical = int(np.floor(m * n / 2 - z * np.sqrt(m * n * (m + n + 1) / 12)))
    below = min(max(critical - 1, 0), (differences.size - 1) // 2)
    low, high = differences[below], differences[differences.size - 1 - below]
    test = mannwhitneyu(new, base, alternative="two-sided")
    delta = 2.0 * float(test.statistic) / (m * n) - 1.0
    return TimingChange(float(np.exp(shift)), float(np.exp(low)), float(np.exp(high)), float(test.pvalue), delta,
                        int(n), int(m))


@dataclass
class CaseComparison:
    case_id: str
    verdict: str  # slower | faster | unchanged | cannot tell | broken | missing | not comparable
    reason: str = ""
    base_p50_ms: float | None = None
    new_p50_ms: float | None = None
    timing: TimingChange | None = None
    required_change: float | None = None  # the smallest change this case could be called slower for
    accuracy: dict[str, Any] = field(default_factory=dict)  # {metric: {"base", "new", "change", "verdict"}}
    measured_in_neither: bool = False  # skipped or failed in both runs: summarised, not a row of its own

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


SYSTEM_SOFTWARE = ("OS", "Python", "GPU driver", "CUDA driver")  # the software facts that are not libraries


def _software_changes(base_env: dict[str, Any], new_env: dict[str, Any]) -> list[str]:
    """Names of the software facts (sysinfo.envinfo.software_facts) that differ: libraries, and the GPU driver
    that used to count as hardware. A fact that one env.json does not record at all (an older run folder without
    `python`) is not a change."""
    before, after = software_facts(base_env), software_facts(new_env)
    libraries = set(base_env.get("libraries") or {}) | set(new_env.get("libraries") or {})
    return sorted(name for name in {**before, **after} if before.get(name) != after.get(name)
                  and (name in libraries or (before.get(name) is not None and after.get(name) is not None)))


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
    if not any_machine and env_machine_id(base_env) != env_machine_id(new_env):
        what = "; ".join(env_differences(base_env, new_env, ("base", "new"), software=False)[:2])
        return f"measured on different machines ({what + '; ' if what else ''}--any-machine compares them anyway)"
    if not any_software and (changed := _software_changes(base_env, new_env)):
        kind = "library versions differ" if all(name not in SYSTEM_SOFTWARE for name in changed) else "software differs"
        return f"{kind} ({', '.join(changed)}; --any-software compares them anyway)"
    blocks = min(len(base.samples_ns), len(new.samples_ns), BLOCKS)
    if blocks < MIN_BLOCKS:
        return f"too few samples for the test ({blocks} blocks; at least {MIN_BLOCKS})"
    return None


def compare_runs(base: dict[str, Record], new: dict[str, Record], base_env: dict[str, Any],
                 new_env: dict[str, Any], threshold: float = 0.05, min_effect: float | None = None,
                 alpha: float = DEFAULT_ALPHA, any_machine: bool = False, any_software: bool = False,
                 noise: dict[str, float | None] | None = None, blocks_only: bool = False) -> list[CaseComparison]:
    """Every case of either run, in the new run's order (then cases only the base has). noise: run-to-run σ
    of log median per case id, from the history (see run_to_run_sigma); a case without one is "cannot tell"
    unless ``blocks_only`` (then only min_effect and the blocks decide)."""
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
            comparison.measured_in_neither = not before.measured and not after.measured
            results.append(comparison)
            continue
        comparison.timing = timing_change(before.samples_ns, after.samples_ns)
        sigma = (noise or {}).get(case_id)
        if sigma is None and not blocks_only:
            floor = blocks_detectable_change(before.samples_ns, after.samples_ns, alpha)
            comparison.verdict = "cannot tell"
            comparison.reason = (
                "no run-to-run spread of this case is known (a history of at least "
                f"{MIN_NOISE_RUNS} runs on this machine gives one): runs measured at different times differ by more "
                f"than their blocks show, and the blocks alone could not find a change under {floor:.1%}; "
                "accelbench ab measures both sides in one sitting")
        else:
            comparison.required_change = required_change(min_effect, sigma)
            comparison.verdict = timing_verdict(comparison.timing, comparison.required_change, alpha)
        invalid = [f"the {which} run's measurement is INVALID ({r.reason})"
                   for which, r in (("base", before), ("new", after)) if r.status == "invalid"]
        if invalid:  # timed, but not as the scenario asked: the comparison stands on weaker ground, and says so
            comparison.reason = "; ".join([*invalid, *filter(None, [comparison.reason])])
        results.append(comparison)
    return results


def blocks_detectable_change(base_ns: list[int], new_ns: list[int], alpha: float) -> float:
    """The smallest change two runs' blocks could show at ``alpha`` with 95 % power, from the blocks' own spread
    (a two-sample t bound on log block medians): what compare can tell at best, when runs moved no more than their
    blocks; on a shared machine they move more."""
    base, new = np.log(block_medians(base_ns)), np.log(block_medians(new_ns))
    if base.size < 2 or new.size < 2:
        return float("inf")
    spread = np.sqrt((base.var(ddof=1) + new.var(ddof=1)) / 2) * np.sqrt(1 / base.size + 1 / new.size)
    df = base.size + new.size - 2
    return float(np.expm1((t_dist.ppf(1 - alpha / 2, df) + t_dist.ppf(0.95, df)) * spread))
