"""results.stats against hand-computed values and SciPy; results.store' files; harness.measure's loops."""

from __future__ import annotations

import json
import math
import threading
import time

import numpy as np
import pytest

from harness.measure import MeasureSettings, concurrent_loop, timed_loop, warm_up
from results.stats import coefficient_of_variation, latency_summary_ms, median_ci_ms
from results.store import RunStore, benchmark_json, new_run_dir, read_records
from scenario.defaults import MEASURE_DEFAULTS
from tests.records import make_record

MS = 1_000_000  # ns per ms

# --- latency summary ---------------------------------------------------------------------------------------


def test_summary_of_one_to_hundred_ms():
    summary = latency_summary_ms([i * MS for i in range(1, 101)])
    # linear interpolation between order statistics: position (n - 1) * q
    expected = {"p50": 50.5, "p90": 90.1, "p95": 95.05, "p99": 99.01, "mean": 50.5, "min": 1.0, "max": 100.0,
                "q1": 25.75, "q3": 75.25, "iqr": 49.5,
                "std": math.sqrt(100 * 101 / 12)}  # sample std (ddof=1) of 1..n is sqrt(n(n+1)/12)
    assert summary.keys() >= expected.keys()
    for key, value in expected.items():
        assert summary[key] == pytest.approx(value, rel=1e-12), key


def test_summary_std_uses_ddof_1():
    summary = latency_summary_ms([2 * MS, 4 * MS, 4 * MS, 4 * MS, 5 * MS, 5 * MS, 7 * MS, 9 * MS])
    # population std of this classic sample is 2; the sample std is 2 * sqrt(8/7)
    assert summary["std"] == pytest.approx(2 * math.sqrt(8 / 7))
    assert summary["mean"] == pytest.approx(5.0)


def test_summary_of_unsorted_sample_equals_sorted():
    rng = np.random.default_rng(3)
    samples = rng.integers(1_000, 50_000, 501)
    unsorted, ordered = latency_summary_ms(samples.tolist()), latency_summary_ms(np.sort(samples).tolist())
    assert unsorted == pytest.approx(ordered, rel=1e-12)  # equal up to the order of floating-point sums


def test_summary_of_single_and_empty_samples():
    single = latency_summary_ms([3 * MS])
    assert single["std"] == 0.0
    assert single["p50"] == single["p99"] == single["min"] == single["max"] == 3.0
    with pytest.raises(ValueError, match="no samples"):
        latency_summary_ms([])


# --- the within-run interval of the median ----------------------------------------------------------------------


def test_median_ci_covers_the_true_median_of_independent_samples():
    """With independent samples (so independent blocks), the order-statistic interval of 20 block medians covers
    the true median at least 95 % of the time (it is conservative: the binomial's steps)."""
    rng = np.random.default_rng(1)
    covered = sum(ci["low"] <= 1.0 <= ci["high"] for ci in (
        median_ci_ms((rng.lognormal(0.0, 0.3, 2000) * MS).astype(np.int64).tolist()) for _ in range(400)))
    assert covered / 400 >= 0.93


def test_median_ci_shows_a_run_whose_speed_moved_instead_of_hiding_it():
    """A run whose machine slowed by 20 % halfway: an interval from 10^4 samples treated as independent reads
    ±0.5 %; the one from time blocks spans both speeds and says it is within this run."""
    rng = np.random.default_rng(2)
    run = np.concatenate([rng.lognormal(0.0, 0.05, 5000), rng.lognormal(np.log(1.2), 0.05, 5000)])
    ci = median_ci_ms((run * MS).astype(np.int64).tolist())
    assert ci["high"] - ci["low"] > 0.1
    assert ci["method"].startswith("within this run") and "20 time-block medians" in ci["method"]


@pytest.mark.parametrize("n", [2, 3, 10, 11, 1000])
def test_median_ci_contains_the_median(n):
    samples_ns = (np.random.default_rng(7).exponential(1.0, n) * MS).astype(np.int64)
    ci = median_ci_ms(samples_ns.tolist())
    median = float(np.median(samples_ns / 1e6))
    assert ci["low"] <= median <= ci["high"]
    assert ci["low"] >= samples_ns.min() / 1e6 and ci["high"] <= samples_ns.max() / 1e6


def test_median_ci_narrows_with_more_samples():
    rng = np.random.default_rng(11)
    widths = []
    for n in (51, 501, 5001):
        ci = median_ci_ms((rng.lognormal(0.0, 0.3, n) * MS).astype(np.int64).tolist())
        widths.append(ci["high"] - ci["low"])
    assert widths[0] > widths[1] > widths[2] > 0


def test_median_ci_lower_confidence_is_narrower():
    samples_ns = (np.random.default_rng(5).lognormal(0.0, 0.3, 301) * MS).astype(np.int64).tolist()
    wide, narrow = median_ci_ms(samples_ns, 0.99), median_ci_ms(samples_ns, 0.5)
    assert wide["low"] <= narrow["low"] <= narrow["high"] <= wide["high"]
    assert (wide["high"] - wide["low"]) > (narrow["high"] - narrow["low"])


def test_median_ci_of_constant_and_empty_samples():
    constant = median_ci_ms([2_500_000] * 50)
    assert constant["low"] == constant["high"] == 2.5
    empty = median_ci_ms([])
    assert math.isnan(empty["low"]) and math.isnan(empty["high"])


def test_coefficient_of_variation():
    assert coefficient_of_variation([1.0, 2.0, 3.0]) == pytest.approx(0.5)  # std 1 (ddof 1) / mean 2
    assert coefficient_of_variation([4.0, 4.0, 4.0]) == 0.0
    assert coefficient_of_variation([10.0, 12.0]) == pytest.approx(math.sqrt(2) / 11)


# --- results store -----------------------------------------------------------------------------------------


def _record(case_id, samples_ns, status="passed"):
    return make_record(case_id, samples_ns=samples_ns, status=status, scenario="unit", model="digits_cnn",
                       backend="onnxruntime_cpu", throughput_ips=1.0, init_ms=1.0, peak_rss_mb=1.0, env_id="abc")


def test_benchmark_json_stats_are_the_samples_in_seconds():
    samples = [i * MS for i in range(1, 101)]
    document = benchmark_json([_record("a", samples), _record("skipped-one", [], status="skipped")],
                              {"env_id": "abc", "machine": {"arch": "x86_64"}})
    assert [b["name"] for b in document["benchmarks"]] == ["a"]  # no samples, no benchmark entry
    bench = document["benchmarks"][0]
    stats = bench["stats"]
    assert stats["rounds"] == 100
    assert stats["min"] == pytest.approx(0.001) and stats["max"] == pytest.approx(0.1)
    assert stats["mean"] == pytest.approx(0.0505) and stats["median"] == pytest.approx(0.0505)
    assert stats["stddev"] == pytest.approx(math.sqrt(100 * 101 / 12) / 1000)
    assert stats["q1"] == pytest.approx(0.02575) and stats["q3"] == pytest.approx(0.07525)
    assert stats["iqr"] == pytest.approx(0.0495)
    assert stats["total"] == pytest.approx(5.05)
    assert stats["ops"] == pytest.approx(1 / 0.0505)
    assert stats["iqr_outliers"] == 0
    assert bench["fullname"] == "unit::a" and bench["group"] == "digits_cnn"
    assert bench["extra_info"]["status"] == "passed"
    assert document["machine_info"]["accelbench_env_id"] == "abc"
    json.dumps(document)  # must serialise: pytest-benchmark reads it as JSON


def test_benchmark_json_counts_iqr_outliers():
    samples = [10 * MS] * 20 + [11 * MS] * 20 + [500 * MS]
    stats = benchmark_json([_record("a", samples)], {})["benchmarks"][0]["stats"]
    assert stats["iqr_outliers"] == 1
    assert stats["hd15iqr"] == pytest.approx(0.011)


def test_read_records_skips_a_torn_last_line(tmp_path):
    store = RunStore(tmp_path / "run")
    store.open({"env_id": "abc"}, {"scenarios": ["unit"]})
    store.append(_record("first", [MS]))
    store.append(_record("second", [2 * MS]))
    whole = json.dumps(_record("third", [3 * MS]).to_json())
    with open(store.results_path, "a", encoding="utf-8") as handle:
        handle.write(whole[: len(whole) // 2])  # the run was killed mid-write
    assert [r.case_id for r in read_records(store.results_path)] == ["first", "second"]
    assert [r.case_id for r in store.records()] == ["first", "second"]
    assert json.loads((store.run_dir / "env.json").read_text()) == {"env_id": "abc"}


def test_read_records_of_a_missing_file_is_empty(tmp_path):
    assert read_records(tmp_path / "nothing.jsonl") == []


def test_new_run_dirs_do_not_collide(tmp_path):
    first = new_run_dir(tmp_path, "smoke")
    first.mkdir()
    second = new_run_dir(tmp_path, "smoke")
    assert second != first and second.name.startswith(first.name)


# --- measurement loops -------------------------------------------------------------------------------------


def _sleeper(seconds):
    def call():
        time.sleep(seconds)

    return call


def test_timed_loop_stops_at_min_runs_when_runs_take_longer():
    loop = timed_loop(_sleeper(0.002), min_runs=15, min_seconds=0.001, max_seconds=10)
    assert loop.runs == 15  # min_seconds was met long before; it stops at the first moment both are met
    assert all(sample >= 2_000_000 for sample in loop.samples_ns)  # a sample is the whole call
    assert loop.wall_ns >= sum(loop.samples_ns)
    assert loop.cpu_ns < loop.wall_ns  # sleeping costs no CPU


def test_timed_loop_runs_until_min_seconds_when_runs_are_fast():
    loop = timed_loop(lambda: None, min_runs=3, min_seconds=0.05, max_seconds=10)
    assert loop.runs > 3
    assert loop.wall_ns >= 50_000_000
    assert loop.wall_ns < 10 * 1e9  # stopped by min_seconds, not by the cap


def test_timed_loop_is_capped_by_max_seconds():
    loop = timed_loop(_sleeper(0.01), min_runs=1_000_000, min_seconds=0.0, max_seconds=0.1)
    assert 1 <= loop.runs < 1_000_000
    assert loop.runs <= 11  # each run is at least 10 ms: the loop stops at the first sample past the cap
    assert loop.wall_ns >= 100_000_000


def test_warm_up_meets_both_runs_and_seconds():
    calls = []
    runs, seconds = warm_up(lambda: calls.append(1), runs=7, seconds=0.0)
    assert runs == len(calls) == 7
    runs, seconds = warm_up(_sleeper(0.001), runs=1, seconds=0.05)
    assert runs > 1 and seconds >= 0.05
    runs, seconds = warm_up(_sleeper(0.005), runs=5, seconds=0.001)
    assert runs == 5 and seconds >= 0.025


def test_concurrent_loop_collects_samples_from_both_streams():
    threads_seen = [set(), set()]

    def stream_call(index):
        def call():
            threads_seen[index].add(threading.get_ident())
            time.sleep(0.002)

        return call

    loop = concurrent_loop([stream_call(0), stream_call(1)], min_runs=20, min_seconds=0.05, max_seconds=10)
    assert len(loop.per_stream_runs) == 2
    assert all(runs > 0 for runs in loop.per_stream_runs)
    assert sum(loop.per_stream_runs) == loop.runs >= 20
    assert loop.wall_ns >= 50_000_000
    assert all(sample >= 2_000_000 for sample in loop.samples_ns)
    # each stream ran in a thread of its own, and the two overlapped: more runs than one stream could do
    assert len(threads_seen[0]) == len(threads_seen[1]) == 1 and threads_seen[0] != threads_seen[1]
    assert sum(loop.samples_ns) > loop.wall_ns


def test_concurrent_loop_is_capped_by_max_seconds():
    loop = concurrent_loop([_sleeper(0.01)] * 2, min_runs=1_000_000, min_seconds=0.0, max_seconds=0.1)
    assert loop.runs < 1_000_000
    assert 100_000_000 <= loop.wall_ns < 2e9


def test_measure_settings_from_dict_ignores_other_keys():
    settings = MeasureSettings.from_dict({"min_runs": 3, "timeout_s": 9, "memory_limit_mb": 100, "streams": 4})
    assert (settings.min_runs, settings.streams, settings.min_seconds) == (3, 4, MEASURE_DEFAULTS["min_seconds"])
