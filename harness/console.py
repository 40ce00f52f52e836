"""The terminal summary of a run, shared by the CLI and the pytest plugin."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table

STATUS_STYLE = {"passed": "green", "failed": "red", "invalid": "yellow", "skipped": "dim"}


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}" if value < 1 else f"{value:.{max(digits - len(str(int(value))), 0)}f}"


def summary_table(records: list[dict[str, Any]], title: str = "accelbench results") -> Table:
    table = Table(title=title, header_style="bold", show_lines=False, pad_edge=False)
    for column, justify in (("case", "left"), ("status", "left"), ("p50 ms", "right"), ("95% CI", "right"),
                            ("p99 ms", "right"), ("items/s", "right"), ("init ms", "right"),
                            ("1st ms", "right"), ("RSS MB", "right"), ("CPU %", "right"),
                            ("size MB", "right")):
        table.add_column(column, justify=justify, no_wrap=column == "case")
    for record in records:
        latency = record.get("latency_ms") or {}
        ci = record.get("median_ci_ms") or {}
        size = record.get("model_size_bytes")
        status = record["status"]
        software = (record.get("backend_info") or {}).get("software_device")
        table.add_row(
            record["case_id"] + (" [software device]" if software else ""),
            f"[{STATUS_STYLE.get(status, '')}]{status.upper() if status == 'invalid' else status}[/]",
            _fmt(latency.get("p50")),
            f"{_fmt(ci.get('low'))}–{_fmt(ci.get('high'))}" if ci else "-",
            _fmt(latency.get("p99")),
            _fmt(record.get("throughput_ips")),
            _fmt(record.get("init_ms")),
            _fmt(record.get("first_inference_ms")),
            _fmt(record.get("peak_rss_mb")),
            _fmt(record.get("cpu_percent")),
            _fmt(size / 1e6 if size else None),
        )
    return table


def make_console(stderr: bool = False) -> Console:
    """A console that keeps the table readable when output is a pipe or a CI log (rich assumes 80 columns)."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 160)


def print_summary(records: list[dict[str, Any]], run_dir: Any, console: Console | None = None) -> None:
    console = console or make_console()
    console.print(summary_table(records))
    for record in records:
        if record["status"] != "passed" and record.get("reason"):
            style = STATUS_STYLE.get(record["status"], "")
            console.print(f"[{style}]{record['status']}[/] {record['case_id']}: {record['reason']}",
                          highlight=False, soft_wrap=True)
    counts = {status: sum(r["status"] == status for r in records) for status in STATUS_STYLE}
    console.print(", ".join(f"{n} {status}" for status, n in counts.items() if n) or "no cases", highlight=False)
    console.print(f"results: {run_dir}", highlight=False, soft_wrap=True)
