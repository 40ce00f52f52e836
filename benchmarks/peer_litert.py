"""tflite_cpu against the peer that ships with ai-edge-litert, on the same .tflite file, in one sitting.

Goal: accelbench's p50 on mobilenet_v2 fp32 (batch 1, 2 threads) <= 0.98 x litert-benchmark's median. The two
are interleaved round by round so that drift in machine load hits both alike.

    python benchmarks/peer_litert.py [--rounds 5] [--model mobilenet_v2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import make_case, make_engine, run_passed


def litert_benchmark_median_ms(model: str, threads: int, runs: int) -> float:
    # the venv's bin folder is on PATH only when it is activated; the tool is installed beside this Python
    exe = shutil.which("litert-benchmark") or shutil.which("litert-benchmark", path=str(Path(sys.executable).parent))
    if exe is None:
        raise SystemExit("litert-benchmark is not on PATH (it ships with ai-edge-litert)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        subprocess.run([exe, "--model", model, "--num_threads", str(threads), "--num_runs", str(runs),
                        "--warmup_runs", "50", "--result_json", str(out)], check=True, capture_output=True)
        return float(json.loads(out.read_text())["latency"]["median_ms"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    engine = make_engine("peer-litert")
    case = make_case(args.model, "tflite_cpu", threads=args.threads, min_runs=300, min_seconds=1.0)
    ours, peer = [], []
    for round_index in range(args.rounds):
        record = run_passed(engine, case)
        ours.append(record.p50_ms)
        peer.append(litert_benchmark_median_ms(record.artifact, args.threads, record.runs))
        print(f"round {round_index + 1}: accelbench p50 {ours[-1]:.4f} ms ({record.runs} runs), "
              f"litert-benchmark median {peer[-1]:.4f} ms, ratio {ours[-1] / peer[-1]:.4f}")
    ratios = [a / b for a, b in zip(ours, peer, strict=True)]
    print(json.dumps({"model": args.model, "threads": args.threads, "artifact": record.artifact,
                      "accelbench_p50_ms": statistics.median(ours),
                      "litert_benchmark_median_ms": statistics.median(peer),
                      "ratio_of_medians": statistics.median(ours) / statistics.median(peer),
                      "median_round_ratio": statistics.median(ratios), "goal": "<= 0.98"}, indent=2))


if __name__ == "__main__":
    main()
