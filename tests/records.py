"""The one way tests make a results record: through the typed Record, as the engine does, so a test can never
hold a record the engine could not have written (a misspelt field fails here, not as a silent None downstream)."""

from __future__ import annotations

from typing import Any

from results.record import Record
from results.stats import latency_summary_ms


def make_record(case_id: str = "m-fp32-b1-tflite_cpu", *, p50_ms: float | None = None,
                samples_ns: list[int] | None = None, cosine: float | None = None, **fields: Any) -> Record:
    """A record of one case. Measured when it has samples (the latency summary is computed from them, as the engine
    does), a bare p50 or a latency summary; skipped otherwise, unless `status` says so. `cosine` gives it one
    output's fidelity. Any other record field may be given by name."""
    latency = latency_summary_ms(samples_ns) if samples_ns else {"p50": p50_ms} if p50_ms is not None else None
    latency = fields.pop("latency_ms", latency)
    status = fields.pop("status", "passed" if latency is not None else "skipped")
    data: dict[str, Any] = {
        "case_id": case_id, "scenario": "s", "model": "m", "backend": "tflite_cpu", "precision": "fp32",
        "compression": "none", "batch_size": 1, "mode": "latency", "status": status,
        "reason": None if status == "passed" else f"why {case_id}", "latency_ms": latency,
        "samples_ns": list(samples_ns or []),
    }
    if cosine is not None:
        data["accuracy"] = {"cosine_min": cosine, "violations": [], "outputs": [{"name": "logits", "cosine": cosine}]}
    return Record.from_json({**data, **fields})
