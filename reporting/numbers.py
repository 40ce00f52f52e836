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
