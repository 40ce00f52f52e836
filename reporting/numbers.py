"""Numbers as both the console and the HTML pages print them, so a figure reads the same in each."""

from __future__ import annotations

import math
from typing import Any


def fmt_number(value: float | None, digits: int = 3) -> str:
    """A number at about `digits` significant figures, thousands grouped; "-" for a missing one."""
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}" if value < 1 else f"{value:.{max(digits - len(str(int(value))), 0)}f}"


def ab_figures(record: Any) -> dict[str, str]:
    """An A/B record's ratio, interval, p and MDE as text ("-" where there is none): the console's table and the
    report's print the same strings. Each side's figure is the geometric mean of its slice medians (records from
    before it: the median), so that the two read as the ratio beside them says."""
    interval = "-"
    if record.ci_low is not None and record.ci_high is not None:
        interval = f"{record.ci_low:.3f}–{record.ci_high:.3f}"
    mde = "-" if record.mde is None or not math.isfinite(record.mde) else f"{record.mde:.1%}"
    return {"ratio": "-" if record.ratio is None else f"{record.ratio:.3f}", "interval": interval,
            "p": "-" if record.p_value is None else f"{record.p_value:.2g}", "mde": mde,
            "base_ms": fmt_number(_typical_ms(record.base)), "new_ms": fmt_number(_typical_ms(record.new))}


def _typical_ms(side: Any) -> float | None:
    return side.median_ms if side.geomean_ms is None else side.geomean_ms


def fmt_duration(seconds: float) -> str:
    """A duration as a reader says it: "42 s", "2 min 31 s"."""
    whole = round(seconds)
    return f"{whole} s" if whole < 60 else f"{whole // 60} min {whole % 60} s"


def _ratio(value: float) -> str:
    return "∞" if not math.isfinite(value) else f"{value:.2f}"


def speedup_text(speedup: Any, reference: str = "baseline") -> str:
    """A speed-up as every table, cell and chart of the console and the report prints it (reporting.baseline's
    Speedup; "-" for None).

    A race's ratio shows its interval, "1.46× [1.41, 1.51]"; one whose interval lies wholly inside ±threshold
    reads "≈ baseline (±x %)", x the interval's largest distance from 1, so a tie is never called faster; a ratio
    the race could not settle says "(cannot tell)". A ratio of p50s measured minutes apart is labelled
    "sequential" (and "far outside the noise" for a case left out of the race for it). ``reference`` names what
    the ratio is against where that is not the group's baseline (the console's "× fp32" column).
    """
    if speedup is None:
        return "-"
    if speedup.is_baseline:
        return reference
    if speedup.source != "race":
        far = " (far outside the noise)" if speedup.source != "sequential" else ""
        return f"{speedup.value:.2f}× sequential{far}"
    if speedup.within_threshold:
        reach = max(speedup.high - 1, 1 - speedup.low) if speedup.low is not None and speedup.high is not None \
            and math.isfinite(speedup.high) else speedup.threshold or 0.0
        return f"≈ {reference} (±{reach * 100:.1f} %)"
    interval = "" if speedup.low is None or speedup.high is None else \
        f" [{_ratio(speedup.low)}, {_ratio(speedup.high)}]"
    return f"{speedup.value:.2f}×{interval}" + (" (cannot tell)" if speedup.verdict == "cannot tell" else "")
