"""Which case a speed-up divides by, from one run's records: the harness races against it (harness.race), the
console and the report divide by it (reporting.baseline), so the rule lives here, once.

A record's `baseline` is either what the scenario named, `{"backend": LABEL_OR_NAME, "precision": P}`, or "not
named" (`None`, a missing key, or `{"auto": true}`). Not named means: per (scenario, model, batch size, mode) the
first record in the run's order (the scenario's configuration order) that is fp32, dense and passed. A default
that names a fixed backend (tflite_cpu) cannot run a user's .onnx file, so a scenario of user models would get no
speed-up at all; the first fp32 case that ran always exists when anything fp32 ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from results.record import Record

GROUP_KEYS = ("scenario", "model", "batch_size", "mode")  # inside one run: a speed-up never crosses runs
AUTO_PRECISION = "fp32"


@dataclass(frozen=True)
class Baseline:
    """The case a record's speed-up divides by: its index in the run's records and how to name it."""

    index: int
    label: str
    precision: str
    p50_ms: float
    auto: bool

    @property
    def name(self) -> str:
        """How the report and the CSV name the baseline case, e.g. "onnxruntime_cpu fp32"."""
        return f"{self.label} {self.precision}"


def named_baseline(record: Record) -> dict[str, Any] | None:
    """The baseline the scenario named for this record, or None when it named none (the first fp32 case then)."""
    spec = record.baseline
    if not isinstance(spec, dict) or spec.get("auto") or not spec.get("backend"):
        return None
    return {"backend": spec["backend"], "precision": spec.get("precision") or AUTO_PRECISION}


def p50_of(record: Record) -> float | None:
    """The record's median latency, or None where it was not measured (a skip, a crash)."""
    p50 = record.p50_ms
    return p50 if p50 is not None and p50 > 0 else None


def group_key(record: Record) -> tuple[Any, ...]:
    """(scenario, model, batch size, mode): what a speed-up is computed within, and what a race races."""
    return tuple(getattr(record, key) for key in GROUP_KEYS)


def _can_be_baseline(record: Record) -> bool:
    """Measured, valid and dense: a number others may be divided by."""
    return record.status == "passed" and record.compression == "none" and p50_of(record) is not None


def resolve_baselines(records: list[Record]) -> list[Baseline | None]:
    """For each record of ONE run, its baseline case in that run, or None where none was measured.

    A named baseline is matched by label first (a scenario may list one backend twice under two labels), then by
    backend name where that is unique, as the report always did. An unnamed one is the group's first fp32 dense
    passed record.
    """
    by_label: dict[tuple[Any, ...], int] = {}
    by_name: dict[tuple[Any, ...], list[int]] = {}
    first_fp32: dict[tuple[Any, ...], int] = {}
    for index, record in enumerate(records):
        if not _can_be_baseline(record):
            continue
        key = (*group_key(record), record.precision)
        by_label[(*key, record.label)] = index  # the last wins: a resumed run's later record
        by_name.setdefault((*key, record.backend), []).append(index)
        if record.precision == AUTO_PRECISION:
            first_fp32.setdefault(group_key(record), index)
    resolved: list[Baseline | None] = []
    for record in records:
        spec = named_baseline(record)
        if spec is None:
            found = first_fp32.get(group_key(record))
        else:
            key = (*group_key(record), spec["precision"])
            found = by_label.get((*key, spec["backend"]))
            if found is None:
                named = by_name.get((*key, spec["backend"]), [])
                found = named[0] if len(named) == 1 else None
        if found is None:
            resolved.append(None)
            continue
        base = records[found]
        resolved.append(Baseline(index=found, label=base.label, precision=base.precision,
                                 p50_ms=p50_of(base) or float("nan"), auto=spec is None))
    return resolved
