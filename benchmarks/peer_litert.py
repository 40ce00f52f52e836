"""tflite_cpu against LiteRT's own benchmark and its other API, on the same .tflite file, in one sitting.

Three sides, interleaved round by round (their order rotates) so that drift in machine load hits all alike:
- accelbench: the tflite_cpu case through the real engine (LiteRT's Interpreter, XNNPACK, a fresh worker);
- litert-benchmark: the tool that ships with ai-edge-litert (LiteRT's CompiledModel API, C++ timing loop);
- compiled_model: LiteRT's Python CompiledModel on the CPU accelerator in a fresh process, timed as
  accelbench times a call (run + output read-back), to tell the API apart from the Python timing loop.

Goal: accelbench's p50 on mobilenet_v2 fp32 (batch 1, 2 threads) <= 0.98 x litert-benchmark's median; and
if the CompiledModel API is faster than the Interpreter in the same sitting, tflite_cpu should offer it.

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
import time
from pathlib import Path

from _common import QUOTED_SHAPES, make_case, make_engine, run_passed

WARMUP_RUNS = 50


def litert_benchmark_median_ms(model: str, threads: int, runs: int) -> float:
    # the venv's bin folder is on PATH only when it is activated; the tool is installed beside this Python
    exe = shutil.which("litert-benchmark") or shutil.which("litert-benchmark", path=str(Path(sys.executable).parent))
    if exe is None:
        raise SystemExit("litert-benchmark is not on PATH (it ships with ai-edge-litert)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        subprocess.run([exe, "--model", model, "--num_threads", str(threads), "--num_runs", str(runs),
                        "--warmup_runs", str(WARMUP_RUNS), "--result_json", str(out)], check=True,
                       capture_output=True)
        return float(json.loads(out.read_text())["latency"]["median_ms"])


def compiled_model_loop(model: str, threads: int, runs: int) -> float:
    """Median ms of ``runs`` CompiledModel calls (run + every output read back), after WARMUP_RUNS."""
    import numpy as np
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.cpu_options import CpuOptions
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator
    from ai_edge_litert.options import Options

    compiled = CompiledModel.from_file(model, options=Options(hardware_accelerators=HardwareAccelerator.CPU,
                                                              cpu_options=CpuOptions(num_threads=threads)))
    key = next(iter(compiled.get_signature_list()))
    inputs, outputs = compiled.create_input_buffers(0), compiled.create_output_buffers(0)
    rng = np.random.default_rng(0)
    for buffer, detail in zip(inputs, compiled.get_input_tensor_details(key).values(), strict=True):
        buffer.write(rng.random(detail["shape"], dtype=np.float32))
    reads = [(buffer, int(np.prod(detail["shape"])))
             for buffer, detail in zip(outputs, compiled.get_output_tensor_details(key).values(), strict=True)]
    for _ in range(WARMUP_RUNS):
        compiled.run_by_index(0, inputs, outputs)
    clock, samples = time.perf_counter_ns, []
    for _ in range(runs):
        start = clock()
        compiled.run_by_index(0, inputs, outputs)
        [buffer.read(size, np.float32) for buffer, size in reads]
        samples.append(clock() - start)
    return statistics.median(samples) / 1e6


def compiled_model_median_ms(model: str, threads: int, runs: int) -> float:
    done = subprocess.run([sys.executable, __file__, "--compiled-model-loop", model, str(threads), str(runs)],
                          check=True, capture_output=True, text=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    if sys.argv[1:2] == ["--compiled-model-loop"]:
        print(compiled_model_loop(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    engine = make_engine("peer-litert")
    input_shape = QUOTED_SHAPES.get(args.model)
    case = make_case(args.model, "tflite_cpu", threads=args.threads, input_shape=input_shape, min_runs=300,
                     min_seconds=1.0)
    artifact, runs = run_passed(engine, case).artifact, 300  # builds (or finds) the file all three sides run
    sides = {
        "accelbench": lambda: run_passed(engine, case).p50_ms,
        "litert-benchmark": lambda: litert_benchmark_median_ms(artifact, args.threads, runs),
        "compiled_model": lambda: compiled_model_median_ms(artifact, args.threads, runs),
    }
    names = list(sides)
    figures: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(args.rounds):
        order = names[round_index % 3:] + names[:round_index % 3]
        for name in order:
            figures[name].append(sides[name]())
        print(f"round {round_index + 1} ({' → '.join(order)}): "
              + ", ".join(f"{name} {figures[name][-1]:.4f} ms" for name in names)
              + f"; accelbench / litert-benchmark {figures['accelbench'][-1] / figures['litert-benchmark'][-1]:.3f}")
    medians = {name: statistics.median(values) for name, values in figures.items()}

    def round_ratios(a: str, b: str) -> list[float]:
        return [round(x / y, 4) for x, y in zip(figures[a], figures[b], strict=True)]

    print(json.dumps({"model": args.model, "threads": args.threads, "artifact": artifact, "rounds": args.rounds,
                      "medians_ms": medians,
                      "accelbench_over_litert_benchmark": medians["accelbench"] / medians["litert-benchmark"],
                      "round_ratios_accelbench_over_litert_benchmark": round_ratios("accelbench", "litert-benchmark"),
                      "round_ratios_compiled_model_over_accelbench": round_ratios("compiled_model", "accelbench"),
                      "goal": "accelbench <= 0.98 x litert-benchmark"}, indent=2))


if __name__ == "__main__":
    main()
