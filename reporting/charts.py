"""The report's charts, one plotly figure per question, for the cases of one model on one machine.

Every string that reaches a chart (model, backend, case names come from scenarios and file names) is
HTML-escaped first: plotly renders labels as a small subset of HTML, so `<b>` in a file name would otherwise
be markup. Numbers come from the records as measured; nothing is smoothed or simulated.
"""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from reporting.baseline import round_log_ratios
from reporting.frame import config_order, latency_sketch, pareto_front
from results.paired import paired_estimate
from results.record import MEASURED

FONT = "system-ui, -apple-system, Segoe UI, Roboto, sans-serif"


def text(value: Any) -> str:
    """A label safe for plotly's HTML-subset renderer: shows as typed, is never markup."""
    return html.escape(str(value), quote=False)


def _layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(title={"text": text(title), "x": 0, "xanchor": "left", "font": {"size": 14}},
                      height=height, margin={"l": 10, "r": 10, "t": 40, "b": 40}, template="plotly_white",
                      font={"family": FONT, "size": 11}, legend={"font": {"size": 10}})
    fig.update_yaxes(automargin=True)
    fig.update_xaxes(automargin=True)
    return fig


def _case_label(row: Any, several_runs: bool) -> str:
    label = f"{row.config} · b{row.batch_size}"
    return f"{label} [{row.run}]" if several_runs else label


def _spread_is_wide(values: list[float]) -> bool:
    positive = [v for v in values if v and v > 0]
    return bool(positive) and max(positive) / min(positive) > 20


def _value_axis(update: Any, values: list[float], title: str) -> None:
    """Log scale (labels at 1, 2, 5) when values span more than 20×, so a 10 µs and a 30 ms case both read."""
    wide = _spread_is_wide(values)
    update(title_text=title + (", log scale" if wide else ""), type="log" if wide else "linear",
           dtick="D2" if wide else None)


def in_config_order(cases: pd.DataFrame) -> pd.DataFrame:
    """Cases as the matrix lists them (configuration, then batch size, then run): one row order for every chart."""
    order = config_order(cases)
    return cases.assign(_o=cases["config"].map(order.index)).sort_values(["_o", "batch_size", "run"])


def latency_figure(cases: pd.DataFrame, samples: dict[str, list[int]]) -> go.Figure | None:
    """A violin per case from its raw samples, with p50/p90/p99 marked (computed on all samples)."""
    measured = cases[cases["status"].isin(MEASURED) & cases["p50_ms"].notna()]
    if measured.empty:
        return None
    several_runs = measured["run"].nunique() > 1
    measured = in_config_order(measured)
    fig = go.Figure()
    labels, values = [], []
    for row in measured.itertuples(index=False):
        label = text(_case_label(row, several_runs))
        sketch = latency_sketch(samples.get(row.key, []))
        labels.append(label)
        values += sketch
        fig.add_trace(go.Violin(x=sketch, y=[label] * len(sketch), name=label, orientation="h", side="positive",
                                width=1.6, points=False, box_visible=True, spanmode="hard", meanline_visible=False,
                                showlegend=False, hoverinfo="x", line={"width": 1}))
    for marker, column, symbol in (("p50", "p50_ms", "line-ns-open"), ("p90", "p90_ms", "triangle-right"),
                                   ("p99", "p99_ms", "x-thin-open")):
        fig.add_trace(go.Scatter(x=measured[column].tolist(), y=labels, mode="markers", name=marker,
                                 marker={"symbol": symbol, "size": 11, "color": "#222", "line": {"width": 2}},
                                 hovertemplate=f"{marker} %{{x:.4g}} ms<extra>%{{y}}</extra>"))
    _value_axis(fig.update_xaxes, values, "latency per batch (ms), all raw samples")
    fig.update_yaxes(autorange="reversed", type="category")
    return _layout(fig, "Latency distribution per case (violin: measured samples; markers: p50, p90, p99)",
                   140 + 38 * len(labels))


def throughput_figure(cases: pd.DataFrame) -> go.Figure | None:
    """Items per second against batch size, one line per configuration (and run, when runs are merged)."""
    measured = cases[cases["status"].isin(MEASURED) & cases["throughput_ips"].notna()]
    if measured["batch_size"].nunique() < 2:  # one batch size: the matrix already says it all
        return None
    several_runs = measured["run"].nunique() > 1
    fig = go.Figure()
    for config in config_order(measured):
        for run, rows in measured[measured["config"] == config].groupby("run", sort=False):
            rows = rows.sort_values("batch_size")
            name = f"{config} [{run}]" if several_runs else config
            fig.add_trace(go.Scatter(x=rows["batch_size"].astype(str).tolist(), y=rows["throughput_ips"].tolist(),
                                     mode="lines+markers", name=text(name),
                                     hovertemplate="batch %{x}: %{y:,.4g} items/s<extra>%{fullData.name}</extra>"))
    batches = [str(b) for b in sorted(measured["batch_size"].unique())]  # not the first line's order
    fig.update_xaxes(title_text="batch size", type="category", categoryorder="array", categoryarray=batches)
    fig.update_yaxes(title_text="throughput (items/s)", rangemode="tozero")
    return _layout(fig, "Throughput against batch size", 380)


def accuracy_figure(cases: pd.DataFrame, metric: str) -> go.Figure | None:
    """Every timed case by latency per item and accuracy, with the Pareto front: the passed cases nothing else
    that passed beats on both. metric: "fidelity" (the fidelity score to the fp32 reference: one comparable figure
    per case, model_zoo.fidelity.SCORE_DEFINITION) or "top1" (task accuracy).

    INVALID cases (untrustworthy timings) and failed ones that were timed (a conversion that misses its fidelity
    guard) are drawn grey and crossed so the cost of a broken conversion stays visible, but the front never runs
    through them: a fast wrong answer is not a trade-off anyone can pick.
    """
    timed = cases[cases[metric].notna() & cases["p50_ms"].notna()]
    if timed.empty:
        return None
    several_runs = timed["run"].nunique() > 1
    fig = go.Figure()
    hover = "%{text}<br>%{x:.4g} ms/item, " + ("score" if metric == "fidelity" else metric) + \
        " %{y:.6g}<extra></extra>"
    passed = timed[timed["status"] == "passed"]
    others = timed[timed["status"] != "passed"]
    per_item = (passed["p50_ms"] / passed["batch_size"]).tolist()
    accuracy = passed[metric].tolist()
    names = [text(_case_label(row, several_runs)) + _judged(row, metric) for row in passed.itertuples(index=False)]
    if names:
        fig.add_trace(go.Scatter(x=per_item, y=accuracy, mode="markers", name="passed case", text=names,
                                 marker={"size": 9, "color": "#4c78a8", "opacity": 0.8}, hovertemplate=hover))
    if not others.empty:
        fig.add_trace(go.Scatter(
            x=(others["p50_ms"] / others["batch_size"]).tolist(), y=others[metric].tolist(), mode="markers",
            name="INVALID or failed (not on the front)",
            text=[text(f"{_case_label(row, several_runs)} ({row.status_label})") + _judged(row, metric)
                  for row in others.itertuples(index=False)],
            marker={"size": 10, "symbol": "x-thin-open", "color": "#9aa0a6", "line": {"width": 2}},
            hovertemplate=hover))
    # scores of fp32 cases differ in the 14th digit by float noise alone: compare at 9 digits
    front = pareto_front([(x, round(y, 9)) for x, y in zip(per_item, accuracy, strict=True)])
    if front:
        fig.add_trace(go.Scatter(x=[per_item[i] for i in front], y=[accuracy[i] for i in front],
                                 mode="lines+markers", name="Pareto front (passed cases)",
                                 line={"shape": "hv", "color": "#e45756", "width": 2},
                                 marker={"size": 11, "symbol": "circle-open", "color": "#e45756"},
                                 text=[names[i] for i in front], hovertemplate="%{text}<extra>Pareto front</extra>"))
    per_item_all = (timed["p50_ms"] / timed["batch_size"]).tolist()
    accuracy_all = timed[metric].tolist()
    title = {"fidelity": "Fidelity score (worst output, against the fp32 reference) against latency",
             "top1": "Task accuracy (top-1 on the held-out set) against latency"}[metric]
    _value_axis(fig.update_xaxes, per_item_all, "p50 latency per item (ms) = p50 / batch size")
    low, high = min(accuracy_all), max(accuracy_all)
    pad = max((high - low) * 0.08, 0.002 if metric == "fidelity" else 0.01)
    fig.update_yaxes(title_text={"fidelity": "fidelity score", "top1": "top-1 accuracy"}[metric],
                     range=[low - pad, min(high + pad, 1.0 + pad / 2)],
                     tickformat=".4f" if metric == "fidelity" else ".3f")
    return _layout(fig, title, 380)


def _judged(row: Any, metric: str) -> str:
    """The metric that judged the case, for the hover: "rel L2 0.0197 ≤ 0.2" (a score alone hides it)."""
    if metric != "fidelity" or not isinstance(getattr(row, "fidelity_text", None), str):
        return ""
    return f"<br>{text(row.fidelity_text)}"


def resources_figure(cases: pd.DataFrame) -> go.Figure | None:
    """Peak memory, model size (raw and gzip: pruning shows only compressed) and utilisation, per case."""
    measured = cases[cases["status"].isin(MEASURED)]
    if measured.empty:
        return None
    several_runs = measured["run"].nunique() > 1
    measured = in_config_order(measured)
    labels = [text(_case_label(row, several_runs)) for row in measured.itertuples(index=False)]
    has_gpu = measured["gpu_memory_mb"].notna().any() or measured["gpu_util_pct"].notna().any()
    titles = ["peak RSS (MB)", "model file (MB)", "CPU % (100 = one core)"] + (
        ["GPU memory (MB)", "GPU utilisation %"] if has_gpu else [])
    fig = make_subplots(rows=1, cols=len(titles), shared_yaxes=True, subplot_titles=titles,
                        horizontal_spacing=0.02)

    def bars(column: str, col: int, name: str, color: str) -> None:
        values = [None if pd.isna(v) else float(v) for v in measured[column]]
        fig.add_trace(go.Bar(x=values, y=labels, orientation="h", name=name, marker_color=color,
                             hovertemplate=f"{name} %{{x:.4g}}<extra>%{{y}}</extra>"), row=1, col=col)

    bars("peak_rss_mb", 1, "peak RSS MB", "#4c78a8")
    bars("size_mb", 2, "raw MB", "#72b7b2")
    bars("gzip_mb", 2, "gzip MB", "#54a24b")
    bars("cpu_percent", 3, "CPU %", "#f58518")
    if has_gpu:
        bars("gpu_memory_mb", 4, "GPU memory MB", "#b279a2")
        bars("gpu_util_pct", 5, "GPU util %", "#9d755d")
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_layout(barmode="group", bargap=0.25)
    for annotation in fig.layout.annotations:
        annotation.font = {"size": 11}
    return _layout(fig, "Memory, model size and utilisation", 160 + 34 * len(labels) * 1.4)


def figures_for_model(cases: pd.DataFrame, samples: dict[str, list[int]]) -> list[tuple[str, go.Figure]]:
    """The charts of one model on one machine, each with a short kind name, omitting charts without data."""
    candidates = [
        ("latency", latency_figure(cases, samples)),
        ("throughput", throughput_figure(cases)),
        ("fidelity", accuracy_figure(cases, "fidelity")),
        ("task-accuracy", accuracy_figure(cases, "top1")),
        ("resources", resources_figure(cases)),
    ]
    return [(kind, fig) for kind, fig in candidates if fig is not None]


def speedup_colour(speedup: float | None, faint: bool = False) -> str:
    """Cell background: green when faster than the baseline, red when slower, saturating at 4× either way;
    ``faint``: at half the strength, for a figure that is less sure (a sequential ratio)."""
    if speedup is None or not np.isfinite(speedup) or speedup <= 0:
        return "transparent"
    strength = min(abs(np.log2(speedup)) / 2.0, 1.0)
    if strength < 0.03:
        return "transparent"
    rgb = "46, 160, 67" if speedup > 1 else "214, 39, 40"
    return f"rgba({rgb}, {(0.12 + 0.45 * strength) * (0.5 if faint else 1.0):.2f})"


def ab_figure(record: Any) -> go.Figure | None:
    """An A/B comparison over time: above, both sides' slice medians (they should track the same machine: a
    slow stretch shows on both); below, each slice pair's new/base with the estimate and its interval. A point
    per pair, coloured by round, so that a round whose pairs sit apart (a session's bias) shows as a group."""
    pairs = [(r.index, p) for r in record.rounds for p in r.pairs]
    if not pairs:
        return None
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.45, 0.55])
    at = [p.at_s for _, p in pairs]
    for side, colour in (("base", "#4c78a8"), ("new", "#f58518")):
        values = [getattr(p, f"{side}_ms") for _, p in pairs]
        fig.add_trace(go.Scatter(x=at, y=values, mode="markers", name=f"{side} slice median",
                                   marker={"size": 4, "color": colour},
                                   hovertemplate=f"{side}: %{{y:.4g}} ms at %{{x:.1f}} s<extra></extra>"), row=1, col=1)
    ratios = [p.new_ms / p.base_ms for _, p in pairs]
    rounds = [index for index, _ in pairs]
    fig.add_trace(go.Scatter(x=at, y=ratios, mode="markers", name="pair new/base", customdata=rounds,
                               marker={"size": 5, "color": [index % 2 for index in rounds],
                                       "colorscale": [[0, "#54a24b"], [1, "#b279a2"]]},
                               hovertemplate="new/base %{y:.3f}, round %{customdata}<extra></extra>"), row=2, col=1)
    if record.ratio is not None:
        fig.add_hline(y=record.ratio, line={"color": "#333", "width": 1.5}, row=2, col=1)
        if record.ci_low is not None and record.ci_high is not None and np.isfinite(record.ci_high):
            fig.add_hrect(y0=record.ci_low, y1=record.ci_high, fillcolor="#333", opacity=0.12, line_width=0,
                          row=2, col=1)
    fig.add_hline(y=1.0, line={"color": "#999", "dash": "dot", "width": 1}, row=2, col=1)
    fig.update_yaxes(title_text="ms", row=1, col=1)
    fig.update_yaxes(title_text="new / base", type="log", row=2, col=1)
    fig.update_xaxes(title_text="seconds since the comparison started", row=2, col=1)
    return _layout(fig, f"{record.case_id}: both sides over time, and each pair's ratio", 460)


RACE_COLOURS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d")


def race_figure(race: Any) -> go.Figure | None:
    """One raced group: each configuration's speed-up against the baseline as the race saw it after every round
    (the running Hodges-Lehmann estimate of the rounds so far, with its interval), the ±threshold band inside which
    a configuration is as fast as the baseline, an × where a configuration left the race and a mark at each look.

    The points are recomputed from the record's rounds (per round, the median over its blocks of the paired slice
    medians' log-ratio), so the chart draws what the record holds, not a summary of it.
    """
    if race.status != "raced" or not race.rounds or race.baseline is None:
        return None
    done_after = {one.index: position + 1 for position, one in enumerate(race.rounds)}  # rounds done: the x axis
    fig = go.Figure()
    band = race.threshold
    fig.add_hrect(y0=1 / (1 + band), y1=1 + band, fillcolor="#9aa0a6", opacity=0.18, line_width=0)
    fig.add_hline(y=1.0, line={"color": "#666", "dash": "dot", "width": 1})
    drawn: list[float] = [1 / (1 + band), 1 + band]
    colours = iter(RACE_COLOURS * 4)
    for entry in race.entries:
        if entry.is_baseline or entry.status not in ("survived", "eliminated"):
            continue
        logs = round_log_ratios(race, entry.name, race.baseline)
        if not logs:
            continue
        colour = next(colours, "#333")
        xs, ys, above, below = [], [], [], []
        for count in range(1, len(logs) + 1):
            estimate = paired_estimate([value for _, value in logs[:count]], confidence=race.confidence,
                                       alpha=race.alpha)
            value = 1 / estimate.ratio
            high = 1 / estimate.ci_low if estimate.ci_low > 0 else math.inf
            low = 1 / estimate.ci_high if math.isfinite(estimate.ci_high) and estimate.ci_high > 0 else 0.0
            xs.append(done_after[logs[count - 1][0]])
            ys.append(value)
            finite = math.isfinite(high) and low > 0
            above.append(high - value if finite else None)
            below.append(value - low if finite else None)
            drawn += [low, high] if finite else [value]
        name = text(entry.name)
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="lines+markers", name=name, legendgroup=name, line={"color": colour, "width": 2},
            marker={"size": 6, "color": colour},
            error_y={"type": "data", "symmetric": False, "array": above, "arrayminus": below, "thickness": 1,
                     "width": 3, "color": colour},
            hovertemplate="after %{x} rounds: %{y:.3f}×<extra>" + name + "</extra>"))
        left = next((done_after[one.index] for one in race.rounds if entry.name in one.eliminated), None)
        if left is None and entry.status == "eliminated" and entry.eliminated_after:
            left = entry.eliminated_after
        if left is not None and left in xs:
            fig.add_trace(go.Scatter(
                x=[left], y=[ys[xs.index(left)]], mode="markers", name=f"{name} eliminated", legendgroup=name,
                marker={"symbol": "x-thin-open", "size": 14, "color": colour, "line": {"width": 3}},
                hovertemplate=f"{name} left the race after %{{x}} rounds<extra></extra>"))
    if not fig.data:
        return None
    base = next((e for e in race.entries if e.is_baseline), None)
    base_left = next((done_after[one.index] for one in race.rounds if race.baseline in one.eliminated),
                     base.eliminated_after if base is not None and base.status == "eliminated" else None)
    if base_left is not None:  # the baseline itself left the race: the others' ratios stop being updated there
        fig.add_trace(go.Scatter(
            x=[base_left], y=[1.0], mode="markers", name=f"{text(race.baseline)} (baseline) eliminated",
            marker={"symbol": "x-thin-open", "size": 14, "color": "#333", "line": {"width": 3}},
            hovertemplate="the baseline left the race after %{x} rounds<extra></extra>"))
    looks = sorted({done_after[one.index] for one in race.rounds if one.look} or set(race.looks))
    for look in looks:
        fig.add_vline(x=look, line={"color": "#bbb", "dash": "dash", "width": 1})
    if looks:
        fig.add_trace(go.Scatter(x=looks, y=[1.0] * len(looks), mode="markers", name="look (judged after round)",
                                 marker={"symbol": "diamond-open", "size": 9, "color": "#555"},
                                 hovertemplate="look after %{x} rounds<extra></extra>"))
    finite = [v for v in drawn if v > 0 and math.isfinite(v)]
    span = [math.log10(min(finite)) - 0.02, math.log10(max(finite)) + 0.02]
    fig.update_yaxes(title_text=f"speed-up vs {text(race.baseline)} (×, log)", type="log", range=span)
    fig.update_xaxes(title_text="rounds done", dtick=1 if len(race.rounds) <= 20 else None,
                     range=[0.5, len(race.rounds) + 0.5])
    title = (f"Race {race.model} · batch {race.batch_size} · {race.mode}: running speed-up against the baseline "
             f"(band ±{band:.0%})")
    return _layout(fig, title, 340)


PROFILE_COLOURS = {"convolution": "#1f77b4", "matmul": "#9467bd", "quantize": "#d62728", "layout": "#ff7f0e",
                   "elementwise": "#2ca02c", "other": "#8c564b", "between ops": "#c7c7c7"}


def profile_figure(records: list[Any], labels: list[str]) -> go.Figure | None:
    """Where the time goes, per profiled case: the profiling pass's median run stacked by op category (each op's
    median call; results.profile's mapping), the rest of the run, which those do not cover, in grey on top. A bar's
    height is the pass's own median latency, so a tall grey part says the profiler saw little of it. (The record's
    coverage is the pass's accounting instead, all op time over all run time: the two agree unless calls vary.)"""
    from results.profile import CATEGORIES

    profiled = [(record, label) for record, label in zip(records, labels, strict=True)
                if record.profile is not None and record.profile.run_ms_mean]
    if not profiled:
        return None
    fig = go.Figure()
    names = [text(label) for _, label in profiled]
    for name in (*CATEGORIES, "between ops"):
        if name == "between ops":
            values = [max(r.profile.run_ms_median - (r.profile.ops_ms_per_run or 0.0), 0.0) for r, _ in profiled]
        else:
            values = [(r.profile.by_category or {}).get(name, 0.0) for r, _ in profiled]
        if not any(values):
            continue
        fig.add_trace(go.Bar(x=values, y=names, orientation="h", name=name,
                             marker={"color": PROFILE_COLOURS[name]},
                             hovertemplate="%{y}: %{x:.4g} ms a run<extra>" + name + "</extra>"))
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title_text="ms per run of the profiling pass, by op category")
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, "Where the time goes: op time by category (profiling pass)", 120 + 28 * len(profiled))
