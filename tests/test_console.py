"""The console summary prints what the records say, including text that looks like rich markup."""

from __future__ import annotations

from rich.console import Console

from harness.console import print_summary
from tests.records import make_record


def test_reasons_and_names_with_brackets_are_printed_verbatim():
    records = [
        make_record("m[1]-fp32-b1-tensorrt", model="m[1]", backend="tensorrt",
                    reason="tensorrt is not installed (pip install accelbench[gpu])"),
        make_record("x-fp32-b1-tflite_gpu", model="x", backend="tflite_gpu", latency_ms={"p50": 1.0, "p99": 2.0},
                    backend_info={"software_device": True, "adapter": "llvmpipe [sw]"},
                    accuracy={"warning": "constant [reference]"}),
    ]
    console = Console(record=True, width=300)
    print_summary(records, "/tmp/run[1]", console)
    text = console.export_text()
    assert "skipped m[1]-fp32-b1-tensorrt: tensorrt is not installed (pip install accelbench[gpu])" in text
    assert "x-fp32-b1-tflite_gpu [software GPU]" in text
    assert "note tflite_gpu ran on llvmpipe [sw], a SOFTWARE GPU adapter on the CPU" in text
    assert "note x: constant [reference]" in text and "results: /tmp/run[1]" in text


def test_the_ab_table_prints_every_verdict_and_status() -> None:
    """Each verdict has its style (or none: "unchanged" is plain text, never an empty markup tag)."""
    from harness.console import ab_table
    from results.ab_record import AbRecord, SideInfo

    records = []
    for verdict, status in (("slower", "compared"), ("faster", "compared"), ("unchanged", "compared"),
                            ("cannot tell", "compared"), ("broken", "failed"), (None, "refused")):
        records.append(AbRecord(
            case_id=f"case[{verdict}]", scenario="s", model="m", backend="tflite_cpu", backend_label="tflite_cpu",
            precision="fp32", batch_size=1, method="lockstep", status=status, verdict=verdict,
            base=SideInfo(name="base", spec={}, description="as the scenario says", median_ms=1.0, geomean_ms=0.98),
            new=SideInfo(name="new", spec={}, description="threads=[2]", median_ms=1.05, geomean_ms=1.03),
            threshold=0.05, min_effect=0.025, alpha=0.01, confidence=0.95,
            ratio=1.05 if status == "compared" else None, ci_low=1.01 if status == "compared" else None,
            ci_high=1.09 if status == "compared" else None, p_value=0.001, mde=float("inf")))
    console = Console(record=True, width=300)
    console.print(ab_table(records))
    text = console.export_text()
    for verdict in ("slower", "faster", "unchanged", "cannot tell", "broken", "refused"):
        assert f"case[{verdict if verdict != 'refused' else None}]" in text and verdict in text
    assert "1.010–1.090" in text
    assert " 0.98 " in text and " 1.03 " in text and " 1.05 " not in text  # each side's geometric mean, not median
