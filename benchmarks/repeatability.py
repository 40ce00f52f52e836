"""Repeatability: the same case run N times (N fresh workers), coefficient of variation of the median.

Goal: CV <= 3 %. After each repeat a 1 s probe times fixed pure-Python work (sysinfo.stability): its CV is the
machine's own noise in the same sitting, the floor under the harness's CV. Also prints the fixed cost of one
isolated case (spawn + imports + model load) per backend, whose goal is <= 0.5 s for LiteRT and ONNX Runtime.

    python benchmarks/repeatability.py [--repeats 5] [--model mobilenet_v2]
"""

from __future__ import annotations

import argparse
import json
import statistics

from _common import make_case, make_engine, run_passed

from results.stats import coefficient_of_variation
from sysinfo.stability import cpu_speed_probe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--backends", nargs="+", default=["tflite_cpu", "onnxruntime_cpu"])
    args = parser.parse_args()

    engine = make_engine("repeatability")
    summary = {}
    for backend in args.backends:
        case = make_case(args.model, backend)
        records, probes = [], []
        for _ in range(args.repeats):  # a probe of the machine's own speed after each case, in the same sitting
            records.append(run_passed(engine, case))
            probes.append(statistics.median(cpu_speed_probe(seconds=1.0)["window_medians_us"]))
        medians = [r.p50_ms for r in records]
        fixed = [r.worker.fixed_cost_ms for r in records]
        wall = [r.worker.wall_ms - r.measured_seconds * 1e3 - r.warmup.seconds * 1e3 for r in records]
        summary[backend] = {
            "medians_ms": medians,
            "cv_of_median": coefficient_of_variation(medians),
            "fixed_cost_ms_median": statistics.median(fixed),
            "fixed_cost_ms_max": max(fixed),
            "worker_wall_minus_warmup_and_steady_ms_median": statistics.median(wall),
            "machine_probe_us": probes,
            "machine_probe_cv": coefficient_of_variation(probes),
        }
        print(f"{backend}: medians {', '.join(f'{m:.4f}' for m in medians)} ms, "
              f"CV {summary[backend]['cv_of_median']:.2%}, fixed cost median {statistics.median(fixed):.0f} ms; "
              f"the machine's own speed between them: CV {summary[backend]['machine_probe_cv']:.2%}")
    print(json.dumps({"model": args.model, "repeats": args.repeats, "results": summary,
                      "goals": {"cv_of_median": "<= 0.03", "fixed_cost_ms": "<= 500"}}, indent=2))


if __name__ == "__main__":
    main()
