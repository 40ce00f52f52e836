"""The CPU-speed probe: its statistics from its own windows, and the verdict's wording at the threshold."""

from __future__ import annotations

import statistics

import pytest

from sysinfo.stability import STEADY_CV, cpu_speed_probe, describe


def test_probe_statistics_are_those_of_its_windows():
    probe = cpu_speed_probe(seconds=0.5, window_s=0.1)
    windows = probe["window_medians_us"]
    assert 4 <= probe["windows"] == len(windows) <= 6
    assert all(w > 0 for w in windows)
    assert probe["cv"] == pytest.approx(statistics.stdev(windows) / statistics.fmean(windows))
    assert probe["slowest_over_fastest"] == pytest.approx(max(windows) / min(windows))
    assert probe["steady"] == (probe["cv"] <= STEADY_CV)


def test_verdict_names_the_figures_and_what_they_mean():
    base = {"seconds": 2.0, "windows": 8, "slowest_over_fastest": 1.02}
    steady = describe({**base, "cv": 0.01, "steady": True})
    assert steady == "CPU speed steady (CV 1.0% across 8 windows in 2 s, slowest/fastest 1.02×)"
    unsteady = describe({**base, "cv": 0.2, "slowest_over_fastest": 1.9, "steady": False})
    assert unsteady.startswith("CPU speed unsteady (CV 20.0% across 8 windows in 2 s, slowest/fastest 1.90×)")
    assert "shared or throttled host" in unsteady
