"""Precisions, compression and accuracy budgets through the harness: schema, case ids, and real runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model_zoo.inputs import MANY_SAMPLES
from scenario.load import expand, load_scenario
from tests.conftest import FAST_MEASURE, assert_scenario_error, by_id, run_cases, written_records

QUIET = ("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")


def test_compression_calibration_and_budgets_expand_into_cases(scenario_file, tmp_path):
    np.savez(tmp_path / "calib.npz", x=np.zeros((4, 8, 8, 1), np.float32))
    path = scenario_file("""
        name: trade
        models:
          - digits_cnn
          - name: mobilenet_v2
            compression: [none]
            accuracy: {min_cosine: 0.99}
        backends: [tflite_cpu]
        precisions: [fp32, int8]
        compression: [none, {prune: 0.75}, {prune: "2:4"}]
        calibration: {samples: 50, source: calib.npz}
        accuracy: {max_top1_drop: 0.01, min_cosine: 0.999}
    """)
    cases = by_id(c.__dict__ for c in expand(load_scenario(path)))  # type: ignore[arg-type]
    assert set(cases) == {
        "digits_cnn-fp32-b1-tflite_cpu", "digits_cnn-fp32-prune75-b1-tflite_cpu",
        "digits_cnn-fp32-prune2of4-b1-tflite_cpu", "digits_cnn-int8-b1-tflite_cpu",
        "digits_cnn-int8-prune75-b1-tflite_cpu", "digits_cnn-int8-prune2of4-b1-tflite_cpu",
        "mobilenet_v2-fp32-b1-tflite_cpu", "mobilenet_v2-int8-b1-tflite_cpu",
    }
    pruned = cases["digits_cnn-int8-prune2of4-b1-tflite_cpu"]
    assert pruned["compression"] == "prune:2:4"
    assert pruned["calibration"] == {"samples": 50, "source": str(tmp_path / "calib.npz")}
    assert cases["digits_cnn-fp32-b1-tflite_cpu"]["calibration"] == {}  # only int8 is calibrated
    assert pruned["accuracy_budget"] == {"max_top1_drop": 0.01, "min_cosine": 0.999}
    # a model's budget replaces the scenario's key by key
    assert cases["mobilenet_v2-int8-b1-tflite_cpu"]["accuracy_budget"] == {"max_top1_drop": 0.01, "min_cosine": 0.99}
    assert all(c["skip_reason"] is None for c in cases.values())


def test_unsupported_combinations_are_skips_with_reasons(scenario_file, tmp_path):
    (tmp_path / "user.tflite").write_bytes(b"not really")
    path = scenario_file("""
        name: skips
        models: [digits_cnn, {path: user.tflite}]
        backends: [tensorflow, tflite_cpu]
        precisions: [fp32, fp16]
        compression: [none, {prune: 0.5}]
    """)
    reasons = {c.case_id: c.skip_reason for c in expand(load_scenario(path))}
    assert "does not run fp16" in reasons["digits_cnn-fp16-b1-tensorflow"]
    assert "cannot re-quantize a TFLite file" in reasons["user-fp16-b1-tflite_cpu"]
    assert "pruning works on Keras layers" in reasons["user-fp32-prune50-b1-tflite_cpu"]
    assert reasons["user-fp32-b1-tflite_cpu"] is None  # the user's own file, run as it is
    assert reasons["digits_cnn-fp16-prune50-b1-tflite_cpu"] is None
    assert reasons["digits_cnn-fp32-prune50-b1-tensorflow"] is None  # the pruned SavedModel itself


@pytest.mark.parametrize(("block", "line", "fragments"), [
    ("compression: [{prune: 1.5}]", 4, ["compression[0]", "0 < F < 1"]),
    ("compression: [{squeeze: 2}]", 4, ["compression[0]", "'none' or {prune: F}"]),
    ("compression: []", 4, ["compression", "at least 1"]),
    ("calibration: {source: imagenet}", 4, ["calibration.source", "'dataset', 'random' or a path"]),
    ("calibration: {source: missing.npz}", 4, ["calibration.source", "no such calibration file"]),
    ("calibration: {sample: 10}", 4, ["unknown key 'sample'", "did you mean 'samples'"]),
    ("accuracy: {min_cosine: 2}", 4, ["accuracy.min_cosine", "less than or equal to 1"]),
    ("accuracy: {max_top1_dorp: 0.1}", 4, ["unknown key 'max_top1_dorp'", "did you mean 'max_top1_drop'"]),
], ids=["fraction", "unknown-method", "empty", "source", "missing-file", "typo", "cosine", "budget-typo"])
def test_bad_precision_settings_are_file_line_errors(scenario_file, block, line, fragments):
    path = scenario_file(f"name: bad\nmodels: [digits_cnn]\nbackends: [tflite_cpu]\n{block}\n", name="bad.yaml")
    assert_scenario_error(path, line, fragments)


def test_timing_and_evaluation_inputs_stay_inside_the_calibrated_range():
    """A user's int64 input of unknown meaning is calibrated on {0, 1}; feeding it other values at timing or
    evaluation time would judge the int8 model on activations it was never calibrated for. Both come from one
    description (model_zoo.inputs), through the real calibration path."""
    from harness.worker import make_feeds
    from model_zoo.calibration import calibration_data
    from model_zoo.inputs import InputLayout, TensorSpec
    from model_zoo.requests import Calibration, ModelRef

    hints = {"data": "auto"}
    specs = [TensorSpec("x", (None, 16), "float32"), TensorSpec("ids", (None, 1), "int64")]
    feeds = make_feeds(specs, 64, hints, seed=5)
    declared = [TensorSpec(s.name, s.shape, s.dtype) for s in specs]
    data = calibration_data(ModelRef(path="/models/user.onnx"), Calibration(samples=64, source="dataset"), declared,
                            InputLayout.from_json(hints), call_batch=16)
    calibration = [np.concatenate([feed[name] for feed in data.feeds]) for name in ("x", "ids")]
    for fed, calibrated, (low, high) in zip(feeds, calibration, [(0.0, 1.0), (0, 2)], strict=True):
        assert fed.dtype == calibrated.dtype
        assert low <= fed.min() and fed.max() < high and low <= calibrated.min() and calibrated.max() < high
    assert set(np.unique(feeds[1])) == set(np.unique(calibration[1])) == {0, 1}
    assert data.description == "the model's data: noise for 'x', 'ids'"
    # a zoo model's declared range wins over the user default
    tokens = make_feeds([TensorSpec("tokens", (None, 8), "int32")], 32, {"input_range": [0, 1000]}, seed=5)[0]
    assert tokens.max() > 1 and tokens.max() < 1000


# --- real runs --------------------------------------------------------------------------------------------------


def _user_onnx(path: Path, two_inputs: bool = False) -> Path:
    """A small model that is not from the zoo: Gemm + Relu + Gemm + Softmax with a dynamic batch dimension;
    with ``two_inputs``, a second int64 input scales the features (inputs of different dtypes)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (16, 32)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.1, 32).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.normal(0, 0.5, (32, 5)).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.normal(0, 0.1, 5).astype(np.float32), "b2")]
    nodes = [helper.make_node("Gemm", ["features", "w1", "b1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probs"], axis=1)]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])]
    if two_inputs:
        inputs.append(helper.make_tensor_value_info("scale", TensorProto.INT64, ["batch", 1]))
        nodes = [helper.make_node("Cast", ["scale"], ["scale_f"], to=TensorProto.FLOAT),
                 helper.make_node("Add", ["scale_f", "one"], ["factor"]),
                 helper.make_node("Mul", ["x", "factor"], ["features"]), *nodes]
        inits.append(numpy_helper.from_array(np.ones(1, np.float32), "one"))
    else:
        nodes = [helper.make_node("Identity", ["x"], ["features"]), *nodes]
    graph = helper.make_graph(nodes, "user_mlp", inputs,
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.mark.e2e
def test_user_onnx_with_dynamic_batch_runs_at_every_precision_with_fidelity(scenario_file, tmp_path):
    _user_onnx(tmp_path / "mlp.onnx")
    _user_onnx(tmp_path / "two_inputs.onnx", two_inputs=True)
    path = scenario_file(f"""
        name: user
        models: [{{path: mlp.onnx}}, {{path: two_inputs.onnx}}]
        backends: [onnxruntime_cpu]
        precisions: [fp32, fp16, int8]
        batch_sizes: [3]
        calibration: {{samples: 32, source: random}}
        measure: {FAST_MEASURE}
    """)
    records = by_id(run_cases(tmp_path / "run", expand(load_scenario(path))))
    for model in ("mlp", "two_inputs"):
        for precision in ("fp32", "fp16", "int8"):
            record = records[f"{model}-{precision}-b3-onnxruntime_cpu"]
            # the two-input model must run or be skipped with a reason; never a traceback
            assert record["status"] in ("passed", "skipped"), record["reason"]
            assert "Traceback" not in (record["reason"] or "")
            if record["status"] != "passed":
                continue
            accuracy = record["accuracy"]
            # inputs of 16 floats (and one integer): a small sample, so 64 of them (model_zoo.inputs.judging_samples)
            assert accuracy["reference"]["backend"] == "onnxruntime_cpu" and accuracy["samples"] == MANY_SAMPLES
            out = accuracy["outputs"][0]
            assert out["name"] == "probs" and out["reference_name"] == "probs"
            limit = {"fp32": 1e-6, "fp16": 1e-2, "int8": 0.1}[precision]
            assert out["max_abs_err"] < limit, (model, precision, out)
            assert out["cosine"] > (0.999 if precision != "int8" else 0.95), (model, precision, out)
    assert records["mlp-int8-b3-onnxruntime_cpu"]["status"] == "passed"
    from harness.evaluation import load_arrays

    names, inputs, _ = load_arrays(tmp_path / "run" / "evaluation" / "two_inputs" / "inputs.npz")
    assert names == ["x", "scale"] and set(np.unique(inputs[1])) <= {0, 1}  # the calibrated range


@pytest.mark.e2e
def test_a_budget_that_cannot_be_met_fails_exactly_those_items(pytester, tmp_path):
    scenario = pytester.path / "budget.yaml"
    scenario.write_text(f"""
name: budget
models: [digits_cnn]
backends: [tflite_cpu, onnxruntime_cpu]
precisions: [fp32, int8_dynamic]
accuracy: {{min_cosine: 0.9999999, max_top1_drop: 0.0}}
measure: {FAST_MEASURE}
""")
    out = tmp_path / "run"
    result = pytester.runpytest(*QUIET, str(scenario), "--accelbench-out", str(out))
    result.assert_outcomes(passed=3, failed=2)  # the two cases that passed, and their group's race item
    text = result.stdout.str()
    for backend in ("tflite_cpu", "onnxruntime_cpu"):
        failure = [line for line in text.splitlines()
                   if line.startswith(f"digits_cnn-int8_dynamic-b1-{backend}: FAILED: accuracy budget not met")]
        assert len(failure) == 1, text[-3000:]
        assert "< min_cosine 0.9999999" in failure[0] and "output 'output_0': cosine 0.99" in failure[0]
    records = by_id(written_records(out / "results.jsonl"))
    for case_id, record in records.items():
        accuracy = record["accuracy"]
        assert accuracy["top1"] is not None and accuracy["reference"]["backend"] == "tensorflow"
        assert record["latency_ms"]["p50"] > 0  # a budget failure keeps the measurement
        if "fp32" in case_id:
            assert record["status"] == "passed" and accuracy["cosine_min"] > 0.9999999
        else:
            assert record["status"] == "failed" and accuracy["violations"]
