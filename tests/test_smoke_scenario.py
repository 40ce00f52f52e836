"""The CI scenario end to end, exactly as a user runs it: `pytest scenarios/smoke.yaml`."""

from __future__ import annotations

import json

import pytest


@pytest.mark.e2e
def test_smoke_scenario_passes_every_case(smoke_run) -> None:
    out, done = smoke_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "8 passed" in done.stdout
    assert "accelbench results" in done.stdout  # the summary table closes the pytest output
    assert f"report: {out / 'report.html'}" in done.stdout.replace("\n", "")  # the run ends with its report
    assert (out / "report.html").stat().st_size > 0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["model"] for r in records} == {"digits_cnn", "mobilenet_v2"}
    assert {r["backend"] for r in records} == {"tflite_cpu", "onnxruntime_cpu"}
    assert {r["batch_size"] for r in records} == {1, 4}
    assert [r["status"] for r in records] == ["passed"] * 8
    for record in records:
        assert record["runs"] >= 50 and record["measured_seconds"] >= 1.0
        assert len(record["samples_ns"]) == record["runs"]
        assert record["latency_ms"]["min"] <= record["latency_ms"]["p50"] <= record["latency_ms"]["p99"]
        assert record["median_ci_ms"]["low"] <= record["latency_ms"]["p50"] <= record["median_ci_ms"]["high"]
        assert record["backend_info"]["threads"] == 2
    benchmark = json.loads((out / "benchmark.json").read_text())
    assert sorted(b["name"] for b in benchmark["benchmarks"]) == sorted(r["case_id"] for r in records)
