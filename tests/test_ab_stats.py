"""The A/B statistics (results.paired) on data with a known answer, and the lock-step slice order."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.lockstep import slice_orders
from results.paired import ab_verdict, minimum_detectable_effect, paired_estimate


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
    rng = np.random.default_rng(3)
    covered = sum(e.ci_low < 1.03 < e.ci_high
                  for e in (paired_estimate(rounds(rng, 1.03, 0.02, 8)) for _ in range(1000)))
    assert 0.93 < covered / 1000 < 0.97


def test_the_minimum_detectable_effect_is_detected_with_95_percent_power() -> None:
    """Simulated: a true change of exactly the MDE gives p < 0.01 in about 95 % of samples."""
    rng = np.random.default_rng(4)
    spread, count = 0.02, 10
    mde = minimum_detectable_effect(spread, count)
    hits = sum(paired_estimate(rounds(rng, 1 + mde, spread, count)).p_value < 0.01 for _ in range(1500))
    assert 0.93 < hits / 1500 < 0.98  # the bound uses the sample sd's distribution only approximately


def test_a_a_with_known_noise_is_rarely_called_slower_and_never_with_a_clear_interval() -> None:
    rng = np.random.default_rng(5)
    verdicts = [ab_verdict(paired_estimate(rounds(rng, 1.0, 0.01, 10)), 0.05)[0] for _ in range(1000)]
    assert verdicts.count("slower") / len(verdicts) <= 0.01
    assert verdicts.count("faster") / len(verdicts) <= 0.01
    assert verdicts.count("unchanged") / len(verdicts) > 0.95  # sd 1 %, 10 rounds: MDE ~1.7 %, well under 5 %


def test_noise_too_large_for_the_threshold_cannot_tell_rather_than_pass() -> None:
    estimate = paired_estimate(rounds(np.random.default_rng(6), 1.0, 0.10, 5))
    verdict, why = ab_verdict(estimate, 0.05)
    assert estimate.mde > 0.05
    assert verdict == "cannot tell" and "reaches past ±5%" in why


def test_a_significant_change_below_half_the_threshold_is_unchanged_and_says_so() -> None:
    estimate = paired_estimate(rounds(np.random.default_rng(7), 1.01, 0.001, 20))
    assert estimate.p_value < 1e-6
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


def test_the_minimum_detectable_effect_holds_its_power_at_few_rounds_too() -> None:
    """At five rounds the textbook t + t bound is optimistic (~90 % power); the noncentral t gives 95 %."""
    from results.paired import power

    for rounds in (3, 5, 8, 30):
        mde = minimum_detectable_effect(0.02, rounds)
        assert power(mde, 0.02, rounds) == pytest.approx(0.95, abs=1e-3)
