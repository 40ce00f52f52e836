"""Summary statistics of raw latency samples. Kept apart from measurement and presentation (as in asv)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

PERCENTILES = (50, 90, 95, 99)
CI_CONFIDENCE = 0.95


def latency_summary_ms(samples_ns: Sequence[int]) -> dict[str, float]:
    """p50/p90/p95/p99, mean, std (sample), min, max and IQR in milliseconds."""
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    if ms.size == 0:
        raise ValueError("no samples")
    p50, p90, p95, p99 = np.percentile(ms, PERCENTILES)
    q1, q3 = np.percentile(ms, (25, 75))
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p95": float(p95),
        "p99": float(p99),
        "mean": float(ms.mean()),
        "std": float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
        "min": float(ms.min()),
        "max": float(ms.max()),
        "q1": float(q1),
        "q3": float(q3),
        "iqr": float(q3 - q1),
    }


BLOCKS = 20  # time blocks a run is cut into: the unit of replication inside one run


def block_medians(samples_ns: Sequence[int] | np.ndarray, blocks: int = BLOCKS) -> np.ndarray:
    """Medians of `blocks` contiguous, equal slices of the samples in measurement order (fewer when short)."""
    samples = np.asarray(samples_ns, dtype=np.float64)
    count = min(blocks, samples.size)
    return np.array([np.median(part) for part in np.array_split(samples, count)]) if count else samples


def block_p99_range_ms(samples_ns: Sequence[int], blocks: int = BLOCKS) -> tuple[float, float] | None:
    """(lowest, highest) p99 of the run's time blocks, in ms: how far the tail moved within the run, so that a p99
    set beside a limit shows whether the limit lies inside that movement. None with under 100 samples a block (a
    block's p99 would be its maximum)."""
    samples = np.asarray(samples_ns, dtype=np.float64)
    if samples.size < 100 * blocks:
        return None
    tails = [float(np.percentile(part, 99)) / 1e6 for part in np.array_split(samples, blocks)]
    return min(tails), max(tails)


def median_ci_ms(samples_ns: Sequence[int], confidence: float = CI_CONFIDENCE) -> dict[str, Any]:
    """An interval for the run's median latency, in milliseconds, from its time blocks: *within this run* only.

    Consecutive samples are not independent (the machine's speed drifts for seconds at a time), so an interval that
    treats 10^5 samples as 10^5 observations reads ±1 % where runs of the case differ by 5-20 %. The run is cut
    into 20 time blocks; the interval is the distribution-free one for the median of their medians (order
    statistics picked by the binomial, as for any median of independent values), widened to hold the run's p50 if
    it falls outside. It still says nothing of the spread *between* runs: the history and `accelbench ab` do.
    """
    from scipy.stats import binom

    medians = np.sort(block_medians(samples_ns)) / 1e6
    n = medians.size
    if n == 0:
        return {"low": float("nan"), "high": float("nan"), "confidence": confidence, "method": "no samples"}
    p50 = float(np.median(np.asarray(samples_ns, dtype=np.float64))) / 1e6
    # the largest k with P(Binomial(n, 1/2) <= k - 1) <= alpha / 2: [x_(k), x_(n+1-k)] covers the median
    alpha = 1.0 - confidence
    k = max(int(np.searchsorted(binom.cdf(np.arange(n), n, 0.5), alpha / 2, side="right")), 1)
    k = min(k, (n + 1) // 2)
    low, high = float(medians[k - 1]), float(medians[n - k])
    return {"low": min(low, p50), "high": max(high, p50), "confidence": confidence,
            "method": f"within this run: order statistics of {n} time-block medians"}


def coefficient_of_variation(values: Sequence[float]) -> float:
    """Sample standard deviation over mean; the repeatability figure for medians of repeated runs."""
    array = np.asarray(values, dtype=np.float64)
    return float(array.std(ddof=1) / array.mean())
