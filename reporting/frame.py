"""Records as one pandas table: a row per case, flat columns, and each case's speed-up against its baseline.

The speed-up compares two cases of the same run (one machine, one sitting) and nothing else: merging runs from
several machines never divides one machine's number by another's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reporting.runs import Run

PRECISION_ORDER = {"fp32": 0, "fp16": 1, "int8_dynamic": 2, "int8": 3}
SPEEDUP_KEYS = ("run", "scenario", "model", "batch_size", "mode")

# what the CSV download and the records table carry, in order (raw samples stay in results.jsonl)
COLUMNS = (
    "run", "machine_id", "machine", "scenario", "case_id", "model", "backend", "backend_label", "precision",
    "compression", "batch_size", "mode", "status", "reason", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "mean_ms",
    "ci_low_ms", "ci_high_ms", "runs", "throughput_ips", "speedup", "baseline", "init_ms", "first_inference_ms",
    "peak_rss_mb", "gpu_memory_mb", "cpu_percent", "gpu_util_pct", "size_mb", "gzip_mb", "cosine", "max_abs_err",
    "top1_agreement", "top1", "top1_drop", "software_gpu", "device", "env_id",
)

# used by the page, not exported: the baseline a case names, and its key into the raw samples
INTERNAL_COLUMNS = ("baseline_backend", "baseline_precision", "key")


def _device(info: dict[str, Any]) -> str | None:
    """What really ran the case, as the backend reported it (a software adapter is named as such)."""
    for key in ("adapter", "gpu", "providers", "device"):
        value = info.get(key)
        if value:
            return ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    return None


def flat_record(run: Run, record: dict[str, Any], machine: str) -> dict[str, Any]:
    latency = record.get("latency_ms") or {}
    ci = record.get("median_ci_ms") or {}
    accuracy = record.get("accuracy") or {}
    gpu = record.get("gpu_telemetry") or {}
    info = record.get("backend_info") or {}
    baseline = record.get("baseline") or {"backend": "tflite_cpu", "precision": "fp32"}
    size, gzip_size = record.get("model_size_bytes"), record.get("model_size_gzip_bytes")
    return {
        "run": run.name, "machine_id": run.machine_id, "machine": machine,
        "scenario": record.get("scenario"), "case_id": record["case_id"], "model": record.get("model"),
        "backend": record.get("backend"), "backend_label": record.get("backend_label") or record.get("backend"),
        "precision": record.get("precision"), "compression": record.get("compression") or "none",
        "batch_size": record.get("batch_size"), "mode": record.get("mode"), "status": record.get("status"),
        "reason": record.get("reason"),
        "p50_ms": latency.get("p50"), "p90_ms": latency.get("p90"), "p95_ms": latency.get("p95"),
        "p99_ms": latency.get("p99"), "mean_ms": latency.get("mean"),
        "ci_low_ms": ci.get("low"), "ci_high_ms": ci.get("high"), "runs": record.get("runs"),
        "throughput_ips": record.get("throughput_ips"), "speedup": None,
        "baseline": f"{baseline.get('backend')} {baseline.get('precision')}",
        "init_ms": record.get("init_ms"), "first_inference_ms": record.get("first_inference_ms"),
        "peak_rss_mb": record.get("peak_rss_mb"), "gpu_memory_mb": gpu.get("gpu_memory_peak_mb"),
        "cpu_percent": record.get("cpu_percent"), "gpu_util_pct": gpu.get("gpu_util_mean_pct"),
        "size_mb": size / 1e6 if size else None, "gzip_mb": gzip_size / 1e6 if gzip_size else None,
        "cosine": accuracy.get("cosine_min"), "max_abs_err": accuracy.get("max_abs_err"),
        "top1_agreement": accuracy.get("top1_agreement"), "top1": accuracy.get("top1"),
        "top1_drop": accuracy.get("top1_drop"), "software_gpu": bool(info.get("software_device")),
        "device": _device(info), "env_id": record.get("env_id"),
        "baseline_backend": baseline.get("backend"), "baseline_precision": baseline.get("precision"),
        "key": f"{run.name}/{record['case_id']}",
    }


def records_frame(runs: list[Run], machine_labels: dict[str, str]) -> pd.DataFrame:
    """Every record of every run, flat, with `speedup` filled in; ordered as the runs wrote them."""
    rows = [flat_record(run, record, machine_labels[run.machine_id]) for run in runs for record in run.records]
    frame = pd.DataFrame(rows, columns=[*COLUMNS, *INTERNAL_COLUMNS])
    frame["speedup"] = baseline_speedups(frame)
    modes = frame["mode"].nunique()
    frame["config"] = [config_label(row, modes) for row in frame.itertuples(index=False)]
    return frame


def baseline_speedups(frame: pd.DataFrame) -> pd.Series:
    """p50 of the baseline case / p50 of the case, for cases whose baseline was measured in the same run.

    The baseline is the dense case at the baseline precision on the backend the scenario names, matched by label
    first (a scenario may list one backend twice under two labels), then by backend name if that is unique.
    """
    dense = frame[(frame["status"] == "passed") & (frame["compression"] == "none") & frame["p50_ms"].notna()]
    by_label: dict[tuple[Any, ...], float] = {}
    by_name: dict[tuple[Any, ...], list[float]] = {}
    for row in dense.itertuples(index=False):
        key = (*(getattr(row, k) for k in SPEEDUP_KEYS), row.precision)
        by_label[(*key, row.backend_label)] = row.p50_ms
        by_name.setdefault((*key, row.backend), []).append(row.p50_ms)
    speedups = []
    for row in frame.itertuples(index=False):
        key = (*(getattr(row, k) for k in SPEEDUP_KEYS), row.baseline_precision)
        base = by_label.get((*key, row.baseline_backend))
        if base is None:
            named = by_name.get((*key, row.baseline_backend), [])
            base = named[0] if len(named) == 1 else None
        usable = base is not None and row.status in ("passed", "invalid") and row.p50_ms and row.p50_ms > 0
        speedups.append(base / row.p50_ms if usable else np.nan)
    return pd.Series(speedups, index=frame.index, dtype="float64")


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
