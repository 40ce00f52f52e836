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
