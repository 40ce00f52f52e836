"""Numbers as both the console and the HTML pages print them, so a figure reads the same in each."""

from __future__ import annotations


def fmt_number(value: float | None, digits: int = 3) -> str:
    """A number at about `digits` significant figures, thousands grouped; "-" for a missing one."""
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}" if value < 1 else f"{value:.{max(digits - len(str(int(value))), 0)}f}"
