"""`accelbench compare`'s statistics and verdicts, and change-point detection, on data whose truth is known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from results.record import Record
from tests.records import make_record
from tracking.changepoints import change_points
from tracking.compare import (
    TimingChange,
    accuracy_changes,
    block_medians,
    compare_runs,
    timing_change,
    timing_verdict,
)

MACHINE = {"cpu_model": "CPU A", "cpu_logical": 2, "memory_gb": 24, "arch": "x86_64", "gpu": None}
ENV = {"machine": MACHINE, "libraries": {"onnxruntime": "1.32.0"}}


def samples(median_ms: float, n: int = 5000, seed: int = 0, spread: float = 0.05) -> list[int]:
    rng = np.random.default_rng(seed)
    return (median_ms * 1e6 * np.exp(rng.normal(0, spread, n))).astype(np.int64).tolist()


def record(case_id: str, median_ms: float | None, seed: int = 0, **extra) -> Record:
    """A case measured around `median_ms` (None: skipped)."""
    measured = samples(median_ms, seed=seed) if median_ms is not None else None
    return make_record(case_id, samples_ns=measured, backend_options={"threads": 2}, **extra)


def test_block_medians_cut_the_run_in_order() -> None:
    assert block_medians(list(range(100)), blocks=4).tolist() == [12.0, 37.0, 62.0, 87.0]
    assert block_medians([5, 1, 3], blocks=20).tolist() == [5.0, 1.0, 3.0]  # fewer samples than blocks


def test_a_real_slowdown_is_slower_and_noise_is_unchanged() -> None:
    same = timing_change(samples(2.0, seed=1), samples(2.0, seed=2))
    assert 0.99 < same.ratio < 1.01 and same.ci_low < 1 < same.ci_high and same.p_value > 0.01
    assert timing_verdict(same, min_effect=0.025, alpha=0.01) == "unchanged"
    slower = timing_change(samples(2.0, seed=1), samples(2.1, seed=2))
    assert slower.ratio == pytest.approx(1.05, abs=0.01) and slower.ci_low > 1.0 and slower.p_value < 1e-6
    assert slower.cliffs_delta == 1.0  # every block of the new run is slower than every block of the base
    assert timing_verdict(slower, min_effect=0.025, alpha=0.01) == "slower"
    faster = timing_change(samples(2.1, seed=1), samples(2.0, seed=2))
    assert timing_verdict(faster, min_effect=0.025, alpha=0.01) == "faster"


def test_the_test_counts_blocks_not_samples() -> None:
    """A 0.3 % shift over 10^5 samples: a rank test on raw samples calls it significant; the block test does not
    count 10^5 autocorrelated samples as 10^5 observations."""
    base, new = samples(2.0, n=100_000, seed=1), samples(2.006, n=100_000, seed=2)
    assert mannwhitneyu(new, base).pvalue < 1e-6
    change = timing_change(base, new)
    assert change.base_blocks == change.new_blocks == 20
    assert timing_verdict(change, min_effect=0.025, alpha=0.01) == "unchanged"


@pytest.mark.parametrize(("ratio", "p", "low", "high", "expected"), [
    (1.10, 0.001, 1.05, 1.15, "slower"),
    (1.10, 0.2, 0.95, 1.20, "unchanged"),  # large but not significant
    (1.01, 0.001, 1.005, 1.015, "unchanged"),  # significant but under the minimum effect
    (0.90, 0.001, 0.85, 0.95, "faster"),
])
def test_verdict_needs_evidence_and_size(ratio, p, low, high, expected) -> None:
    change = TimingChange(ratio, low, high, p, 0.0, 20, 20)
    assert timing_verdict(change, min_effect=0.025, alpha=0.01) == expected


def test_cases_that_cannot_be_compared_say_why() -> None:
    base = {"a": record("a", 2.0), "b": record("b", 2.0), "c": record("c", None), "gone": record("gone", 1.0)}
    new = {"a": record("a", 2.0, seed=3), "b": record("b", 2.0, batch_size=4), "c": record("c", 2.0),
           "added": record("added", 1.0)}
    results = {r.case_id: r for r in compare_runs(base, new, ENV, ENV, blocks_only=True)}
    assert results["a"].verdict == "unchanged"
    assert "batch_size differs" in results["b"].reason
    assert results["c"].reason == "base skipped: why c" and not results["c"].measured_in_neither
    assert results["gone"].verdict == "missing" and results["added"].reason == "not in the base run"
    assert not results["gone"].regressed and not results["c"].regressed
    other_machine = {**ENV, "machine": {**MACHINE, "cpu_logical": 16}}
    assert "different machines" in compare_runs(base, new, ENV, other_machine)[0].reason
    assert compare_runs(base, new, ENV, other_machine, any_machine=True, blocks_only=True)[0].verdict == "unchanged"
    upgraded = {**ENV, "libraries": {"onnxruntime": "1.33.0"}}
    assert "library versions differ (onnxruntime" in compare_runs(base, new, ENV, upgraded)[0].reason


def test_a_case_that_no_longer_runs_is_a_regression() -> None:
    crashed = record("a", None, status="failed", reason="worker crashed with SIGSEGV")
    result = compare_runs({"a": record("a", 2.0)}, {"a": crashed}, ENV, ENV)[0]
    assert result.verdict == "broken" and result.regressed and "SIGSEGV" in result.reason


def test_too_few_samples_for_the_test_are_not_called_unchanged() -> None:
    base = make_record("a", samples_ns=[1_000_000] * 4, backend_options={"threads": 2})
    # twice as slow, but 4 blocks cannot reach p < 0.01
    new = make_record("a", samples_ns=[2_000_000] * 4, backend_options={"threads": 2})
    result = compare_runs({"a": base}, {"a": new}, ENV, ENV)[0]
    assert result.verdict == "not comparable" and "too few samples" in result.reason


def test_accuracy_changes_any_top1_loss_is_worse() -> None:
    before = make_record(accuracy={"top1": 0.9733, "cosine_min": 0.999990})
    after = make_record(accuracy={"top1": 0.9689, "cosine_min": 0.999991})
    changes = accuracy_changes(before, after)
    assert changes["top1"]["verdict"] == "worse" and changes["top1"]["change"] == pytest.approx(-0.0044)
    assert changes["cosine_min"]["verdict"] == "same"  # float noise in the 6th digit


def test_a_five_percent_step_is_found_at_its_run() -> None:
    rng = np.random.default_rng(7)
    series = 2.0 * np.exp(rng.normal(0, 0.01, 30))
    series[17:] *= 1.05
    found = change_points(series)
    assert [point.index for point in found] == [17]
    assert found[0].ratio == pytest.approx(1.05, abs=0.015)


def test_noise_alone_has_no_change_point_and_tiny_steps_are_ignored() -> None:
    flagged = sum(bool(change_points(2.0 * np.exp(np.random.default_rng(seed).normal(0, 0.01, 30))))
                  for seed in range(20))
    assert flagged <= 1  # at most one false step in twenty noisy series (the 200-series rate was 1/200)
    tiny = np.r_[np.full(15, 2.0), np.full(15, 2.02)]  # a clean 1 % step: real, but under min_step
    assert change_points(tiny) == []


def test_a_noisy_case_needs_a_change_beyond_its_run_to_run_noise() -> None:
    from tracking.compare import required_change, run_to_run_sigma

    steady = [2.0 * (1 + 0.002 * (-1) ** i) for i in range(10)]  # ±0.2 % between runs
    noisy = [2.0 * (1 + 0.03 * (-1) ** i) for i in range(10)]  # ±3 %
    assert run_to_run_sigma(steady[:4]) is None  # too few runs to say
    assert required_change(0.025, run_to_run_sigma(steady)) == 0.025  # the minimum effect rules
    assert required_change(0.025, run_to_run_sigma(noisy)) > 0.10
    base, new = {"a": record("a", 2.0, seed=1)}, {"a": record("a", 2.1, seed=2)}  # +5 %
    assert compare_runs(base, new, ENV, ENV, noise={"a": run_to_run_sigma(steady)})[0].verdict == "slower"
    result = compare_runs(base, new, ENV, ENV, noise={"a": run_to_run_sigma(noisy)})[0]
    assert result.verdict == "unchanged" and result.required_change > 0.10


def test_without_a_known_run_to_run_spread_compare_cannot_tell_and_says_what_it_could_see() -> None:
    """Two runs at different times on a shared machine differ by tens of per cent that no block shows: with no
    history of the case, a 5 % change and no change alike get "cannot tell", the smallest change the blocks alone
    could show, and the way to an answer."""
    base, same, slower = record("a", 2.0, seed=1), record("a", 2.0, seed=2), record("a", 2.1, seed=2)
    for new in (same, slower):
        result = compare_runs({"a": base}, {"a": new}, ENV, ENV)[0]
        assert result.verdict == "cannot tell" and not result.regressed
        assert "no run-to-run spread" in result.reason and "accelbench ab" in result.reason
        assert result.timing is not None and result.required_change is None
    floor = float(result.reason.split("change under ")[1].split("%")[0])
    assert 0.1 < floor < 5  # 20 blocks of 250 samples with 5 % spread: under a per cent or so, a lower bound


def test_the_point_estimate_lies_inside_its_own_interval() -> None:
    """The change and its interval come from one estimator (Hodges-Lehmann on block medians): with skewed,
    bimodal or short runs, the point never leaves the interval (it did when the ratio came from all samples and
    the interval from bootstrapped block medians: 0.6685 against 0.218-0.653)."""
    rng = np.random.default_rng(9)
    for _ in range(300):
        n_base, n_new = rng.integers(5, 400, 2)
        base = np.exp(rng.normal(0, rng.uniform(0.01, 1.0), n_base)) * rng.choice([1, 3], n_base)
        new = np.exp(rng.normal(rng.normal(0, 0.3), rng.uniform(0.01, 1.0), n_new)) * rng.choice([1, 3], n_new)
        change = timing_change((base * 1e6).astype(np.int64).tolist(), (new * 1e6).astype(np.int64).tolist())
        assert change.ci_low <= change.ratio <= change.ci_high


def test_an_invalid_base_is_named_and_cases_measured_in_neither_run_are_flagged() -> None:
    invalid = record("a", 2.0, seed=1, status="invalid", reason="only 3 runs in 0.1 s")
    result = compare_runs({"a": invalid}, {"a": record("a", 2.0, seed=2)}, ENV, ENV, blocks_only=True)[0]
    assert result.verdict == "unchanged" and "base run's measurement is INVALID (only 3 runs" in result.reason
    skipped = record("b", None)
    failed = record("b", None, status="failed", reason="no artefact")
    result = compare_runs({"b": skipped}, {"b": failed}, ENV, ENV)[0]
    assert result.verdict == "not comparable" and result.measured_in_neither
