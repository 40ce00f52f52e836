"""The self-contained HTML comparison report of one or several runs.

One file, no network: plotly's JavaScript is inlined once, every figure travels as JSON in the page, styles
and the table script are inlined. Jinja2 escapes every string from a scenario, a file name or a record;
JSON embedded in <script> tags has `<`, `>` and `&` written as \\u escapes, so no value can close the tag.
Runs are grouped by machine, and a speed-up is only ever computed inside one run.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
import plotly.io

from model_zoo.fidelity import SCORE_DEFINITION
from reporting.baseline import (
    NOT_RACED_NOTE,
    GroupAnswer,
    answer_per_group,
    entry_speedup,
    entry_status,
    race_outcome,
)
from reporting.charts import ab_figure, figures_for_model, profile_figure, race_figure, speedup_colour
from reporting.frame import COLUMNS, config_order, records_frame
from reporting.numbers import ab_figures, fmt_duration, fmt_number, speedup_text
from results.ab_record import AbRecord
from results.profile import DIFF_NOISE_SHARE, explanations
from results.profile import diff as profile_diff
from results.race_record import RaceRecord
from results.record import MEASURED
from results.runs import Run, load_runs, machine_label

REPORT_NAME = "report.html"
STATUS_ORDER = ("failed", "invalid", "skipped", "passed")
STATIC = files("reporting") / "static"
PLOTLY_BUNDLE = STATIC / "vendor" / "plotly-cartesian.min.js"
# the trace types of plotly.js's cartesian bundle: a chart of another type would silently draw nothing
BUNDLE_TRACE_TYPES = frozenset({"bar", "box", "contour", "heatmap", "histogram", "histogram2d",
                                "histogram2dcontour", "image", "pie", "scatter", "scatterternary", "violin"})
_JS_VERSION = re.compile(r"plotly\.js (?:\([^)]*\) )?v(\d+\.\d+\.\d+)")


def js_version(bundle_head: str) -> str | None:
    """The plotly.js version in a bundle's licence header."""
    found = _JS_VERSION.search(bundle_head)
    return found.group(1) if found else None


def plotly_py_js_version() -> str | None:
    """The plotly.js version the installed plotly (Python) writes figure JSON for."""
    from plotly.offline import get_plotlyjs

    return js_version(get_plotlyjs()[:400])


def figure_json(figure: Any) -> str:
    """A plotly figure as script-safe JSON, refusing trace types the inlined bundle cannot draw."""
    unsupported = {trace.type for trace in figure.data} - BUNDLE_TRACE_TYPES
    if unsupported:  # a bug in charts.py, not a user error
        raise ValueError(f"trace types {sorted(unsupported)} are not in the vendored plotly.js bundle")
    return script_safe(plotly.io.to_json(figure, validate=False))


def script_json(value: Any) -> str:
    """`value` as JSON that is safe inside a <script> element whatever strings it holds."""
    return script_safe(json.dumps(value, separators=(",", ":"), allow_nan=False))


def script_safe(json_text: str) -> str:
    """Serialised JSON made safe inside a <script> element: `<`, `>`, `&` only occur in JSON strings, where
    their \\u escapes mean the same."""
    return (json_text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def number(value: Any, digits: int = 4) -> str:
    return "-" if _missing(value) else fmt_number(float(value), digits)


FAILED_BACKGROUND = "#fbd5d1"  # a failed case that was timed: red whatever its speed, never the "faster" green


def speedup_background(speedup: float | None, source: str | None, faster: Any) -> str:
    """A passed case's background for its speed-up: green faster, red slower, from the race; none where the race
    found it as fast as the baseline or could not tell (a tie is never drawn faster); hatched and lighter where
    the ratio is sequential (p50s measured minutes apart), so that it never reads as a raced result."""
    if faster is None or _missing(faster) or speedup is None:
        return "transparent"
    colour = speedup_colour(speedup, faint=source != "race")
    if source == "race" or colour == "transparent":
        return colour
    return f"repeating-linear-gradient(135deg, {colour} 0 4px, transparent 4px 8px)"


def _cell(rows: pd.DataFrame, several_runs: bool) -> list[dict[str, Any]]:
    """A matrix cell: one entry per run that measured this configuration at this batch size.

    A failed case that was timed (its conversion ran but missed the fidelity guard) shows its p50, on red, flagged
    "failed: fidelity" with the reason in the tooltip, and gets no speed-up: it must not read as a win. The
    speed-up reads as everywhere else (reporting.numbers.speedup_text): the race's ratio with its interval, or
    labelled sequential.
    """
    entries = []
    for row in rows.itertuples(index=False):
        speedup = None if _missing(row.speedup) else float(row.speedup)
        is_baseline = bool(row.speedup_is_baseline) or (not _missing(row.baseline_key)
                                                         and row.key == row.baseline_key)
        source = None if _missing(row.speedup_source) else str(row.speedup_source)
        if row.status == "passed":
            colour = "transparent" if is_baseline else speedup_background(speedup, source, row.speedup_faster)
        else:
            colour = FAILED_BACKGROUND if row.status == "failed" and not _missing(row.p50_ms) else "transparent"
        entries.append({
            "status": row.status, "label": row.status_label, "reason": "" if _missing(row.reason) else str(row.reason),
            "run": row.run if several_runs else "", "timed": not _missing(row.p50_ms),
            "p50": number(row.p50_ms), "throughput": number(row.throughput_ips, 3),
            "speedup": "" if _missing(row.speedup_text) else str(row.speedup_text), "is_baseline": is_baseline,
            "sequential": source is not None and source != "race",
            "colour": colour, "software": bool(row.software_gpu), "case_id": row.case_id,
        })
    return entries


def _matrix(cases: pd.DataFrame) -> dict[str, Any]:
    batches = sorted(cases["batch_size"].unique().tolist())
    several_runs = cases["run"].nunique() > 1
    rows = []
    for config in config_order(cases):
        of_config = cases[cases["config"] == config]
        rows.append({"config": config, "cells": [_cell(of_config[of_config["batch_size"] == b], several_runs)
                                                 for b in batches]})
    return {"batches": batches, "rows": rows}


NAME_A_BASELINE = "name another with `baseline: {backend: …, precision: …}` in the scenario"


def _batches(values: Any) -> str:
    return ", ".join(str(b) for b in sorted(set(values)))


def _baseline_note(cases: pd.DataFrame) -> str:
    """Which case the speed-ups of one model divide by, said where the reader looks at them.

    The scenario may have named it, or left it to the report (the first fp32 case that ran): either way the note
    names the case, per batch size where it differs, and the batch sizes where nothing could be compared.
    """
    resolved = cases[cases["baseline_key"].notna()]
    baselines: dict[tuple[str, bool], list[Any]] = {}
    for row in resolved.itertuples(index=False):
        baselines.setdefault((row.baseline, bool(row.baseline_auto)), []).append(row.batch_size)
    if not cases["speedup"].notna().any():
        named = sorted({b for b, auto in zip(cases["baseline"], cases["baseline_auto"], strict=True)
                        if b and not auto})
        if named:
            return (f"No speed-up: the baseline ({' / '.join(named)}) was not measured in this run for this model "
                    "(name another with `baseline: {backend: …, precision: …}` in the scenario).")
        return ("No speed-up: no dense fp32 case of this model passed in this run, so there is nothing to compare "
                f"against ({NAME_A_BASELINE}).")
    spec = " / ".join(name + (f" at batch {_batches(batches)}" if len(baselines) > 1 else "")
                      for (name, _), batches in baselines.items())
    missing = sorted(set(cases["batch_size"]) - set(resolved["batch_size"]))
    tail = f" No baseline was measured at batch {_batches(missing)}." if missing else ""
    autos = {auto for _, auto in baselines}
    sources = set(cases["speedup_source"].dropna())
    tail += (" Where a group was raced, its speed-ups are the race's paired ratios with their 95 % intervals "
             "(configurations measured together, in one sitting); \"sequential\" marks a ratio of p50s measured "
             "minutes apart, which the machine's drift alone can move by 5-23 %." if "race" in sources else
             " Every speed-up here is sequential: a ratio of p50s measured minutes apart (the run did not race this "
             "model's configurations), which the machine's drift alone can move by 5-23 %.")
    if autos == {True}:
        return (f"Speed-up against {spec} (the model's first fp32 case that ran; {NAME_A_BASELINE}) = p50 of the "
                "baseline ÷ p50 of the case, same batch size, mode and run; green is faster, red slower. Failed "
                "cases get no speed-up." + tail)
    if autos == {False}:
        return (f"Speed-up = p50 of the baseline ({spec}, dense, same batch size and mode, same run) ÷ p50 of the "
                "case; green is faster, red slower." + tail)
    return (f"Speed-up = p50 of the baseline ({spec}: the one the scenario named, else the model's first fp32 case "
            "that ran; same batch size, mode and run) ÷ p50 of the case; green is faster, red slower." + tail)


def _fidelity(row: Any) -> str:
    """How faithful a case is: its worst output by the metric that judged it, with its bar, top-1 where the
    model has labels, and how many nodes its conversion left fp32 to get there."""
    parts = []
    if isinstance(row.fidelity_text, str):
        parts.append(row.fidelity_text)
    if not _missing(row.top1):
        parts.append(f"top-1 {float(row.top1):.4f}")
    if isinstance(getattr(row, "kept_fp32_text", None), str):
        parts.append(row.kept_fp32_text)
    return ", ".join(parts) or "not measured"


SCORE_NOTE = ("The fidelity chart plots one comparable " + SCORE_DEFINITION + ". Hover a point for the metric "
              "that judged the case and its bar.")


def _fidelity_warnings(cases: pd.DataFrame) -> list[str]:
    """What the fp32 reference's outputs say about the evaluation inputs (harness.fidelity.uninformative_reference):
    near-uniform class scores, outputs that never respond. Once per distinct warning."""
    return [w for w in dict.fromkeys(cases["fidelity_warning"]) if isinstance(w, str) and w]


RaceAnswers = dict[tuple[str, Any, Any, Any, Any], tuple[str, GroupAnswer]]  # (run, group) → (case_id, answer)


def race_answers(runs: list[Run]) -> RaceAnswers:
    """Each run's answer per group (reporting.baseline.answer_per_group: the race's where it raced), keyed by the
    run's name and the group, with the case it names."""
    found: RaceAnswers = {}
    for run in runs:
        for group, answer in answer_per_group(run.records, run.races).items():
            if answer.index is not None:
                found[(run.name, *group)] = (run.records[answer.index].case_id, answer)
    return found


def _answers(cases: pd.DataFrame, machine: str, model: str, anchor: str, several_runs: bool,
             several_modes: bool, raced: RaceAnswers | None = None) -> list[dict[str, Any]]:
    """"Which configuration should I use?" for one model on one machine, per batch size (and mode): the race's
    answer where the group was raced in one run (its winner only when it won; a tie or "cannot tell" with the one
    it recommends), else the fastest case that PASSED by sequential p50, labelled so. INVALID timings are
    untrustworthy and failed cases give wrong answers or none, so neither can be the answer; faster ones that were
    left out are named, so a reader sees what was excluded and why."""
    answers = []
    for (batch, mode), group in cases.groupby(["batch_size", "mode"], sort=True, dropna=False):
        base = {"machine": machine, "model": model, "anchor": anchor, "batch": batch,
                "mode": mode if several_modes else ""}
        passed = group[(group["status"] == "passed") & group["p50_ms"].notna()]
        if passed.empty:
            counts = group["status_label"].value_counts(sort=False)
            answers.append({**base, "best": None,
                            "none": "no case passed (" + ", ".join(f"{n} {label}" for label, n in counts.items())
                                    + ")"})
            continue
        best = passed.loc[passed["p50_ms"].astype(float).idxmin()]
        how = NOT_RACED_NOTE if group["run"].nunique() == 1 else "fastest by sequential p50 (runs merged: not raced)"
        raced_in, from_race = None, False
        if group["run"].nunique() == 1 and group["scenario"].nunique() == 1:
            raced_in = (raced or {}).get((group["run"].iloc[0], group["scenario"].iloc[0], model, batch, mode))
        if raced_in is not None and raced_in[1].raced:
            chosen = passed[passed["case_id"] == raced_in[0]]
            if not chosen.empty:
                best, how, from_race = chosen.iloc[0], raced_in[1].note, True
        faster = group[(group["status"] != "passed") & group["p50_ms"].notna()
                       & (group["p50_ms"].astype(float) < float(best["p50_ms"]))]
        if _missing(best["speedup"]):
            versus = "- (no baseline measured)"
        elif best["speedup_is_baseline"] or best["key"] == best["baseline_key"]:
            versus = f"baseline ({best['baseline']})"
        else:
            versus = f"{best['speedup_text']} vs {best['baseline']}"
        answers.append({**base, "best": {
            "config": best["config"], "run": best["run"] if several_runs else "", "case_id": best["case_id"],
            "p50": number(best["p50_ms"]), "throughput": number(best["throughput_ips"]), "speedup": versus,
            "how": how, "raced": from_race,
            "fidelity": _fidelity(best), "software": bool(best["software_gpu"]),
            "excluded": "; ".join(f"{row.config} ({row.status_label}, {number(row.p50_ms)} ms)"
                                  for row in faster.itertuples(index=False)),
        }})
    return answers


def _race_rows(race: RaceRecord) -> list[dict[str, str]]:
    """A race's configurations as its table shows them: status in the race and speed-up against the baseline."""
    return [{"name": entry.name + (" (baseline)" if entry.is_baseline else ""), "status": entry.status,
             "status_text": entry_status(entry), "speedup": speedup_text(entry_speedup(race, entry)),
             "reason": entry.reason or ""} for entry in race.entries]


def _races(runs: list[Run], model: str, several_runs: bool) -> list[dict[str, Any]]:
    """The race sections of one model on one machine, one per group raced (or tried) in each run."""
    found = []
    for run in runs:
        for race in run.races:
            if race.model != model:
                continue
            found.append({
                "race": race, "title": f"batch {race.batch_size} · {race.mode}" + (f" [{run.name}]" if several_runs
                                                                                   else ""),
                "outcome": race_outcome(race), "kind": race.outcome or race.status, "reason": race.reason or "",
                "rounds": race.rounds_text(), "looks": len(race.looks), "time": fmt_duration(race.wall_s),
                "measured": fmt_duration(race.measured_s), "threshold": f"±{race.threshold:.0%}",
                "baseline": race.baseline or "-", "entries": _race_rows(race), "chart": None,
            })
    return found


def _profiles(runs: list[Run], model: str, several_runs: bool) -> dict[str, Any] | None:
    """"Where the time goes" for one model on one machine: the sentences that explain a slowdown, each profiled
    case's op types, and the diffs of the natural pairs (each precision against fp32 on one backend, each backend
    against the first one at one precision); None when no case of the model was profiled."""
    records, labels = [], []
    for run in runs:
        for record in run.records:
            if record.model == model and record.profile is not None:
                records.append(record)
                labels.append(f"{record.label} · {record.precision} · b{record.batch_size}"
                              + (f" [{run.name}]" if several_runs else ""))
    if not records:
        return None
    cases = []
    for record, label in zip(records, labels, strict=True):
        summary = record.profile
        if summary.error or not summary.run_ms_mean:
            cases.append({"label": label, "error": summary.error or "no runs profiled"})
            continue
        cases.append({"label": label, "error": None, "route": summary.route, "note": summary.note,
                      "coverage": f"{summary.coverage:.0%}" if summary.coverage is not None else "-",
                      "run_ms": number(summary.run_ms_median), "overhead": summary.profiler_overhead,
                      "per_call_us": (f"{summary.profiler_us_per_op_call:.2g}"
                                      if summary.profiler_us_per_op_call is not None else "?"),
                      "types": [{"op_type": t.op_type, "category": t.category, "where": t.where, "ms": number(t.ms),
                                 "share": f"{t.share:.1%}", "ops": t.ops, "fused": t.fused, "opaque": t.opaque,
                                 "detail": t.detail or ""} for t in (summary.by_op_type or [])[:8]],
                      "trace": summary.trace})
    diffs = []
    timed = [(r, label) for r, label in zip(records, labels, strict=True) if r.profile.run_ms_mean]
    for record, label in timed:
        pair = next(((r, other) for r, other in timed if r is not record and r.batch_size == record.batch_size
                     and r.mode == record.mode and r.compression == record.compression and (
                         (r.label == record.label and r.precision == "fp32" != record.precision) or
                         (r.precision == record.precision and r.label != record.label
                          and r.label == timed[0][0].label))), None)
        if pair is None:
            continue
        rows = profile_diff(pair[0].profile, record.profile)[:8]
        diffs.append({"title": f"{pair[1]} → {label}", "rows": [
            {"key": row["key"], "a": number(row["a_ms"]), "b": number(row["b_ms"]),
             "delta": f"{row['delta_ms']:+.4g}", "change": row["change"]} for row in rows]})
    return {"sentences": explanations(records), "cases": cases, "diffs": diffs, "records": records,
            "labels": labels, "chart": None, "noise": f"{DIFF_NOISE_SHARE:.0%}"}


def _model_source(runs: list[Run], model: str) -> str:
    """Where a model came from: the zoo's name and shape, or the user's file."""
    for run in runs:
        for record in run.records:
            source = record.model_source
            if record.model == model and source and (source.path or source.zoo):
                where = f"file {source.path}" if source.path else f"zoo model {source.zoo}"
                shape = source.input_shape
                return where + (f", input {'×'.join(map(str, shape))}" if shape else "")
    return ""


def _badges(runs: list[Run], frame: pd.DataFrame) -> list[dict[str, str]]:
    """Everything that qualifies the numbers, first thing on the page."""
    passed = int((frame["status"] == "passed").sum())
    badges = [{"kind": "ok", "text": f"{passed} passed", "title": "cases measured and within their rules"}]
    comparisons = [record.verdict or record.status for run in runs for record in run.ab_records]
    if comparisons and frame.empty:  # an A/B run: its verdicts are what it found, not "0 passed"
        kinds = {"slower": "bad", "broken": "bad", "failed": "bad", "refused": "warn", "cannot tell": "warn",
                 "faster": "ok", "unchanged": "ok", "skipped": "muted"}
        badges = [{"kind": kinds.get(verdict, "info"), "text": f"{comparisons.count(verdict)} {verdict}",
                   "title": "A/B comparisons: see below"} for verdict in dict.fromkeys(comparisons)]
    software = frame[(frame["software_gpu"]) & frame["status"].isin(MEASURED)]
    for backend, rows in software.groupby("backend_label", sort=False):
        device = next((d for d in rows["device"] if d), "a software adapter")
        badges.append({"kind": "warn", "text": f"software GPU: {backend}",
                       "title": f"{backend} ran on {device}, a software adapter on the CPU: not GPU numbers"})
    for status, kind in (("invalid", "warn"), ("failed", "bad"), ("skipped", "muted")):
        count = int((frame["status"] == status).sum())
        if count:
            badges.append({"kind": kind, "text": f"{count} {status.upper() if status == 'invalid' else status}",
                           "title": "see Failures and skips below"})
    if any((run.env.get("git") or {}).get("dirty") for run in runs):
        badges.append({"kind": "warn", "text": "uncommitted changes", "title": "a run was made from a dirty tree"})
    if frame["machine_id"].nunique() > 1:
        badges.append({"kind": "info", "text": f"{frame['machine_id'].nunique()} machines",
                       "title": "grouped by machine; speed-ups never cross runs"})
    return badges


def _run_summary(run: Run) -> dict[str, Any]:
    machine = run.machine
    return {
        "name": run.name, "path": str(run.path), "scenarios": ", ".join(run.scenarios), "started": run.started or "-",
        "commit": run.commit or "-", "front_door": run.info.get("front_door", "-"),
        "selection": run.info.get("selection") or "", "cases": len(run.records) or len(run.ab_records),
        "host": run.env.get("hostname", "-"), "os": machine.get("os", "-"), "python": machine.get("python", "-"),
        "machine": machine_label(machine),
        "libraries": ", ".join(f"{k} {v}" for k, v in (run.env.get("libraries") or {}).items()),
    }


def _fingerprint(machine: dict[str, Any]) -> list[tuple[str, str]]:
    gpu = machine.get("gpu") or {}
    devices = ", ".join(f"{d.get('name')} ({number(d.get('memory_mb'), 6)} MB)" for d in gpu.get("devices", []))
    return [("CPU", str(machine.get("cpu_model", "-"))),
            ("cores", f"{machine.get('cpu_logical', '-')} logical, {machine.get('cpu_physical', '-')} physical, "
                      f"{machine.get('cpu_affinity', '-')} usable"),
            ("memory", f"{machine.get('memory_gb', '-')} GB"), ("architecture", str(machine.get("arch", "-"))),
            ("GPU", devices or "none (no NVIDIA GPU seen by NVML)"),
            ("GPU driver / CUDA", f"{gpu.get('driver_version')} / {gpu.get('cuda_driver_version')}" if gpu else "-")]


RECORD_TABLE = (  # column title, frame column, digits (None: text)
    ("run", "run", None), ("case", "case_id", None), ("status", "status", None), ("p50 ms", "p50_ms", 4),
    ("p90 ms", "p90_ms", 4), ("p99 ms", "p99_ms", 4), ("items/s", "throughput_ips", 4), ("speed-up", "speedup", 3),
    ("speed-up from", "speedup_source", None),
    ("init ms", "init_ms", 4), ("1st inference ms", "first_inference_ms", 4), ("peak RSS MB", "peak_rss_mb", 4),
    ("GPU MB", "gpu_memory_mb", 4), ("CPU %", "cpu_percent", 3), ("OS threads", "os_threads", 1),
    ("GPU %", "gpu_util_pct", 3),
    ("size MB", "size_mb", 3), ("gzip MB", "gzip_mb", 3), ("fidelity", "fidelity_text", None),
    ("top-1", "top1", 4), ("nodes kept fp32", "kept_fp32_text", None),
    ("device", "device", None),
)


def _records_table(frame: pd.DataFrame) -> dict[str, Any]:
    columns = [c for c in RECORD_TABLE if c[1] != "run" or frame["run"].nunique() > 1]
    rows = []
    for row in frame.itertuples(index=False):
        cells = []
        for _, column, digits in columns:
            value = getattr(row, column)
            if column == "speedup":  # the text every table prints, sorted by the value
                shown = "" if _missing(row.speedup_text) else str(row.speedup_text)
                cells.append({"text": shown, "sort": None if _missing(value) else float(value)})
            elif digits is None:
                cells.append({"text": "" if _missing(value) else str(value), "sort": None})
            else:
                cells.append({"text": number(value, digits), "sort": None if _missing(value) else float(value)})
        rows.append({"status": row.status, "cells": cells, "software": bool(row.software_gpu)})
    return {"headers": [c[0] for c in columns], "rows": rows}


def _ab_row(record: AbRecord) -> dict[str, Any]:
    """An A/B record as the report's table shows it."""
    return {"case": record.case_id, "base": record.base.description, "new": record.new.description,
            "base_libraries": ", ".join(f"{k} {v}" for k, v in record.base.libraries.items()),
            "new_libraries": ", ".join(f"{k} {v}" for k, v in record.new.libraries.items()),
            **ab_figures(record), "rounds": len(record.rounds), "seconds": f"{record.wall_s:.0f}",
            "method": record.method, "verdict": record.verdict or record.status, "reason": record.reason or ""}


def build_page(runs: list[Run]) -> str:
    """The report's HTML for these runs."""
    labels = {run.machine_id: machine_label(run.machine) for run in runs}
    frame = records_frame(runs, labels)
    samples = {f"{run.name}/{r.case_id}": r.samples_ns for run in runs for r in run.records}
    figures: list[dict[str, str]] = []
    machines = []
    answers: list[dict[str, Any]] = []
    several_modes = frame["mode"].nunique() > 1
    raced = race_answers(runs)
    for machine_id in dict.fromkeys(run.machine_id for run in runs):
        machine_runs = [run for run in runs if run.machine_id == machine_id]
        of_machine = frame[frame["machine_id"] == machine_id]
        models = []
        for model in dict.fromkeys(of_machine["model"]):
            cases = of_machine[of_machine["model"] == model]
            charts = []
            for kind, figure in figures_for_model(cases, samples):
                chart_id = f"chart-{len(figures)}"
                figures.append({"id": chart_id, "json": figure_json(figure)})
                charts.append({"id": chart_id, "kind": kind})
            anchor = f"m{len(machines)}-{len(models)}"
            races = _races(machine_runs, model, len(machine_runs) > 1)
            for race in races:
                figure = race_figure(race.pop("race"))
                if figure is not None:
                    race["chart"] = f"chart-{len(figures)}"
                    figures.append({"id": race["chart"], "json": figure_json(figure)})
            profiles = _profiles(machine_runs, model, len(machine_runs) > 1)
            if profiles is not None:
                figure = profile_figure(profiles.pop("records"), profiles.pop("labels"))
                if figure is not None:
                    profiles["chart"] = f"chart-{len(figures)}"
                    figures.append({"id": profiles["chart"], "json": figure_json(figure)})
            models.append({"name": model, "source": _model_source(runs, model), "anchor": anchor,
                           "matrix": _matrix(cases), "baseline_note": _baseline_note(cases), "charts": charts,
                           "races": races, "profiles": profiles, "warnings": _fidelity_warnings(cases),
                           "score_note": SCORE_NOTE if any(c["kind"] == "fidelity" for c in charts) else None})
            answers += _answers(cases, labels[machine_id], model, anchor, len(machine_runs) > 1, several_modes,
                                raced)
        machines.append({"id": machine_id, "label": labels[machine_id], "anchor": f"machine-{len(machines)}",
                         "fingerprint": _fingerprint(machine_runs[0].machine),
                         "runs": [_run_summary(run) for run in machine_runs], "models": models})
    ab_rows = []
    for run in runs:
        for record in run.ab_records:
            chart_id, figure = f"chart-{len(figures)}", ab_figure(record)
            if figure is not None:
                figures.append({"id": chart_id, "json": figure_json(figure)})
            ab_rows.append({**_ab_row(record), "run": run.name, "chart": chart_id if figure is not None else None})
    problems = frame[frame["status"] != "passed"].assign(
        _s=lambda f: f["status"].map(STATUS_ORDER.index)).sort_values("_s", kind="stable")
    scenarios = list(dict.fromkeys(name for run in runs for name in run.scenarios))
    return render_page(
        "report.html.j2",
        title=f"accelbench report: {', '.join(scenarios)}",
        generated=datetime.now(UTC).isoformat(timespec="seconds"),
        runs=[_run_summary(run) for run in runs],
        badges=_badges(runs, frame),
        machines=machines,
        has_records=not frame.empty,  # an A/B-only run has none: no links to empty sections, no latency note
        answers=answers,
        several_machines=len(machines) > 1,
        several_modes=several_modes,
        figures=figures,
        problems=[{"run": r.run, "case": r.case_id, "status": r.status,
                   "reason": "" if _missing(r.reason) else str(r.reason)} for r in problems.itertuples(index=False)],
        several_runs=len(runs) > 1,
        ab=ab_rows,
        budgets=[{"run": run.name, "case": v.case_id, "where": v.where, "status": v.status,
                  "flag": BUDGET_FLAGS.get(v.status, "skipped"), "message": v.message}
                 for run in runs for v in run.budgets],
        records=_records_table(frame),
        csv_json=script_json(frame[list(COLUMNS)].to_csv(index=False)),
    )


# a budget verdict's flag: the status styles the report already has (a miss reads as a failure, an undecided or
# unjudged budget as a warning, one tied to another machine as a skip)
BUDGET_FLAGS = {"passed": "passed", "missed": "failed", "cannot tell": "warn", "not judged": "warn",
                "other machine": "skipped"}


def render_page(template: str, **context: Any) -> str:
    """A page of the report's family: its template with the shared styles, table script and plotly inlined.
    Autoescaping is on: every value is text unless a template marks it safe (only our own JSON and assets)."""
    environment = jinja2.Environment(loader=jinja2.PackageLoader("reporting", "templates"), autoescape=True,
                                     undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return environment.get_template(template).render(
        plotly_js=PLOTLY_BUNDLE.read_text(encoding="utf-8"),
        css=(STATIC / "report.css").read_text(encoding="utf-8"),
        js=(STATIC / "report.js").read_text(encoding="utf-8"),
        **context,
    )


def write_page(target: Path, page: str) -> Path:
    """Write atomically: a reader (or a browser refresh) never sees half a page."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(target)
    return target


def write_report(run_dirs: list[str | Path], out: str | Path | None = None) -> Path:
    """Render the runs into one file: `out`, else report.html in the run folder (a single run) or in the
    current folder (several). Raises RunFolderError naming a folder that is not a readable run."""
    runs = load_runs(list(run_dirs))
    target = Path(out) if out else (runs[0].path / REPORT_NAME if len(runs) == 1 else Path(REPORT_NAME))
    return write_page(target, build_page(runs))


def write_report_safely(run_dir: str | Path) -> tuple[Path | None, str | None]:
    """The run's report, or why it could not be written: called when every record is already on disk, so a bug
    in the page must cost the run nothing (the front doors print the error and keep their exit code)."""
    try:
        return write_report([run_dir]), None
    except Exception as error:  # a bug in the report must not cost the run its results
        return None, f"the HTML report could not be written: {type(error).__name__}: {error}"
