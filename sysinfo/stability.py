"""How steady this machine's CPU speed is: the noise floor under every latency accelbench reports.

A shared or throttled host (a cloud VM whose hyper-thread sibling belongs to another tenant, a laptop on
battery) changes speed by tens of percent from one second to the next, and no measurement protocol can
remove that. The probe times a fixed piece of pure-Python work in short windows; the spread of the window
medians is the run-to-run noise any benchmark on this machine will show. `doctor` prints it and the
repeatability benchmark measures it in the same sitting as the cases, so a high CV can be told apart from a
harness problem.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

# Below this CV between windows, the machine is steady enough for few-percent comparisons.
STEADY_CV = 0.03


def _unit_of_work() -> int:
    total = 0
    for i in range(20_000):  # ~1-2 ms of interpreter work: short enough for many samples per window
        total += i * i
    return total


def cpu_speed_probe(seconds: float = 2.0, window_s: float = 0.25) -> dict[str, Any]:
    """Median time of the unit of work per window, over `seconds`; one thread, no allocation to speak of."""
    clock = time.perf_counter
    windows: list[float] = []
    end = clock() + seconds
    while clock() < end:
        samples = []
        window_end = min(clock() + window_s, end)
        while clock() < window_end:
            start = clock()
            _unit_of_work()
            samples.append(clock() - start)
        if samples:
            windows.append(statistics.median(samples))
    mean = statistics.fmean(windows)
    cv = statistics.stdev(windows) / mean if len(windows) > 1 else 0.0
    return {
        "seconds": seconds,
        "windows": len(windows),
        "window_medians_us": [w * 1e6 for w in windows],
        "cv": cv,
        "slowest_over_fastest": max(windows) / min(windows),
        "steady": cv <= STEADY_CV,
    }


def describe(probe: dict[str, Any]) -> str:
    """One line for people: the figure, and what it means for the numbers they are about to read."""
    figures = (f"CV {probe['cv']:.1%} across {probe['windows']} windows in {probe['seconds']:g} s, "
               f"slowest/fastest {probe['slowest_over_fastest']:.2f}×")
    if probe["steady"]:
        return f"CPU speed steady ({figures})"
    return (f"CPU speed unsteady ({figures}): a shared or throttled host; expect run-to-run differences of "
            "this size in every latency measured here")
