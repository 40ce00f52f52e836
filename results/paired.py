"""Paired statistics of an A/B comparison: is the new side slower than the base, measured in one sitting?

The unit of replication is a *round*: a fresh pair of workers (or sessions) that measure both sides in
lock-step and give one log-ratio log(new / base). Slices inside a round are paired in time, so the machine's
drift cancels inside a pair; what does not cancel is the bias a session carries (memory placement, weight
packing), which is why the spread *between* rounds, not between slices, sets the interval.

Rounds are not normal: now and then one pair of workers is off by 20-30 % (a bad placement, a stall that hit one
side: measured on the development VM, one round of ten at 1.305 among rounds within ±2.5 %), which makes a
t-interval so wide that nothing can be told. So the statistics are rank-based, one estimator for everything:
the Hodges-Lehmann estimate (the median of the Walsh averages of the rounds' log-ratios) is the ratio, the
interval is the exact distribution-free one that goes with it (order statistics of the Walsh averages picked by
the signed-rank distribution, so the point always lies inside), and the test is the exact Wilcoxon signed-rank
test on the same values (computed from the exact null distribution whenever no two rounds tie). A t-test p is
reported beside it.

The minimum detectable effect (MDE) is the change that these rounds would find (p < ``alpha``) with the stated
power. It is calibrated for the test actually used, not taken from the normal limit, which flatters small
samples: at eight rounds the exact test rejects at 0.01 only when all eight agree in sign, and the normal-limit
MDE read off the interval is a third too small (by simulation: 1.87 σ against the 2.46 σ that is needed; 18 %
at ten rounds, 5 % at twenty). So the MDE is the interval's half-width times a factor that, for normal rounds
of any spread, turns the typical half-width into the shift the exact test finds 95 % of the time; the factor
is found by simulation (seeded, once per number of rounds) up to 40 rounds and from the normal limit above,
where the two agree within 2 %. With fewer than eight rounds the exact test cannot reach p < 0.01 at all, and
the MDE is infinite.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 0.01  # two-sided; as tracking.compare
POWER = 0.95
VERDICTS = ("slower", "faster", "unchanged", "cannot tell")


@dataclass(frozen=True)
class PairedEstimate:
    """The change new/base over the rounds: ratio, interval, tests and what the rounds could have detected."""

    rounds: int
    ratio: float  # exp(Hodges-Lehmann estimate of the log-ratio): 1.05 is 5 % slower
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float  # exact Wilcoxon signed-rank test of the log-ratios against 0, two-sided
    t_test_p: float | None  # one-sample t-test on the same values, for reference
    sd_log: float  # spread of the rounds' log-ratios (sample standard deviation)
    mde: float  # smallest change (as a share, 0.03 = 3 %) found with 95 % power at `alpha`; inf: none
    standard_error: float  # of the log-ratio, read off the interval's width in the normal limit; inf: no interval


def signed_rank_cdf(rounds: int) -> np.ndarray:
    """P(T+ <= t) for t = 0 .. n(n+1)/2 under "no change": the exact null distribution of the signed-rank
    statistic (the number of subsets of 1..n with each sum, by dynamic programming)."""
    counts = np.zeros(rounds * (rounds + 1) // 2 + 1)
    counts[0] = 1.0
    for rank in range(1, rounds + 1):
        counts[rank:] = counts[rank:] + counts[:-rank].copy()
    return np.cumsum(counts) / 2.0 ** rounds


def smallest_p(rounds: int) -> float:
    """The smallest two-sided p the exact signed-rank test can give with this many rounds (2 / 2^n)."""
    return min(1.0, 2.0 / 2.0 ** rounds)


def signed_rank_p(values: np.ndarray) -> float:
    """Two-sided p of the signed-rank test of ``values`` against 0: exact from the null distribution when no value
    is zero and no two magnitudes tie (always, in practice, for measured log-ratios), else SciPy's corrected normal
    approximation, which handles ties and zeros."""
    magnitudes = np.abs(values)
    if values.size and np.all(magnitudes > 0) and np.unique(magnitudes).size == values.size:
        ranks = stats.rankdata(magnitudes)
        statistic = round(float(ranks[values > 0].sum()))
        cdf = signed_rank_cdf(int(values.size))
        at_most = cdf[statistic]
        at_least = 1.0 - (cdf[statistic - 1] if statistic > 0 else 0.0)
        return float(min(1.0, 2 * min(at_most, at_least)))
    return float(stats.wilcoxon(values, zero_method="wilcox", alternative="two-sided", method="auto").pvalue)


SIMULATED_UP_TO = 40  # rounds; above, the normal limit is within 2 % of the simulated factor
_SIMULATIONS = 2000


@cache
def mde_factor(rounds: int, alpha: float = ALPHA, power_wanted: float = POWER, confidence: float = CONFIDENCE) -> float:
    """MDE on the log scale per unit of the interval's half-width on the log scale, for ``rounds`` rounds.

    For normal rounds of spread σ: the shift (in σ) at which the exact test rejects at ``alpha`` with
    ``power_wanted``, divided by the median half-width (in σ) of the signed-rank interval, both by simulation
    with a fixed seed (so that the same rounds always give the same MDE). Beyond ``SIMULATED_UP_TO`` rounds the
    normal limit: (z_alpha/2 + z_power) / z_confidence.
    """
    if rounds < 2 or smallest_p(rounds) >= alpha:
        return math.inf
    if rounds > SIMULATED_UP_TO:
        return float((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power_wanted))
                     / stats.norm.ppf(0.5 + confidence / 2))
    noise = np.random.default_rng(rounds).standard_normal((_SIMULATIONS, rounds))
    cdf = signed_rank_cdf(rounds)
    below = np.concatenate([[0.0], cdf])  # below[t] = P(T+ <= t - 1)

    def rejects(shift: float) -> float:
        values = noise + shift
        ranks = np.argsort(np.argsort(np.abs(values), axis=1), axis=1) + 1
        statistic = (ranks * (values > 0)).sum(axis=1)
        p = np.minimum(1.0, 2 * np.minimum(cdf[statistic], 1.0 - below[statistic]))
        return float((p < alpha).mean())

    low, high = 0.0, 20.0
    for _ in range(30):  # bisection: the power grows with the shift
        middle = (low + high) / 2
        low, high = (low, middle) if rejects(middle) >= power_wanted else (middle, high)
    pairs = np.triu_indices(rounds)
    walsh = np.sort((noise[:, :, None] + noise[:, None, :])[:, pairs[0], pairs[1]] / 2, axis=1)
    index = _interval_index(rounds, confidence)
    half_widths = (walsh[:, walsh.shape[1] - 1 - index] - walsh[:, index]) / 2
    return float(high / np.median(half_widths))


def _interval_index(rounds: int, confidence: float) -> int:
    """C - 1: the 0-based index of the Walsh average that bounds the signed-rank interval from below (-1: none)."""
    fits = np.flatnonzero(signed_rank_cdf(rounds) <= (1 - confidence) / 2)
    return int(fits[-1]) if fits.size else -1


def minimum_detectable_effect(standard_error: float, alpha: float = ALPHA, power_wanted: float = POWER) -> float:
    """The smallest true change found with probability ``power_wanted`` at ``alpha`` for this standard error."""
    if not math.isfinite(standard_error):
        return math.inf
    return float(math.expm1((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power_wanted)) * standard_error))


def paired_estimate(log_ratios: Sequence[float], confidence: float = CONFIDENCE, alpha: float = ALPHA,
                    power_wanted: float = POWER) -> PairedEstimate:
    """The estimate from the rounds' log-ratios (each log(new / base) of one round)."""
    values = np.asarray(log_ratios, dtype=np.float64)
    if values.size == 0 or not np.isfinite(values).all():
        raise ValueError("paired_estimate needs at least one finite log-ratio")
    n = int(values.size)
    walsh = np.sort((values[:, None] + values[None, :])[np.triu_indices(n)] / 2)  # n(n+1)/2 averages
    centre = float(np.median(walsh))
    if n < 2:
        return PairedEstimate(1, math.exp(centre), 0.0, math.inf, confidence, 1.0, None, math.nan, math.inf,
                              math.inf)
    # the interval [W_(C), W_(M+1-C)] (1-based), C - 1 the largest t with P(T+ <= t) <= (1 - confidence) / 2
    below = _interval_index(n, confidence)
    if below >= 0:
        low, high = float(walsh[below]), float(walsh[walsh.size - 1 - below])
    else:  # too few rounds for this confidence at all
        low, high = -math.inf, math.inf
    # no spread: the test has nothing to rank against but the signs
    p = (1.0 if values[0] == 0 else smallest_p(n)) if np.all(values == values[0]) else signed_rank_p(values)
    sd = float(values.std(ddof=1))
    t_p = float(stats.ttest_1samp(values, 0.0).pvalue) if sd > 0 else None
    if math.isfinite(low):
        standard_error = (high - low) / (2 * stats.norm.ppf(0.5 + confidence / 2))
        factor = mde_factor(n, alpha, power_wanted, confidence)  # inf: the exact test cannot reject at alpha
        mde = float(math.expm1(factor * (high - low) / 2)) if math.isfinite(factor) else math.inf
    else:
        standard_error = mde = math.inf
    return PairedEstimate(n, math.exp(centre), math.exp(low), math.exp(high), confidence, p, t_p, sd, mde,
                          standard_error)


def ab_verdict(estimate: PairedEstimate, threshold: float, min_effect: float | None = None,
               alpha: float = ALPHA) -> tuple[str, str]:
    """(verdict, why) for a threshold like 0.05.

    "slower" needs evidence (p < alpha) and size (a change of at least ``min_effect``, by default half the
    threshold, as ``accelbench compare`` decides, so that a true change of the threshold is caught even when noise
    makes it look smaller); "faster" the same the other way. Otherwise "unchanged" only when the rounds could have
    seen a change of the threshold: its interval lies within ±threshold (an equivalence test); else "cannot tell",
    never a silent pass.
    """
    min_effect = threshold / 2 if min_effect is None else min_effect
    change = estimate.ratio - 1
    significant = estimate.p_value < alpha
    if significant and estimate.ratio >= 1 + min_effect and estimate.ci_low > 1:
        return "slower", f"{change:+.1%}, p = {estimate.p_value:.2g} over {estimate.rounds} rounds"
    if significant and estimate.ratio <= 1 / (1 + min_effect) and estimate.ci_high < 1:
        return "faster", f"{change:+.1%}, p = {estimate.p_value:.2g} over {estimate.rounds} rounds"
    if estimate.ci_high < 1 + threshold and estimate.ci_low > 1 / (1 + threshold):
        small = f" (a significant {change:+.1%}, below the {min_effect:.1%} that counts)" if significant else ""
        return "unchanged", (f"no change of {threshold:.0%} or more: the interval {estimate.ci_low:.3f}-"
                             f"{estimate.ci_high:.3f} lies within ±{threshold:.0%}{small}")
    interval = f"the interval {estimate.ci_low:.3f}-{estimate.ci_high:.3f} reaches past ±{threshold:.0%}"
    if not math.isfinite(estimate.mde):
        return "cannot tell", (f"{interval}: {estimate.rounds} rounds are too few for the exact test to reach "
                               f"p < {alpha:g} whatever the change: more time (ab.max_seconds)")
    if estimate.mde > threshold:
        return "cannot tell", (f"{interval}; {estimate.rounds} rounds detect only changes of {estimate.mde:.1%} or "
                               "more: more time (ab.max_seconds) or a quieter machine")
    return "cannot tell", (f"{interval}: a {change:+.1%} change, p = {estimate.p_value:.2g}, neither shown nor ruled "
                           "out; more rounds would settle it (ab.max_seconds)")
