"""The HTML report without a browser: its numbers (speed-ups, Pareto fronts, sketches), its escaping, merging
runs, and `accelbench report` as a user types it. The browser side is in test_report_browser.py."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from harness.console import best_table, print_summary, summary_table
from reporting.charts import accuracy_figure
from reporting.frame import latency_sketch, pareto_front, records_frame
from reporting.html import (
    FAILED_BACKGROUND,
    PLOTLY_BUNDLE,
    build_page,
    js_version,
    plotly_py_js_version,
    script_json,
)
from results.record import Record
from results.runs import Run, RunFolderError, load_run, load_runs
from sysinfo.envinfo import machine_id
from tests.conftest import run_cli
from tests.records import make_record

MACHINE_A = {"cpu_model": "CPU A", "cpu_logical": 2, "memory_gb": 24, "arch": "x86_64", "gpu": None}
MACHINE_B = {"cpu_model": "CPU B", "cpu_logical": 16, "memory_gb": 128, "arch": "x86_64",
             "gpu": {"driver_version": "580.1", "cuda_driver_version": "13.0",
                     "devices": [{"name": "NVIDIA H100", "memory_mb": 81559}]}}


def record(case_id: str, backend: str, p50: float | None, *, precision: str = "fp32", batch: int = 1,
           label: str | None = None, compression: str = "none", status: str = "passed",
           baseline: str | None = "tflite_cpu", cosine: float | None = None,
           reason: str | None = None) -> Record:
    """A record reduced to what the report reads. baseline=None: the scenario named none."""
    return make_record(
        case_id, p50_ms=p50, cosine=cosine, backend=backend, backend_label=label or backend, precision=precision,
        compression=compression, batch_size=batch, status=status,
        reason=reason or (None if status == "passed" else f"why {case_id}"),
        latency_ms=None if p50 is None else {"p50": p50, "p90": p50, "p99": p50},
        throughput_ips=None if p50 is None else batch * 1000 / p50,
        baseline=None if baseline is None else {"backend": baseline, "precision": "fp32"})


def fidelity_failure(case_id: str, backend: str, p50: float, cosine: float, **kwargs: Any) -> Record:
    """A conversion that ran and was timed but whose outputs miss the fidelity guard: failed, numbers kept."""
    reason = f"fidelity: output 'logits': cosine {cosine} < min_cosine 0.99"
    failed = record(case_id, backend, p50, status="failed", cosine=cosine, reason=reason, **kwargs)
    failed.accuracy.violations = [reason.removeprefix("fidelity: ")]
    return failed


def section(page: str, start: str, end: str) -> str:
    """The page from `start` to the next `end` after it."""
    begin = page.index(start)
    return page[begin:page.index(end, begin)]


def run_of(name: str, machine: dict[str, Any], records: list[dict[str, Any]]) -> Run:
    return Run(Path("/runs") / name, {"machine": machine}, {"scenarios": ["s"]}, records)


def speedups(runs: list[Run]) -> dict[tuple[str, str], float]:
    frame = records_frame(runs, {run.machine_id: run.name for run in runs})
    return {(row.run, row.case_id): row.speedup for row in frame.itertuples(index=False)}


def test_speedup_is_the_baseline_p50_over_the_case_p50_within_one_run_only() -> None:
    cpu_run = run_of("cpu", MACHINE_A, [
        record("tfl", "tflite_cpu", 2.0), record("ort", "onnxruntime_cpu", 1.0),
        record("tfl-int8", "tflite_cpu", 0.5, precision="int8"),
        record("tfl-pruned", "tflite_cpu", 1.0, compression="prune:0.75"),
        record("tfl-b4", "tflite_cpu", 6.0, batch=4), record("ort-b4", "onnxruntime_cpu", 3.0, batch=4),
        record("skipped", "tensorrt", None, status="skipped"),
    ])
    gpu_run = run_of("gpu", MACHINE_B, [record("ort", "onnxruntime_cpu", 0.25)])  # no tflite_cpu here
    same_machine_again = run_of("cpu-again", MACHINE_A, [record("tfl", "tflite_cpu", 4.0),
                                                         record("ort", "onnxruntime_cpu", 1.0)])
    got = speedups([cpu_run, gpu_run, same_machine_again])
    assert got[("cpu", "tfl")] == 1.0
    assert got[("cpu", "ort")] == 2.0
    assert got[("cpu", "tfl-int8")] == 4.0
    assert got[("cpu", "tfl-pruned")] == 2.0  # against the dense baseline
    assert got[("cpu", "ort-b4")] == 2.0  # against the baseline at its own batch size
    assert math.isnan(got[("cpu", "skipped")])
    assert math.isnan(got[("gpu", "ort")])  # the other machine's tflite_cpu is never its baseline
    assert got[("cpu-again", "ort")] == 4.0  # its own run's baseline, not the first run's


def test_baseline_by_label_and_ambiguous_backend_names() -> None:
    records = [record("t1", "tflite_cpu", 2.0, label="one_thread", baseline="two_threads"),
               record("t2", "tflite_cpu", 1.0, label="two_threads", baseline="two_threads"),
               record("ort", "onnxruntime_cpu", 0.5, baseline="two_threads"),
               record("ort-by-name", "onnxruntime_cpu", 0.5, batch=2, baseline="tflite_cpu"),
               record("t1-b2", "tflite_cpu", 2.0, batch=2, label="one_thread"),
               record("t2-b2", "tflite_cpu", 1.0, batch=2, label="two_threads")]
    got = speedups([run_of("r", MACHINE_A, records)])
    assert got[("r", "t1")] == 0.5 and got[("r", "ort")] == 2.0
    assert math.isnan(got[("r", "ort-by-name")])  # "tflite_cpu" names two cases: no guess


def test_numbers_that_need_a_qualifier_carry_it_on_the_page() -> None:
    software = record("gpu", "tflite_gpu", 3.0)
    software.backend_info = {"software_device": True, "adapter": "llvmpipe (LLVM 19.1.7, 256 bits)"}
    invalid = record("short", "onnxruntime_cpu", 1.0, status="invalid")
    failed = record("crash", "onnxruntime_cpu", None, status="failed", batch=2)
    page = build_page([run_of("r", MACHINE_A, [record("tfl", "tflite_cpu", 2.0), software, invalid, failed])])
    badges = page[page.index('<p class="badges">'):page.index("</p>", page.index('<p class="badges">'))]
    for text in ("2 passed", "software GPU: tflite_gpu", "llvmpipe (LLVM 19.1.7, 256 bits)", "1 INVALID", "1 failed"):
        assert text in badges, text
    matrix = page[page.index('<table class="matrix">'):page.index("</table>", page.index('<table class="matrix">'))]
    assert matrix.count('<span class="flag warn">software GPU</span>') == 1
    assert matrix.count('<span class="flag warn">INVALID</span>') == 1
    assert "0.67×" in matrix and "2.00×" in matrix  # tflite_gpu 2/3, the INVALID case 2/1: shown, and flagged
    assert "why crash" in page  # the failure's reason, in the matrix cell's title and the problems table


def test_unnamed_baseline_is_the_first_fp32_case_that_ran_and_the_report_names_it() -> None:
    """A scenario of a user's .onnx on ONNX Runtime only: no tflite_cpu can ever run, yet speed-ups are shown."""
    records = [record("ort-fp32", "onnxruntime_cpu", 2.0, baseline=None),
               record("ort4-fp32", "onnxruntime_cpu", 1.0, label="ort_4_threads", baseline=None),
               record("ort-fp16", "onnxruntime_cpu", 0.5, precision="fp16", baseline=None),
               record("ort-fp32-b4", "onnxruntime_cpu", None, batch=4, status="failed", baseline=None),
               record("ort4-fp32-b4", "onnxruntime_cpu", 3.0, batch=4, label="ort_4_threads", baseline=None),
               record("ort-int8-b4", "onnxruntime_cpu", 1.5, batch=4, precision="int8", baseline=None)]
    records[1].baseline = {"auto": True}  # the other spelling of "not named"
    records[2] = Record.from_json({k: v for k, v in records[2].to_json().items() if k != "baseline"})  # never had it
    run = run_of("onnx-only", MACHINE_A, records)
    frame = records_frame([run], {run.machine_id: "A"}).set_index("case_id")
    assert frame.loc["ort-fp32", "speedup"] == 1.0 and frame.loc["ort4-fp32", "speedup"] == 2.0
    assert frame.loc["ort-fp16", "speedup"] == 4.0
    assert frame.loc["ort-int8-b4", "speedup"] == 2.0  # b4's first fp32 case failed: the next one that ran
    assert math.isnan(frame.loc["ort-fp32-b4", "speedup"])
    assert frame.loc["ort-fp16", "baseline"] == "onnxruntime_cpu fp32"  # the CSV names the case
    assert frame.loc["ort-int8-b4", "baseline"] == "ort_4_threads fp32"
    page = build_page([run])
    assert ("Speed-up against onnxruntime_cpu fp32 at batch 1 / ort_4_threads fp32 at batch 4 (the model&#39;s first "
            "fp32 case that ran; name another with `baseline:") in page
    matrix = section(page, '<table class="matrix">', "</table>")
    assert matrix.count('<span class="su">baseline</span>') == 2 and "4.00×" in matrix
    assert "rgba(46, 160, 67" in matrix  # coloured: faster than the baseline


def test_unnamed_baseline_with_nothing_fp32_that_ran_says_so() -> None:
    run = run_of("r", MACHINE_A, [record("fp16", "onnxruntime_cpu", 1.0, precision="fp16", baseline=None)])
    page = build_page([run])
    assert "No speed-up: no dense fp32 case of this model passed in this run" in page


def test_a_failed_case_with_timings_shows_its_p50_in_red_and_is_never_a_speed_up() -> None:
    broken = fidelity_failure("ort-fp16", "onnxruntime_cpu", 0.5, 0.04, precision="fp16", baseline=None)
    run = run_of("r", MACHINE_A, [record("ort-fp32", "onnxruntime_cpu", 2.0, baseline=None, cosine=1.0), broken])
    frame = records_frame([run], {run.machine_id: "A"}).set_index("case_id")
    assert math.isnan(frame.loc["ort-fp16", "speedup"])
    page = build_page([run])
    matrix = section(page, '<table class="matrix">', "</table>")
    cell = section(matrix, '<div class="cell failed"', "</div>")
    assert f"background: {FAILED_BACKGROUND}" in cell and "rgba(46, 160, 67" not in cell
    assert "0.5 ms" in cell and '<span class="flag failed">failed: fidelity</span>' in cell
    assert "cosine 0.04 &lt; min_cosine 0.99" in cell  # the reason, in the tooltip
    assert "×" not in cell

    table = summary_table(run.records)
    assert [row.style for row in table.rows] == [None, "red"]
    console = Console(record=True, width=200)
    print_summary(run.records, "/tmp/run", console)
    text = console.export_text()
    assert any("ort-fp16" in line and "failed: fidelity" in line and "0.5" in line for line in text.splitlines())


def test_pareto_front_and_best_answer_only_count_passed_cases() -> None:
    records = [record("fp32", "onnxruntime_cpu", 2.0, baseline=None, cosine=1.0),
               record("int8", "onnxruntime_cpu", 1.0, precision="int8", baseline=None, cosine=0.999),
               record("fp32-short", "tflite_cpu", 0.4, baseline=None, cosine=1.0, status="invalid"),
               fidelity_failure("fp16", "onnxruntime_cpu", 0.2, 0.04, precision="fp16", baseline=None),
               record("fp32-b8", "onnxruntime_cpu", None, batch=8, baseline=None, status="failed"),
               fidelity_failure("fp16-b8", "onnxruntime_cpu", 3.0, 0.04, batch=8, precision="fp16", baseline=None)]
    run = run_of("r", MACHINE_A, records)
    cases = records_frame([run], {run.machine_id: "A"})
    figure = accuracy_figure(cases, "fidelity")
    traces = {trace.name: trace for trace in figure.data}
    front = traces["Pareto front (passed cases)"]
    # each point names its case and the metric that judged it
    assert list(front.text) == ["onnxruntime_cpu · int8 · b1<br>cos 0.999000",
                                "onnxruntime_cpu · fp32 · b1<br>cos 1.000000"]
    excluded = " ".join(traces["INVALID or failed (not on the front)"].text)
    assert "tflite_cpu · fp32 · b1 (INVALID)" in excluded
    assert "onnxruntime_cpu · fp16 · b1 (failed: fidelity)" in excluded

    page = build_page([run])
    answer = section(page, '<section id="answer">', "</section>")
    assert page.index('<section id="answer">') < page.index('<table class="matrix">')  # the question first
    rows = answer.split("<tr")[2:]
    assert "<strong>onnxruntime_cpu · int8</strong>" in rows[0]
    assert "2.00× sequential vs onnxruntime_cpu fp32" in rows[0]  # a run without races: labelled sequential
    assert "fastest by sequential p50 (not raced)" in rows[0]
    assert "cos 0.999000" in rows[0]
    assert ("faster but not counted: tflite_cpu · fp32 (INVALID, 0.4 ms); onnxruntime_cpu · fp16 (failed: fidelity, "
            "0.2 ms)") in rows[0]
    assert "no case passed (1 failed, 1 failed: fidelity)" in rows[1]

    console = Console(record=True, width=200)
    console.print(best_table(run.records))
    lines = console.export_text().splitlines()
    assert any("onnxruntime_cpu int8" in line and "2.00× sequential vs onnxruntime_cpu fp32" in line
               and "fastest by sequential p50 (not raced)" in line for line in lines)  # a run without races
    assert any(" 8 " in line and "no case passed" in line for line in lines)



def test_an_int8_file_that_kept_most_nodes_fp32_says_so_beside_its_figures() -> None:
    """PicoDet's int8 passed the guard by keeping 515 of its nodes fp32: it must not read as int8 anywhere."""
    records = [record("fp32", "onnxruntime_cpu", 2.0, baseline=None, cosine=1.0),
               record("int8", "onnxruntime_cpu", 1.9, precision="int8", baseline=None, cosine=0.995),
               record("int8d", "onnxruntime_cpu", 1.0, precision="int8_dynamic", baseline=None, cosine=0.99)]
    records[1].artifact_meta = {"quantization": {"kept_fp32": {"nodes": 95, "of_nodes": 102}}}
    records[2].artifact_meta = {"quantization": {"kept_fp32": {"nodes": 3, "of_nodes": 102}}}
    assert records[1].kept_fp32_text == "95 of 102 nodes kept fp32 (mostly fp32)"
    assert records[2].kept_fp32_text == "3 of 102 nodes kept fp32" and records[0].kept_fp32_text is None
    run = run_of("r", MACHINE_A, records)
    page = build_page([run])
    assert "95 of 102 nodes kept fp32 (mostly fp32)" in section(page, '<section id="records"', "</section>")
    console = Console(record=True, width=240)
    print_summary(run.records, "/tmp/run", console)
    lines = console.export_text().splitlines()
    assert any("int8 " in line and "95/102 nodes" in line for line in lines)  # the trade-off table's column
    assert any("int8_dynamic" in line and "3 of 102 nodes kept fp32" in line for line in lines)  # the best one

def test_machine_id_ignores_host_and_software_but_not_hardware() -> None:
    same = {**MACHINE_A, "os": "another kernel", "python": "3.12", "cpu_affinity": 1}
    assert machine_id(MACHINE_A) == machine_id(same)
    assert machine_id(MACHINE_A) != machine_id({**MACHINE_A, "cpu_logical": 4})
    # the GPU driver is software (an upgrade on the same card is the same machine); the card is hardware
    assert machine_id(MACHINE_B) == machine_id({**MACHINE_B, "gpu": {**MACHINE_B["gpu"], "driver_version": "581"}})
    other_card = {**MACHINE_B["gpu"], "devices": [{"name": "NVIDIA H200", "memory_mb": 143771}]}
    assert machine_id(MACHINE_B) != machine_id({**MACHINE_B, "gpu": other_card})


def test_pareto_front_keeps_only_cases_nothing_beats_on_both_axes() -> None:
    points = [(1.0, 0.9), (2.0, 0.95), (3.0, 0.94), (0.5, 0.5), (2.0, 0.99), (4.0, 0.99)]
    assert pareto_front(points) == [3, 0, 4]
    assert pareto_front([]) == []


def test_latency_sketch_is_made_of_measured_samples_with_the_extremes() -> None:
    rng = np.random.default_rng(0)
    samples = (rng.lognormal(13, 0.3, 50_000)).astype(np.int64)
    sketch = latency_sketch(samples.tolist(), points=200)
    assert len(sketch) == 200 and sketch == sorted(sketch)
    assert sketch[0] == float(f"{samples.min() / 1e6:.4g}") and sketch[-1] == float(f"{samples.max() / 1e6:.4g}")
    measured = {float(f"{v / 1e6:.4g}") for v in samples}
    assert set(sketch) <= measured
    assert latency_sketch([1_000_000, 3_000_000]) == [1.0, 3.0]  # few samples: all of them


def test_script_json_cannot_close_its_script_tag() -> None:
    value = {"name": "</script><script>alert(1)</script>&<!--", "line": "a\u2028b"}
    text = script_json(value)
    assert not set(text) & {"<", ">", "&", "\u2028"}
    assert json.loads(text) == value


def test_vendored_plotly_bundle_matches_the_plotly_that_writes_the_figures() -> None:
    vendored = js_version(PLOTLY_BUNDLE.read_text(encoding="utf-8")[:400])
    assert vendored is not None and vendored == plotly_py_js_version(), (
        f"reporting/static/vendor has plotly.js {vendored}, plotly (Python) writes for {plotly_py_js_version()}: "
        "run `make vendor-plotly`")


# -- real runs -------------------------------------------------------------------------------------------------

@pytest.mark.e2e
def test_markup_from_scenarios_and_file_names_is_text_in_the_report(escaping_run: Path) -> None:
    records = load_run(escaping_run).records
    assert [r.status for r in records] == ["passed", "skipped"]  # an .onnx file on tflite_cpu is a skip
    page = (escaping_run / "report.html").read_text(encoding="utf-8")
    for raw in ("<script>alert", "<img src=x", "</script><script>"):
        assert raw not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.onnx" in page  # shown, escaped, in the HTML
    assert "\\u003cimg src=x onerror=alert(3)\\u003e" in page  # and in the chart JSON


@pytest.mark.e2e
def test_report_cli_rerenders_and_merges(escaping_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(escaping_run, copy)
    (copy / "report.html").unlink()
    done = run_cli("report", str(copy))
    assert done.returncode == 0, done.stderr
    assert (copy / "report.html").is_file() and f"report: {copy / 'report.html'}" in done.stdout.replace("\n", "")
    merged = tmp_path / "out" / "both.html"
    done = run_cli("report", str(escaping_run), str(copy), "-o", str(merged))
    assert done.returncode == 0, done.stderr
    page = merged.read_text(encoding="utf-8")
    assert page.count('class="run-tag"') == 4  # two runs of one machine: each cell says which run it is
    assert f"{escaping_run.name}</td>" in page and "copy</td>" in page


@pytest.mark.e2e
def test_report_of_a_run_killed_mid_write_skips_the_torn_record(escaping_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "killed"
    shutil.copytree(escaping_run, copy)
    with open(copy / "results.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"case_id": "half-written", "latency_ms": {"p5')
    page = build_page([load_run(copy)])
    assert "half-written" not in page and "Every record (2)" in page


def test_runs_in_folders_of_the_same_name_are_told_apart(tmp_path: Path) -> None:
    for parent in ("monday", "tuesday"):
        (tmp_path / parent / "run").mkdir(parents=True)
        (tmp_path / parent / "run" / "env.json").write_text(json.dumps({"machine": MACHINE_A}))
    runs = load_runs([tmp_path / "monday" / "run", tmp_path / "tuesday" / "run"])
    assert [run.name for run in runs] == ["monday/run", "tuesday/run"]
    with pytest.raises(RunFolderError, match="given twice"):
        load_runs([tmp_path / "monday" / "run", tmp_path / "monday" / ".." / "monday" / "run"])


@pytest.mark.parametrize(("setup", "fragment"), [
    (lambda folder: None, "no such run folder"),
    (lambda folder: folder.mkdir(), "not an accelbench run folder"),
    (lambda folder: (folder.mkdir(), (folder / "results.jsonl").write_text("")), "env.json: missing"),
    (lambda folder: (folder.mkdir(), (folder / "env.json").write_text("{not json")), "env.json: unreadable"),
])
def test_report_cli_names_a_folder_that_is_not_a_run(tmp_path: Path, setup: Any, fragment: str) -> None:
    folder = tmp_path / "not-a-run"
    setup(folder)
    done = run_cli("report", str(folder))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert str(folder) in done.stderr.replace("\n", "") and fragment in done.stderr
