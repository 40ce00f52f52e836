"""Records as one pandas table: a row per case, flat columns, and each case's speed-up against its baseline.

The speed-up compares two cases of the same run (one machine, one sitting) and nothing else: merging runs from
several machines never divides one machine's number by another's. Which case is the baseline (the one the
scenario named, else the first fp32 case that ran) is decided in reporting/baseline.py, shared with the console.
Where the run raced the case's group, the speed-up is the race's paired ratio with its interval (speedup_source
"race"); elsewhere it is the ratio of sequential p50s, and speedup_source and speedup_text say so.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reporting.baseline import Baseline, Speedup, failure_label, named_baseline, resolve_baselines, resolve_speedups
from reporting.numbers import speedup_text
from results.record import Record
from results.runs import Run

PRECISION_ORDER = {"fp32": 0, "fp16": 1, "int8_dynamic": 2, "int8": 3}

# what the CSV download and the records table carry, in order (raw samples stay in results.jsonl)
COLUMNS = (
    "run", "machine_id", "machine", "scenario", "case_id", "model", "backend", "backend_label", "precision",
    "compression", "batch_size", "mode", "status", "reason", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "mean_ms",
    "ci_low_ms", "ci_high_ms", "runs", "throughput_ips", "speedup", "speedup_low", "speedup_high", "speedup_source",
    "speedup_text", "baseline", "init_ms", "first_inference_ms", "peak_rss_mb", "gpu_memory_mb", "cpu_percent",
    "gpu_util_pct", "size_mb", "gzip_mb", "cosine", "fidelity", "fidelity_text", "fidelity_warning", "max_abs_err",
    "kept_fp32_text", "top1_agreement", "top1", "top1_drop",
    "software_gpu", "device", "os_threads", "env_id",
)

# used by the page, not exported: the baseline case (its label, precision, whether the scenario left it unnamed,
# its key), the case's short status label ("failed: fidelity"), its key into the raw samples, whether it is the
# baseline its speed-up is against and whether it may be drawn faster/slower (None: a tie, "cannot tell")
INTERNAL_COLUMNS = ("baseline_backend", "baseline_precision", "baseline_auto", "baseline_key", "status_label", "key",
                    "speedup_is_baseline", "speedup_faster")


def flat_record(run: Run, record: Record, machine: str, baseline: Baseline | None = None,
                gain: Speedup | None = None) -> dict[str, Any]:
    """One record as one row; `baseline` is its resolved baseline case in `run` (resolve_baselines), if any, and
    `gain` its speed-up against it (resolve_speedups: from the run's race where there is one)."""
    named = named_baseline(record)
    if baseline is not None:
        base_backend, base_precision = baseline.label, baseline.precision
    else:  # not measured: the name the scenario gave, or nothing when it left the choice to the report
        base_backend, base_precision = (named["backend"], named["precision"]) if named else (None, None)
    return {
        "run": run.name, "machine_id": run.machine_id, "machine": machine, **record.flat(),
        "speedup": np.nan if gain is None else gain.value,
        "speedup_low": np.nan if gain is None or gain.low is None else gain.low,
        "speedup_high": np.nan if gain is None or gain.high is None else gain.high,
        "speedup_source": None if gain is None else gain.source,
        "speedup_text": None if gain is None else speedup_text(gain),
        "speedup_is_baseline": gain is not None and gain.is_baseline,
        "speedup_faster": None if gain is None else gain.shown_as_faster,
        "baseline": f"{base_backend} {base_precision}" if base_backend else None,
        "baseline_backend": base_backend, "baseline_precision": base_precision, "baseline_auto": named is None,
        "baseline_key": f"{run.name}/{run.records[baseline.index].case_id}" if baseline is not None else None,
        "status_label": failure_label(record.status, record.reason),
        "key": f"{run.name}/{record.case_id}",
    }


def records_frame(runs: list[Run], machine_labels: dict[str, str]) -> pd.DataFrame:
    """Every record of every run, flat, with `speedup` filled in (from each run's races where it has them);
    ordered as the runs wrote them."""
    rows = []
    for run in runs:  # baselines are resolved per run: a speed-up never divides one run's number by another's
        baselines = resolve_baselines(run.records)
        gains = resolve_speedups(run.records, run.races, baselines)
        for record, baseline, gain in zip(run.records, baselines, gains, strict=True):
            rows.append(flat_record(run, record, machine_labels[run.machine_id], baseline, gain))
    frame = pd.DataFrame(rows, columns=[*COLUMNS, *INTERNAL_COLUMNS])
    for column in ("speedup", "speedup_low", "speedup_high"):
        frame[column] = frame[column].astype("float64")
    modes = frame["mode"].nunique()
    frame["config"] = [config_label(row, modes) for row in frame.itertuples(index=False)]
    return frame


def config_label(row: Any, modes: int) -> str:
    """A matrix row: backend · precision, then compression and mode where they vary."""
    parts = [row.backend_label, row.precision]
    if row.compression != "none":
        parts.append(row.compression.replace("prune:", "prune "))
    if modes > 1:
        parts.append(row.mode)
    return " · ".join(parts)


def config_order(frame: pd.DataFrame) -> list[str]:
    """Matrix rows in the scenario's backend order, then fp32 → int8, dense before pruned."""
    backends = list(dict.fromkeys(frame["backend_label"]))
    keyed = frame.assign(
        _b=frame["backend_label"].map(backends.index),
        _p=frame["precision"].map(lambda p: PRECISION_ORDER.get(p, 9)),
        _c=frame["compression"].map(lambda c: c != "none"),
    ).sort_values(["_b", "_p", "_c", "compression", "mode"], kind="stable")
    return list(dict.fromkeys(keyed["config"]))


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower x and higher y), by increasing x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for index in order:
        if points[index][1] > best:
            front.append(index)
            best = points[index][1]
    return front


def latency_sketch(samples_ns: list[int], points: int = 200) -> list[float]:
    """Evenly spaced order statistics of the raw samples, in ms: the distribution's shape at a fixed size
    (a case can hold 10⁵ samples), every value a real measured sample."""
    if not samples_ns:
        return []
    samples = np.asarray(samples_ns, dtype=np.float64)
    if samples.size > points:
        samples = np.quantile(samples, np.linspace(0.0, 1.0, points), method="inverted_cdf")
    return [float(f"{v:.4g}") for v in samples / 1e6]
