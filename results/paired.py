"""Paired statistics of an A/B comparison: is the new side slower than the base, measured in one sitting?

The unit of replication is a *round*: a fresh pair of workers (or sessions) that measure both sides in
lock-step and give one log-ratio log(new / base). Slices inside a round are paired in time, so the machine's
drift cancels inside a pair; what does not cancel is the bias a session carries (memory placement, weight
packing), which is why the spread *between* rounds, not between slices, sets the interval.

One estimator for everything: the mean of the rounds' log-ratios. The ratio is its exponential, the interval is
the t-interval around it (so the point always lies inside), the test is the one-sample t-test on the same
values, and the minimum detectable effect (MDE) is the change that test finds with the stated power for the
rounds collected. A Wilcoxon signed-rank p-value is reported beside it as a check that does not assume
normality (with fewer than eight rounds it cannot reach p < 0.01 at all, which is why it does not decide).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

CONFIDENCE = 0.95
ALPHA = 0.01  # two-sided; as tracking.compare
POWER = 0.95
VERDICTS = ("slower", "faster", "unchanged", "cannot tell")


@dataclass(frozen=True)
class PairedEstimate:
    """The change new/base over the rounds: ratio, interval, tests and what the rounds could have detected."""

    rounds: int
    ratio: float  # exp(mean log-ratio): 1.05 is 5 % slower
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float  # one-sample t-test of the log-ratios against 0, two-sided
    wilcoxon_p: float | None  # signed-rank test on the same values (None with fewer than two rounds)
    sd_log: float  # spread of the rounds' log-ratios (sample standard deviation)
    mde: float  # smallest change (as a share, 0.03 = 3 %) found with 95 % power at `alpha`; inf with < 2 rounds


def power(change: float, sd_log: float, rounds: int, alpha: float = ALPHA) -> float:
    """The chance that a two-sided t-test at ``alpha`` over ``rounds`` paired log-ratios with spread ``sd_log``
    finds a true ``change`` (a share: 0.02 = 2 %): the noncentral t, exact under normal rounds."""
    if rounds < 2 or not math.isfinite(sd_log):
        return 0.0
    if sd_log == 0:
        return 1.0
    df, noncentrality = rounds - 1, abs(math.log1p(change)) / (sd_log / math.sqrt(rounds))
    critical = stats.t.ppf(1 - alpha / 2, df)
    # SciPy's noncentral t returns NaN for some tail values: the far tail then counts as nothing, and the near
    # one takes the normal limit
    near = float(stats.nct.sf(critical, df, noncentrality))
    far = float(stats.nct.cdf(-critical, df, noncentrality))
    near = near if math.isfinite(near) else float(stats.norm.sf(critical - noncentrality))
    return min(near + (far if math.isfinite(far) else 0.0), 1.0)


def minimum_detectable_effect(sd_log: float, rounds: int, alpha: float = ALPHA, power_wanted: float = POWER) -> float:
    """The smallest true change (a share of the base) that the rounds' t-test at ``alpha`` finds with probability
    ``power_wanted``: solved on the noncentral t (the textbook t + t shortcut promises 95 % and gives ~90 % at five
    rounds)."""
    if rounds < 2 or not math.isfinite(sd_log):
        return math.inf
    if sd_log == 0:
        return 0.0
    # power grows with the change; the shortcut's answer times two is always past the target
    high = math.expm1(2 * (stats.t.ppf(1 - alpha / 2, rounds - 1) + stats.t.ppf(power_wanted, rounds - 1))
                      * sd_log / math.sqrt(rounds))
    return float(optimize.brentq(lambda change: power(change, sd_log, rounds, alpha) - power_wanted, 0.0, high,
                                 xtol=1e-6))


def paired_estimate(log_ratios: Sequence[float], confidence: float = CONFIDENCE, alpha: float = ALPHA,
                    power_wanted: float = POWER) -> PairedEstimate:
    """The estimate from the rounds' log-ratios (each log(new / base) of one round)."""
    values = np.asarray(log_ratios, dtype=np.float64)
    if values.size == 0 or not np.isfinite(values).all():
        raise ValueError("paired_estimate needs at least one finite log-ratio")
    n = int(values.size)
    mean = float(values.mean())
    if n < 2:
        return PairedEstimate(1, math.exp(mean), 0.0, math.inf, confidence, 1.0, None, math.nan, math.inf)
    sd = float(values.std(ddof=1))
    se = sd / math.sqrt(n)
    if se == 0.0:  # identical rounds: no spread to test against (a fixed-point timer, or one value repeated)
        p = 1.0 if mean == 0.0 else 0.0
        low = high = mean
    else:
        p = float(2 * stats.t.sf(abs(mean) / se, n - 1))
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * se
        low, high = mean - half, mean + half
    wilcoxon = None
    if np.any(values != 0):
        wilcoxon = float(stats.wilcoxon(values, zero_method="wilcox", alternative="two-sided").pvalue)
    return PairedEstimate(n, math.exp(mean), math.exp(low), math.exp(high), confidence, p, wilcoxon, sd,
                          minimum_detectable_effect(sd, n, alpha, power_wanted))


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
    return "cannot tell", (f"the interval {estimate.ci_low:.3f}-{estimate.ci_high:.3f} reaches past ±{threshold:.0%}; "
                           f"{estimate.rounds} rounds detect only changes of {estimate.mde:.1%} or more: more time "
                           "(ab.max_seconds) or a quieter machine")
