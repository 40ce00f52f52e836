"""Does the profiling pass touch the timed samples? The same case, with and without ``profile: true``, in one sitting.

The pass runs after the timed loop (harness.worker), so the p50 of a profiled case should be the p50 of an
unprofiled one within the noise. Rounds alternate the two (ABBA order, so that drift in machine load hits both
alike) and each round is a fresh worker; the figure is the ratio of the medians of the rounds' p50s, with every
round's pair printed so the spread is visible.

    python benchmarks/profile_cost.py [--rounds 6] [--model mobilenet_v2] [--backend onnxruntime_cpu]
"""

from __future__ import annotations

import argparse
import json
import statistics

from _common import QUOTED_SHAPES, make_case, make_engine, run_passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--backend", default="onnxruntime_cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    engine = make_engine("profile-cost")
    input_shape = QUOTED_SHAPES.get(args.model)
    p50s: dict[bool, list[float]] = {False: [], True: []}
    for round_index in range(args.rounds):
        order = (False, True) if round_index % 2 == 0 else (True, False)
        for profiled in order:
            case = make_case(args.model, args.backend, threads=args.threads, input_shape=input_shape, min_runs=100,
                             min_seconds=1.0)
            case.profile = {"runs": 20} if profiled else None
            record = run_passed(engine, case)
            if profiled and (record.profile is None or record.profile.error):
                raise SystemExit(f"no profile: {record.profile.error if record.profile else 'none'}")
            p50s[profiled].append(record.p50_ms)
        print(f"round {round_index + 1}: p50 without {p50s[False][-1]:.4f} ms, with profile: true "
              f"{p50s[True][-1]:.4f} ms")
    plain, profiled = statistics.median(p50s[False]), statistics.median(p50s[True])
    print(json.dumps({"model": args.model, "backend": args.backend, "threads": args.threads, "rounds": args.rounds,
                      "p50_without_ms": plain, "p50_with_profile_ms": profiled, "ratio": profiled / plain,
                      "round_ratios": [b / a for a, b in zip(p50s[False], p50s[True], strict=True)]}, indent=2))


if __name__ == "__main__":
    main()
