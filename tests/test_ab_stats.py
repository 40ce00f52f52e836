"""The A/B statistics (results.paired) on data with a known answer, and the lock-step slice order."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from harness.sitting.methods import slice_orders
from harness.sitting.rounds import side_figures
from results.paired import ab_verdict, minimum_detectable_effect, paired_estimate, signed_rank_cdf, signed_rank_p


def rounds(rng: np.random.Generator, ratio: float, spread: float, count: int) -> np.ndarray:
    return rng.normal(math.log(ratio), spread, count)


def test_a_known_ratio_is_found_inside_its_interval_and_called_slower() -> None:
    estimate = paired_estimate(rounds(np.random.default_rng(1), 1.05, 0.01, 20))
    assert estimate.ci_low < 1.05 < estimate.ci_high
    assert estimate.ci_low <= estimate.ratio <= estimate.ci_high
    assert abs(estimate.ratio - 1.05) < 0.01
    assert ab_verdict(estimate, 0.05)[0] == "slower"
    faster = paired_estimate(rounds(np.random.default_rng(2), 1 / 1.05, 0.01, 20))
    assert ab_verdict(faster, 0.05)[0] == "faster"


def test_the_interval_covers_the_true_ratio_95_percent_of_the_time() -> None:
    """The exact signed-rank interval is conservative (its steps): at ten rounds it covers 95.1 % or more."""
    rng = np.random.default_rng(3)
    covered = sum(e.ci_low < 1.03 < e.ci_high
                  for e in (paired_estimate(rounds(rng, 1.03, 0.02, 10)) for _ in range(1000)))
    assert 0.93 < covered / 1000 < 0.99


@pytest.mark.parametrize("count", [8, 12, 25])
def test_the_minimum_detectable_effect_is_detected_with_about_95_percent_power(count: int) -> None:
    """Simulated: rounds whose own intervals say "MDE m" detect a true change of m (p < 0.01) ~95 % of the time,
    at few rounds too, where the normal limit promised 95 % and gave ~75 % (eight rounds)."""
    rng = np.random.default_rng(4)
    spread = 0.02
    mde = float(np.median([paired_estimate(rounds(rng, 1.0, spread, count)).mde for _ in range(400)]))
    hits = sum(paired_estimate(rounds(rng, 1 + mde, spread, count)).p_value < 0.01 for _ in range(800))
    assert 0.92 < hits / 800 < 0.98
    normal_limit = float(np.median([minimum_detectable_effect(paired_estimate(rounds(rng, 1.0, spread, count))
                                                              .standard_error) for _ in range(400)]))
    if count == 8:  # what the normal limit would have claimed: a third too small
        assert sum(paired_estimate(rounds(rng, 1 + normal_limit, spread, count)).p_value < 0.01
                   for _ in range(800)) / 800 < 0.85


def test_the_exact_p_matches_scipys_exact_test_beyond_fifty_rounds_too() -> None:
    """SciPy's "auto" switches to the normal approximation above 50 values; this p stays exact wherever no two
    rounds tie, so that a p reported next to "exact" is exact."""
    rng = np.random.default_rng(13)
    for count in (9, 30, 70):
        values = rng.normal(0.004, 0.02, count)
        exact = stats.wilcoxon(values, method="exact").pvalue
        assert signed_rank_p(values) == pytest.approx(exact, rel=1e-9)
    tied = np.array([0.01, -0.01, 0.02, 0.02, 0.03, 0.0, 0.04, 0.05])  # ties and a zero: SciPy's corrected p
    assert signed_rank_p(tied) == pytest.approx(stats.wilcoxon(tied, zero_method="wilcox").pvalue)


def test_the_point_estimate_always_lies_inside_its_interval() -> None:
    rng = np.random.default_rng(14)
    for _ in range(300):
        count = int(rng.integers(2, 40))
        values = rng.standard_t(2, count) * rng.uniform(0.001, 0.1) + rng.normal(0, 0.05)
        estimate = paired_estimate(values)
        assert estimate.ci_low <= estimate.ratio <= estimate.ci_high


def test_a_a_with_known_noise_is_rarely_called_slower_and_never_with_a_clear_interval() -> None:
    rng = np.random.default_rng(5)
    verdicts = [ab_verdict(paired_estimate(rounds(rng, 1.0, 0.01, 10)), 0.05)[0] for _ in range(1000)]
    assert verdicts.count("slower") / len(verdicts) <= 0.01
    assert verdicts.count("faster") / len(verdicts) <= 0.01
    assert verdicts.count("unchanged") / len(verdicts) > 0.95  # sd 1 %, 10 rounds: MDE ~1.7 %, well under 5 %


def test_noise_too_large_for_the_threshold_cannot_tell_rather_than_pass() -> None:
    estimate = paired_estimate(rounds(np.random.default_rng(6), 1.0, 0.10, 8))
    verdict, why = ab_verdict(estimate, 0.05)
    assert estimate.mde > 0.05
    assert verdict == "cannot tell" and "reaches past ±5%" in why


def test_a_significant_change_below_half_the_threshold_is_unchanged_and_says_so() -> None:
    estimate = paired_estimate(rounds(np.random.default_rng(7), 1.01, 0.001, 20))
    assert estimate.p_value < 1e-5  # every round the same sign: the exact test's 2 / 2^20
    verdict, why = ab_verdict(estimate, 0.05)
    assert verdict == "unchanged" and "below" in why


def test_point_estimate_always_inside_its_interval() -> None:
    rng = np.random.default_rng(8)
    for _ in range(500):
        values = rng.standard_t(2, rng.integers(2, 30)) * rng.uniform(0.001, 0.3)
        estimate = paired_estimate(values)
        assert estimate.ci_low <= estimate.ratio <= estimate.ci_high


def test_one_round_has_no_interval_and_no_detectable_effect() -> None:
    estimate = paired_estimate([0.02])
    assert estimate.mde == math.inf and estimate.ci_high == math.inf
    assert ab_verdict(estimate, 0.05)[0] == "cannot tell"
    with pytest.raises(ValueError):
        paired_estimate([])
    with pytest.raises(ValueError):
        paired_estimate([0.1, float("nan")])


def test_slice_order_is_random_balanced_and_reproducible_under_a_seed() -> None:
    first = slice_orders(np.random.default_rng([7, 1]), 40)
    again = slice_orders(np.random.default_rng([7, 1]), 40)
    other = slice_orders(np.random.default_rng([8, 1]), 40)
    assert first == again and first != other
    assert len(first) == 40
    assert all(first[i] != first[i + 1] for i in range(0, 40, 2))  # each block of two has one of each order
    assert 0 < sum(first[i] for i in range(0, 40, 2)) < 20  # which one comes first varies
    assert len(slice_orders(np.random.default_rng(0), 3)) == 4


def test_unchanged_needs_an_interval_inside_the_threshold_not_just_a_small_mde() -> None:
    """A mean of +3 % that just misses significance, its interval reaching +5.3 %: not "unchanged" (an A/B that
    could hide a 5 % slowdown must not clear the case), but "cannot tell"."""
    rng = np.random.default_rng(12)
    values = rng.normal(0, 1, 30)
    values = (values - values.mean()) / values.std(ddof=1) * 0.06 + math.log(1.03)  # mean +3 %, sd 6 %
    estimate = paired_estimate(values)
    assert estimate.ci_high > 1.05 and estimate.p_value > 0.01
    assert ab_verdict(estimate, 0.05)[0] == "cannot tell"


def test_fewer_than_eight_rounds_cannot_call_anything_slower() -> None:
    """The exact signed-rank test cannot reach p < 0.01 with seven rounds: even a 50 % change is "cannot tell"
    there, with no detectable effect, rather than a verdict the test cannot back."""
    estimate = paired_estimate(rounds(np.random.default_rng(10), 1.5, 0.01, 7))
    assert estimate.p_value >= 0.01 and estimate.mde == math.inf
    assert ab_verdict(estimate, 0.05)[0] == "cannot tell"
    assert ab_verdict(paired_estimate(rounds(np.random.default_rng(10), 1.5, 0.01, 8)), 0.05)[0] == "slower"


def test_one_bad_round_does_not_hide_the_answer() -> None:
    """Measured on the development VM: one pair of workers of ten at +30 %, the rest within ±2.5 %. The rank
    estimate and interval stay put; a mean and t-interval would be dragged and widened past the threshold."""
    values = [*rounds(np.random.default_rng(11), 1.0, 0.005, 12), math.log(1.30)]
    estimate = paired_estimate(values)
    assert abs(estimate.ratio - 1) < 0.01 and ab_verdict(estimate, 0.05)[0] == "unchanged"
    t_half = stats.t.ppf(0.975, 12) * np.std(values, ddof=1) / math.sqrt(13)
    assert math.exp(np.mean(values) + t_half) > 1.05  # what the t-interval would have said: cannot tell


def test_the_exact_signed_rank_distribution() -> None:
    """P(T+ <= 3) at eight rounds is 5/256 (the subsets {}, {1}, {2}, {3}, {1, 2}), the textbook value that puts the
    95 % interval at the 4th Walsh average from each end."""
    cdf = signed_rank_cdf(8)
    assert cdf[3] == pytest.approx(5 / 256) and cdf[-1] == pytest.approx(1.0)
    assert len(cdf) == 8 * 9 // 2 + 1


def test_side_figures_read_as_the_paired_ratio_on_a_bimodal_machine() -> None:
    """Measured on silero_vad: the machine's speed jumps between two modes (~0.15 and ~0.25 ms), both sides tracking
    it, new ~7 % slower in each pair, and about half the slices in each mode. Which mode a side's median falls in
    is then decided by a slice or two: there 0.160 vs 0.242 ms, read as 51 % slower beside a paired 1.068. Here
    one pair straddles the switch (its base slice before it, its new slice after): the medians read ~50 %, the
    geometric means what the pairs say."""
    rng = np.random.default_rng(3)
    base = np.array([0.15] * 31 + [0.27] * 29) * np.exp(rng.normal(0, 0.005, 60))
    new = base * 1.068 * np.exp(rng.normal(0, 0.003, 60))
    new[30] = 0.27 * 1.068  # the machine switched modes between this pair's two slices
    (base_median, base_geomean), (new_median, new_geomean) = side_figures(list(base)), side_figures(list(new))
    assert new_median / base_median > 1.3  # the medians mislead: why the tables do not print them
    assert new_geomean / base_geomean == pytest.approx(1.068, rel=0.015)
    assert side_figures([0.0, 2.0, 8.0]) == (2.0, pytest.approx(4.0))  # a zero slice (no timer tick) left out
