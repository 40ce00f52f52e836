"""The HTML report as a reader sees it: opened from disk in headless Chromium (Debian's, driven by playwright),
with no network, no console error, every chart drawn, tables that sort and filter, a CSV that downloads.

The screenshots land in each run folder (report.png); the figures (size, render time) are printed (-s shows them).
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from reporting.baseline import named_baseline
from reporting.browser import open_report, screenshot_page
from reporting.frame import COLUMNS
from reporting.html import write_report
from results.runs import load_run
from tests.conftest import FAST_MEASURE, XSS_BACKEND, XSS_MODEL, expand_file, run_cases, write_scenario

pytestmark = pytest.mark.e2e

OTHER_MACHINE = {"cpu_model": "Test CPU 9000 (env.json edited to stand for a second machine)", "cpu_logical": 16,
                 "cpu_physical": 8, "memory_gb": 128.0, "arch": "x86_64", "os": "Linux", "python": "3.11.7",
                 "gpu": {"driver_version": "580.65", "cuda_driver_version": "13.0",
                         "devices": [{"name": "NVIDIA H100 80GB HBM3", "memory_mb": 81559.0}]}}


def assert_clean_load(check) -> None:
    assert check.console_errors == [] and check.page_errors == [], (check.console_errors, check.page_errors)
    assert check.external_requests == [], check.external_requests
    assert check.dialogs == []
    assert check.chart_containers > 0 and check.rendered_charts == check.chart_containers


def visible_rows(page, table: str) -> list[list[str]]:
    return page.eval_on_selector_all(f"#{table} tbody tr:not([hidden])",
                                     "rows => rows.map(r => Array.from(r.cells, c => c.textContent.trim()))")


def test_smoke_report_loads_offline_with_every_chart_drawn(smoke_run, chromium) -> None:
    out, done = smoke_run
    assert done.returncode == 0, done.stdout[-2000:]
    report = out / "report.html"
    size_mb = report.stat().st_size / 1e6
    assert size_mb < 6
    with open_report(report) as (page, check):
        screenshot_page(page, out / "report.png")
        assert_clean_load(check)
        assert check.chart_containers >= 8  # two models × (latency, throughput, fidelity, resources) at least
        assert page.locator("section.machine").count() == 1
        assert page.locator("table.matrix").count() == 2 and "baseline" in page.inner_text("table.matrix >> nth=0")
        answers = visible_rows(page, "answer-table")  # model, batch, best, how chosen, p50, items/s, speed-up, fidelity
        assert [(row[0], row[1]) for row in answers] == [
            ("digits_cnn", "1"), ("digits_cnn", "4"), ("mobilenet_v2", "1"), ("mobilenet_v2", "4")]
        # fidelity: the metric that judged the worst output, with its bar
        assert all(row[2] and row[3] and float(row[4].replace(",", "")) > 0
                   and row[7].startswith(("cos ", "rel L2 ", "exact ", "|err| ≤ ")) for row in answers)
        assert page.locator("#answer").bounding_box()["y"] < page.locator("table.matrix").first.bounding_box()["y"]

        headers = page.eval_on_selector_all("#records-table thead th", "ths => ths.map(t => t.textContent)")
        p50 = headers.index("p50 ms")
        page.click(f"#records-table thead th >> nth={p50}")
        values = [float(row[p50].replace(",", "")) for row in visible_rows(page, "records-table")]
        assert len(values) == 8 and values == sorted(values)

        page.fill("input[data-table=records-table]", "onnxruntime b4")
        assert sorted(row[0] for row in visible_rows(page, "records-table")) == [
            "digits_cnn-fp32-b4-onnxruntime_cpu", "mobilenet_v2-fp32-b4-onnxruntime_cpu"]

        with page.expect_download() as download:
            page.click("#download-csv")
        rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
        assert len(rows) == 8 and list(rows[0]) == list(COLUMNS)
        assert {row["status"] for row in rows} == {"passed"}

        page.emulate_media(media="print")  # printable: the print stylesheet lays it out, Chromium prints it
        pdf = page.pdf(path=str(out / "report.pdf"), format="A4", landscape=True)
        pages = re.search(rb"/Type\s*/Pages\b.*?/Count (\d+)", pdf, re.S)
        assert pdf.startswith(b"%PDF") and pages and int(pages.group(1)) >= 3  # the charts and tables, paged
    print(f"\nsmoke report: {size_mb:.2f} MB, all {check.rendered_charts} charts drawn {check.render_ms:.0f} ms "
          f"after navigation; screenshot {out / 'report.png'}")


@pytest.fixture(scope="module")
def other_machine_run(tmp_path_factory: pytest.TempPathFactory, digits_artifacts) -> Path:
    """A real run with a failure and a skip, whose env.json then claims another machine (there is no second
    machine here; the machine identity is the only thing changed)."""
    from scenario.skips import cached_availability
    from tests.fault_backend import REGISTRATION

    folder = tmp_path_factory.mktemp("other-machine")
    scenario = write_scenario(folder, f"""
        name: gpu-box
        models: [digits_cnn]
        backends:
          - {{name: onnxruntime_cpu, threads: 1}}
          - {{name: fault_ort, fault: raise, fault_at: run, label: crashes}}
          - never_here
        batch_sizes: [1, 4]
        measure: {FAST_MEASURE}
    """)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ACCELBENCH_BACKENDS", REGISTRATION)
        cached_availability.cache_clear()
        records = run_cases(folder / "run", expand_file(scenario))
        cached_availability.cache_clear()
    assert sorted({r["status"] for r in records}) == ["failed", "passed", "skipped"]
    env_path = folder / "run" / "env.json"
    env = json.loads(env_path.read_text())
    env.pop("machine_id", None)
    env.update(machine=OTHER_MACHINE, hostname="gpu-box")
    env_path.write_text(json.dumps(env))
    return folder / "run"


def test_runs_from_two_machines_are_grouped_by_machine_and_never_share_a_speedup(
        smoke_run, other_machine_run, chromium, tmp_path) -> None:
    out, _ = smoke_run
    report = write_report([out, other_machine_run], tmp_path / "merged.html")
    with open_report(report) as (page, check):
        screenshot_page(page, tmp_path / "merged.png")
        assert_clean_load(check)
        machines = page.locator("section.machine")
        assert machines.count() == 2
        first, second = machines.nth(0), machines.nth(1)
        assert "NVIDIA H100 80GB HBM3" in second.locator("h2").inner_text()
        assert "H100" not in first.locator("h2").inner_text()
        # digits_cnn at b1 and b4 was measured on both; the smoke run's tflite_cpu is never the other's baseline
        assert "baseline" in first.locator("table.matrix").first.inner_text()
        second_matrix = second.locator("table.matrix").inner_text()
        if named_baseline(load_run(other_machine_run).records[0]) is None:
            # the scenario named no baseline: its own first fp32 case that ran, in its own run
            assert "Speed-up against onnxruntime_cpu fp32 (the model's first fp32 case" in second.inner_text()
            assert second_matrix.count("baseline") == 2  # one per batch size, in the second run's own matrix
        else:  # records of an engine that filled in the default baseline, tflite_cpu, absent from that run
            assert "×" not in second_matrix and "baseline" not in second_matrix
            assert "No speed-up: the baseline (tflite_cpu fp32) was not measured" in second.inner_text()
        assert "failed" in second_matrix and "skipped" in second_matrix
        answers = visible_rows(page, "answer-table")  # machine, model, batch, best, how chosen, p50, … , fidelity
        assert len(answers) == 6  # the smoke run's two models at b1 and b4, the other machine's digits_cnn at both
        assert all(row[3] for row in answers) and not any("no case passed" in row[3] for row in answers)
        assert all("crashes" not in row[3] for row in answers)  # the failed backend is never the answer

        headers = page.eval_on_selector_all("#records-table thead th", "ths => ths.map(t => t.textContent)")
        runs = {row[headers.index("run")] for row in visible_rows(page, "records-table")}
        assert runs == {f"{out.parent.name}/run", f"{other_machine_run.parent.name}/run"}  # both folders are "run"

        problems = visible_rows(page, "problems-table")
        assert {row[2] for row in problems} == {"failed", "skipped"}  # columns: run, case, status, reason
        assert any("injected failure" in row[3] for row in problems)
        assert any("frobnicator" in row[3] for row in problems)
        page.fill("input[data-table=problems-table]", "skipped")
        assert {row[2] for row in visible_rows(page, "problems-table")} == {"skipped"}
    print(f"\nmerged report: {report.stat().st_size / 1e6:.2f} MB, {check.rendered_charts} charts, "
          f"{check.render_ms:.0f} ms; screenshot {tmp_path / 'merged.png'}")


def test_markup_in_names_shows_as_text_and_runs_nothing(escaping_run, chromium) -> None:
    with open_report(escaping_run / "report.html") as (page, check):
        screenshot_page(page, escaping_run / "report.png")
        assert_clean_load(check)  # includes: no dialog (alert) opened
        assert XSS_MODEL in check.text and XSS_BACKEND in check.text
        assert "xss</script><script>alert(4)</script>" in check.text
        assert page.locator("img").count() == 0
        scripts = page.eval_on_selector_all("script", "s => s.map(e => e.textContent)")
        assert not any("alert(" in script and "\\u003c" not in script for script in scripts)
        chart_text = page.inner_text(".chart-latency")
        assert XSS_BACKEND in chart_text  # the chart's axis shows it as text too
