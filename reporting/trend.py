"""The trend page: every case's median over the history, per machine, with its spread and the change points
detected in it, and the commits where each step happened. Same look (and same offline guarantees) as the report.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from reporting.charts import text
from reporting.html import figure_json, render_page, write_page
from results.history import finite, read_history
from results.record import MEASURED
from tracking.changepoints import change_points

TREND_NAME = "trend.html"
COLUMNS = ["run_id", "started", "commit", "dirty", "machine_id", "machine", "scenario", "case_id", "model", "status",
           "p50_ms", "q1_ms", "q3_ms"]


def _run_label(index: int, row: Any) -> str:
    """Unique per run (a category axis merges equal labels): its rank, start and commit ("+": uncommitted)."""
    commit = (row.commit or "no commit")[:8] + ("+" if row.dirty else "")
    return f"#{index + 1} {str(row.started)[5:16].replace('T', ' ')} {commit}"


def case_figure(series: pd.DataFrame, case_id: str) -> tuple[go.Figure, list[dict[str, Any]]]:
    """p50 per run with the interquartile band, and a marker at each change point; returns the steps found."""
    x = [_run_label(index, row) for index, row in enumerate(series.itertuples(index=False))]
    steps = []
    for point in change_points(series["p50_ms"].tolist()):
        row = series.iloc[point.index]
        previous = series.iloc[point.index - 1]
        steps.append({"case": case_id, "ratio": point.ratio, "before_ms": point.before, "after_ms": point.after,
                      "commit": row["commit"] or "-", "previous_commit": previous["commit"] or "-",
                      "started": row["started"], "x": x[point.index], "run_id": row["run_id"]})
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=series["q3_ms"].tolist(), mode="lines", line={"width": 0}, showlegend=False,
                             hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=x, y=series["q1_ms"].tolist(), mode="lines", line={"width": 0}, fill="tonexty",
                             fillcolor="rgba(76,120,168,0.18)", name="q1–q3", hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=x, y=series["p50_ms"].tolist(), mode="lines+markers", name="p50",
                             line={"color": "#4c78a8"}, hovertemplate="%{x}<br>p50 %{y:.4g} ms<extra></extra>"))
    for step in steps:
        colour = "#d62728" if step["ratio"] > 1 else "#2ca02c"
        fig.add_vline(x=step["x"], line={"color": colour, "dash": "dash", "width": 1.5})
        fig.add_annotation(x=step["x"], y=1, yref="paper", showarrow=False, yanchor="bottom",
                           text=text(f"{step['ratio'] - 1:+.1%} at {str(step['commit'])[:8]}"),
                           font={"color": colour, "size": 11})
    fig.update_xaxes(type="category", tickangle=-30, tickfont={"size": 9})
    fig.update_yaxes(title_text="p50 (ms)", rangemode="tozero")
    fig.update_layout(title={"text": text(case_id), "x": 0, "font": {"size": 13}}, height=340,
                      margin={"l": 10, "r": 10, "t": 48, "b": 90}, template="plotly_white",
                      font={"family": "system-ui, sans-serif", "size": 11}, showlegend=False)
    return fig, steps


def build_trend(history: Path) -> tuple[str, list[str]]:
    frame, problems = read_history(history, COLUMNS)
    frame["scenario"] = frame["scenario"].fillna("")  # records written before records named their scenario
    measured = frame[frame["status"].isin(MEASURED) & finite(frame["p50_ms"])] if not frame.empty \
        else frame
    figures, machines, all_steps = [], [], []
    for machine_id in dict.fromkeys(measured["machine_id"]):
        of_machine = measured[measured["machine_id"] == machine_id]
        cases = []
        several = of_machine["scenario"].nunique() > 1
        for scenario, case_id in dict.fromkeys(zip(of_machine["scenario"], of_machine["case_id"], strict=True)):
            # one series per scenario and case: another scenario may measure a case of that id differently
            series = of_machine[(of_machine["scenario"] == scenario) & (of_machine["case_id"] == case_id)]
            series = series.reset_index(drop=True)
            figure, steps = case_figure(series, f"{scenario} / {case_id}" if several else case_id)
            chart_id = f"chart-{len(figures)}"
            figures.append({"id": chart_id, "json": figure_json(figure)})
            cases.append({"id": chart_id, "case": case_id, "runs": len(series), "steps": len(steps)})
            all_steps += [{**step, "machine": of_machine["machine"].iloc[0]} for step in steps]
        machines.append({"label": of_machine["machine"].iloc[0], "id": machine_id, "cases": cases,
                         "runs": of_machine["run_id"].nunique()})
    page = render_page(
        "trend.html.j2", title="accelbench trend", generated=datetime.now(UTC).isoformat(timespec="seconds"),
        history=str(history), runs=frame["run_id"].nunique() if not frame.empty else 0,
        first=str(frame["started"].min()) if not frame.empty else "-",
        last=str(frame["started"].max()) if not frame.empty else "-",
        machines=machines, figures=figures, problems=problems,
        steps=[{**step, "change": f"{step['ratio'] - 1:+.1%}", "before": f"{step['before_ms']:.4g}",
                "after": f"{step['after_ms']:.4g}"} for step in all_steps],
    )
    return page, problems


def write_trend(history: Path, out: str | Path | None = None) -> tuple[Path, list[str]]:
    """The trend page of a history folder: `out`, else HISTORY/trend.html. Returns it and the unreadable files."""
    page, problems = build_trend(history)
    return write_page(Path(out) if out else history / TREND_NAME, page), problems
