"""The HTML report's size and render time in headless Chromium (goal: < 6 MB and < 2 s for the smoke scenario).

Renders the report of a run folder (by default a fresh `accelbench run scenarios/smoke.yaml`), then loads it N
times in fresh Chromium pages, each time from navigation start until every chart is drawn (and until the charts
of the first screen are, which the page draws first). Between loads a
0.5 s CPU-speed probe (sysinfo.stability) shows how steady the machine was: on a machine whose speed toggles,
the spread of render times follows it.

    python benchmarks/report_render.py [RUN_DIR ...] [--loads 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reporting.browser import check_report
from reporting.html import write_report
from sysinfo.stability import cpu_speed_probe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="*", help="run folders (default: a fresh run of scenarios/smoke.yaml)")
    parser.add_argument("--loads", type=int, default=7)
    args = parser.parse_args()

    run_dirs = [Path(p) for p in args.run_dirs]
    if not run_dirs:
        out = Path(tempfile.mkdtemp(prefix="report-render-")) / "smoke"
        subprocess.run([sys.executable, "-m", "harness.cli", "run", "scenarios/smoke.yaml", "--out", str(out)],
                       check=True, stdout=subprocess.DEVNULL)
        run_dirs = [out]
    target = Path(tempfile.mkdtemp(prefix="report-render-")) / "report.html"
    start = time.perf_counter()
    write_report(run_dirs, target)
    write_s = time.perf_counter() - start

    renders, first_screens, probes, charts = [], [], [], 0
    for _ in range(args.loads):
        check = check_report(target)
        if check.console_errors or check.page_errors or check.external_requests:
            raise SystemExit(f"the report did not load cleanly: {check}")
        renders.append(check.render_ms)
        first_screens.append(check.first_screen_ms)
        charts = check.rendered_charts
        probes.append(statistics.median(cpu_speed_probe(seconds=0.5)["window_medians_us"]))
    summary = {
        "report": str(target), "size_mb": round(target.stat().st_size / 1e6, 3), "write_s": round(write_s, 2),
        "charts": charts, "render_ms": [round(r) for r in renders],
        "render_median_ms": round(statistics.median(renders)),
        "first_screen_ms": [round(r) for r in first_screens],
        "first_screen_median_ms": round(statistics.median(first_screens)),
        "cpu_probe_us": [round(p, 1) for p in probes],
        "cpu_probe_slowest_over_fastest": round(max(probes) / min(probes), 2),
    }
    print(json.dumps(summary, indent=2))
    print(f"report {summary['size_mb']} MB (goal < 6), {charts} charts drawn in median "
          f"{summary['render_median_ms']} ms "
          f"(goal < 2000; min {min(renders):.0f}, max {max(renders):.0f}) over {args.loads} loads; the first screen "
          f"in median {summary['first_screen_median_ms']} ms")


if __name__ == "__main__":
    main()
