"""Change points in a series of medians over time: where a case's speed stepped, and by how much.

PELT (ruptures) on log(median) with a least-squares cost, i.e. a piecewise-constant (step) model like asv's
Potts-model step detection; log so that a step is a ratio whatever the case's scale. The penalty is BIC-like,
3·σ²·ln(n) per change, with σ the noise estimated robustly from the median absolute successive difference, so
the detector adapts to each case's own noise. A detected step smaller than `min_step` is dropped: a real but
tiny shift is not a regression anyone acts on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import ruptures

PENALTY_FACTOR = 3.0  # 200 synthetic series, 1 % noise: a 5 % step found at its index 197×, noise alone flagged 1×


@dataclass
class ChangePoint:
    index: int  # the first point after the step
    before: float  # median of the segment before
    after: float  # median of the segment after

    @property
    def ratio(self) -> float:
        return self.after / self.before


def noise_sigma(log_values: np.ndarray) -> float:
    """The noise of a series around its steps: the median absolute successive difference, scaled to a
    Gaussian σ (a step moves one difference only, so it barely moves the median)."""
    if log_values.size < 3:
        return 0.0
    # not centred on the differences' median: a step moves one difference, and alternating noise would centre
    # every difference on itself and read as none
    return float(1.4826 * np.median(np.abs(np.diff(log_values))) / np.sqrt(2))


def change_points(values: list[float] | np.ndarray, min_step: float = 0.02, min_size: int = 2) -> list[ChangePoint]:
    """Steps in a series of positive values (oldest first), each at least `min_step` (2 %) in size."""
    series = np.asarray(values, dtype=np.float64)
    if series.size < 2 * min_size or np.any(series <= 0):
        return []
    logs = np.log(series)
    sigma = max(noise_sigma(logs), 1e-4)  # a noiseless series still needs a finite penalty
    penalty = PENALTY_FACTOR * sigma**2 * np.log(series.size)
    ends = ruptures.Pelt(model="l2", min_size=min_size, jump=1).fit(logs.reshape(-1, 1)).predict(pen=penalty)
    bounds = [0, *ends]
    found = []
    for start, cut, stop in zip(bounds[:-2], bounds[1:-1], bounds[2:], strict=True):
        before, after = float(np.median(series[start:cut])), float(np.median(series[cut:stop]))
        if abs(np.log(after / before)) >= np.log1p(min_step):
            found.append(ChangePoint(cut, before, after))
    return found
