"""ONNX fp16 / int8_dynamic / int8 conversions on graphs that break the naive library calls, and on real models.

The synthetic graphs are built here with onnx.helper to reproduce, in milliseconds, what real third-party
exports do: an opset-11 CNN whose weights are Constant nodes (per-channel QDQ needs opset 13; the dynamic
quantizer wants initializers), activations beyond float16's range (through Exp, and through a MatMul that no
op-type list would block), an If whose branches hold the network. Every conversion runs the real converters and
ONNX Runtime CPU; the real models (PP-OCRv4, Silero VAD) run when their files are in the corpus cache.
"""

from __future__ import annotations

import glob
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from model_zoo.fidelity import output_scores
from model_zoo.onnx_precision import (
    ConversionError,
    check_onnx,
    onnx_to_fp16,
    onnx_to_int8,
    onnx_to_int8_dynamic,
)
from model_zoo.targets import FP16_MIN_COSINE, INT8_MIN_COSINE

RNG = np.random.default_rng(0)


# --- synthetic graphs --------------------------------------------------------------------------------------


def _const(name: str, array: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], name=f"const_{name}", value=numpy_helper.from_array(array, name))


def _save(tmp_path: Path, name: str, graph: onnx.GraphProto, opset: int) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def _matrix_model(tmp_path: Path, name: str, nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto],
                  features: tuple[int, int], opset: int) -> Path:
    """One float input x [N, features[0]] through `nodes` to one output y [N, features[1]]."""
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", features[1]])],
        initializer=inits,
    )
    return _save(tmp_path, name, graph, opset)


def conv_constants_model(tmp_path: Path, opset: int = 11, initializers: bool = False) -> Path:
    """Conv → Relu → Conv → GlobalAveragePool at opset 11, dynamic N/H/W, every weight a Constant node (the
    paddle2onnx way), or an initializer."""
    rng = np.random.default_rng(1)
    nodes = [
        _const("w1", rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32)),
        _const("b1", rng.normal(0, 0.1, 8).astype(np.float32)),
        _const("w2", rng.normal(0, 0.3, (4, 8, 3, 3)).astype(np.float32)),
        _const("b2", rng.normal(0, 0.1, 4).astype(np.float32)),
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c2"], ["y"], name="gap"),
    ]
    inits = []
    if initializers:
        inits = [n.attribute[0].t for n in nodes if n.op_type == "Constant"]
        nodes = [n for n in nodes if n.op_type != "Constant"]
    graph = helper.make_graph(
        nodes,
        "conv_constants",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 1, 1])],
        initializer=inits,
    )
    return _save(tmp_path, f"conv_{'inits' if initializers else 'constants'}_op{opset}", graph, opset)


def image_feeds(n: int, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.normal(0, 1, (2, 3, 16 + 8 * (i % 2), 16)).astype(np.float32)} for i in range(n)]


def tiny_scale_layernorm_model(tmp_path: Path) -> Path:
    """LayerNormalization whose scale is ~1e-9: below float16's range, the converter maps every value to
    ±1e-7 (sign kept, magnitudes lost), unless the LayerNormalization is kept fp32 with its constants."""
    rng = np.random.default_rng(8)
    inits = [
        numpy_helper.from_array((rng.normal(0, 1, 32) * 1e-9).astype(np.float32), "gamma"),
        numpy_helper.from_array(np.zeros(32, np.float32), "beta"),
        numpy_helper.from_array(np.array(1e6, np.float32), "up"),
    ]
    nodes = [
        helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["n"], name="ln", axis=-1),
        helper.make_node("Mul", ["n", "up"], ["y"], name="up"),  # 1e6: kept fp32 from the start
    ]
    return _matrix_model(tmp_path, "tiny_scale_ln", nodes, inits, (32, 32), 17)


def tiny_weight_matmul_model(tmp_path: Path) -> Path:
    """A MatMul with ~1e-8 weights (below float16's range: the converter maps them to ±1e-7) rescaled by the
    next node: no op type list would name it, so only the node search can find what to keep in fp32."""
    rng = np.random.default_rng(2)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"], name="tiny_matmul"),
        helper.make_node("Mul", ["m", "s"], ["ms"], name="rescale"),
        helper.make_node("Relu", ["ms"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["y"], name="head"),
    ]
    inits = [
        numpy_helper.from_array((rng.normal(0, 1, (64, 16)) * 1e-8).astype(np.float32), "w"),
        numpy_helper.from_array(np.array(1e4, np.float32), "s"),
        numpy_helper.from_array(rng.normal(0, 1, (16, 8)).astype(np.float32), "w2"),
    ]
    return _matrix_model(tmp_path, "tiny_weight_matmul", nodes, inits, (64, 8), 13)


def outlier_feature_model(tmp_path: Path) -> Path:
    """A MatMul whose input has one feature 1e5 times the others while only the small ones reach the output
    (its weight row is zero): int8 activations on one per-tensor grid round the signal to nothing, so the
    fully quantized file answers noise. Keeping that one MatMul in fp32 is the fix; the head stays int8."""
    rng = np.random.default_rng(3)
    w = rng.normal(0, 1, (8, 16)).astype(np.float32)
    w[0] = 0.0
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"], name="mixed_scale_matmul"),
        helper.make_node("Relu", ["m"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["y"], name="head"),
    ]
    head = rng.normal(0, 1, (16, 6)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(head, "w2")]
    return _matrix_model(tmp_path, "outlier_feature", nodes, inits, (8, 6), 13)


def outlier_feeds(n: int, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(n):
        x = rng.uniform(-0.01, 0.01, (1, 8)).astype(np.float32)
        x[0, 0] = rng.choice([-1000.0, 1000.0])
        feeds.append({"x": x})
    return feeds


def if_model(tmp_path: Path) -> Path:
    """Silero VAD's shape: a scalar int64 `sr` picks one of two branches, each a MatMul network that reads the
    outer-scope input and a weight shared by both branches from the main graph."""
    rng = np.random.default_rng(3)
    shared = numpy_helper.from_array(rng.normal(0, 0.2, (32, 16)).astype(np.float32), "shared_w")

    def branch(tag: str, scale: float) -> onnx.GraphProto:
        w = numpy_helper.from_array((rng.normal(0, 0.2, (16, 4)) * scale).astype(np.float32), f"w_{tag}")
        return helper.make_graph(
            [
                helper.make_node("MatMul", ["x", "shared_w"], [f"h_{tag}"], name=f"mm1_{tag}"),
                helper.make_node("Relu", [f"h_{tag}"], [f"r_{tag}"], name=f"relu_{tag}"),
                helper.make_node("MatMul", [f"r_{tag}", f"w_{tag}"], [f"y_{tag}"], name=f"mm2_{tag}"),
            ],
            f"branch_{tag}",
            [],
            [helper.make_tensor_value_info(f"y_{tag}", TensorProto.FLOAT, None)],
            initializer=[w],
        )

    nodes = [
        helper.make_node("Equal", ["sr", "k16"], ["is16k"], name="is16k"),
        helper.make_node(
            "If", ["is16k"], ["y"], name="pick", then_branch=branch("16k", 1.0), else_branch=branch("8k", 2.0)
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "if_model",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 32]),
            helper.make_tensor_value_info("sr", TensorProto.INT64, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        initializer=[shared, numpy_helper.from_array(np.array(16000, np.int64), "k16")],
    )
    return _save(tmp_path, "if_model", graph, 16)


def run(path: Path, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)


def all_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    out = []
    for node in graph.node:
        out.append(node)
        for attr in node.attribute:
            if attr.HasField("g"):
                out.extend(all_nodes(attr.g))
    return out


# --- the fidelity measure ----------------------------------------------------------------------------------


def test_output_scores_per_output_mean_over_feeds() -> None:
    a = np.array([[1.0, 0.0, 0.0, 0.0]], np.float32)
    ref = [[a, np.zeros(4)], [a, np.zeros(4)]]
    cand = [[a, np.zeros(4)], [np.array([[0.0, 1.0, 0.0, 0.0]]), np.ones(4)]]
    assert output_scores(ref, cand, ["p", "z"]) == {"p": 0.5, "z": 0.5}  # orthogonal = 0; zero vs zero = 1
    assert output_scores([[a]], [[np.array([[np.inf, 0.0, 0.0, 0.0]])]], ["p"]) == {"p": 0.0}  # overflow scores 0
    assert output_scores([[a]], [[np.ones((1, 3))]], ["p"]) == {"p": 0.0}  # another shape scores 0
    assert output_scores([[a]], [[a * 7]], ["p"])["p"] == pytest.approx(1.0)  # scale-free


def test_output_scores_judges_small_outputs_by_relative_error_like_the_guard() -> None:
    """A one-value output (a probability) has cosine 1 whenever the sign holds; the check must see a 25 % error
    as the harness's guard does: relative L2 e over all feeds, as the cosine 1 - e²/2 that allows it."""
    from model_zoo.fidelity import output_fidelity
    from model_zoo.fidelity import violation as cosine_violation

    ref = [[np.array([0.01])], [np.array([0.02])]]
    cand = [[np.array([0.0075])], [np.array([0.015])]]  # every value 25 % low
    score = output_scores(ref, cand, ["prob"])["prob"]
    assert score == pytest.approx(1 - 0.25**2 / 2)
    assert score < INT8_MIN_COSINE
    stats = output_fidelity(np.array([[0.0075], [0.015]]), np.array([[0.01], [0.02]]))
    assert cosine_violation({"name": "prob", **stats}, INT8_MIN_COSINE) is not None  # the guard agrees
    assert output_scores(ref, [[np.array([0.0101])], [np.array([0.0199])]], ["prob"])["prob"] == 1.0  # < 1e-4 off


# --- int8 on an opset-11 graph with Constant-node weights --------------------------------------------------


def test_the_synthetic_graph_reproduces_the_library_failures(tmp_path: Path) -> None:
    """Guards the test model itself: plain ONNX Runtime calls fail on it as on the real PaddleOCR exports."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_dynamic, quantize_static

    src = conv_constants_model(tmp_path)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter(image_feeds(2, 0))

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    with pytest.raises(Exception, match=r"to be an initializer"):
        quantize_dynamic(str(src), str(tmp_path / "d.onnx"))
    # with weights as initializers, per-channel QDQ at opset 11 breaks on DequantizeLinear's axis
    src = conv_constants_model(tmp_path, initializers=True)
    with pytest.raises(Exception, match=r"axis"):  # the error type varies by version
        quantize_static(str(src), str(tmp_path / "s.onnx"), Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
        check_onnx(tmp_path / "s.onnx", src)


def test_int8_upgrades_the_opset_for_per_channel_qdq(tmp_path: Path) -> None:
    src = conv_constants_model(tmp_path)
    out = tmp_path / "int8.onnx"
    info = onnx_to_int8(src, out, image_feeds(6, 0), image_feeds(3, 1))

    assert info["opset_upgrade"] == {"from": 11, "to": 13}
    assert info["per_channel"] is True and info["variant"] == "per-channel"
    assert info["pre_process"].startswith("quant_pre_process")
    model = onnx.load(str(out))
    assert next(o.version for o in model.opset_import if o.domain == "") >= 13
    weight_dqs = [
        n for n in model.graph.node if n.op_type == "DequantizeLinear" and any(a.name == "axis" for a in n.attribute)
    ]
    assert len(weight_dqs) >= 2, "both Conv weights quantized per output channel"
    scales = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert any(scales[n.input[1]].size == 8 for n in weight_dqs)  # one scale per conv1 output channel
    fidelity = info["fidelity"]
    assert fidelity["checked"] and fidelity["threshold"] == INT8_MIN_COSINE and fidelity["feeds"] == 3
    assert fidelity["cosine"]["y"] > 0.99 and fidelity["passed"] is True
    # the recorded figure is the real one
    feed = image_feeds(1, 1)[0]
    assert output_scores([run(src, feed)], [run(out, feed)], ["y"])["y"] > 0.99


def test_int8_per_tensor_when_per_channel_cannot_be_had(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No opset upgrade possible (the converter refuses): per-tensor QDQ at the model's own opset 11."""
    from onnx import version_converter

    def refuse(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
        raise RuntimeError("adapter missing\nC++ traceback line")

    monkeypatch.setattr(version_converter, "convert_version", refuse)
    src = conv_constants_model(tmp_path)
    out = tmp_path / "int8.onnx"
    info = onnx_to_int8(src, out, image_feeds(6, 0), image_feeds(3, 1))
    assert info["per_channel"] is False and info["variant"] == "per-tensor"
    assert info["opset_upgrade"] == {"from": 11, "to": None, "why_not": "RuntimeError: adapter missing"}
    model = onnx.load(str(out))
    assert next(o.version for o in model.opset_import if o.domain == "") == 11
    assert not any(a.name == "axis" for n in model.graph.node if n.op_type == "DequantizeLinear" for a in n.attribute)
    assert info["fidelity"]["cosine"]["y"] > 0.98


def test_int8_dynamic_quantizes_constant_node_weights(tmp_path: Path) -> None:
    src = conv_constants_model(tmp_path)
    out = tmp_path / "int8d.onnx"
    info = onnx_to_int8_dynamic(src, out, image_feeds(3, 1))
    assert info["variant"] == "pre-processed, subgraphs" and info["fallbacks_tried"] == []
    assert info["quantized_ops"].get("ConvInteger") == 2
    assert info["fidelity"]["cosine"]["y"] > 0.98
    assert {n.op_type for n in onnx.load(str(out)).graph.node} >= {"ConvInteger", "DynamicQuantizeLinear"}


def channel_spread_conv_model(tmp_path: Path) -> Path:
    """A Conv whose output channels' weights span 0.005x to 2x, what fusing BatchNormalization into Conv leaves in
    real CNNs (the PP-PicoDet layout detector's stem: |w| 0.0058 to 2.09); its output is the model's."""
    rng = np.random.default_rng(9)
    scales = np.geomspace(0.005, 2.0, 8).astype(np.float32)
    w = (rng.normal(0, 0.3, (8, 3, 3, 3)) * scales[:, None, None, None]).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="spread_conv", pads=[1, 1, 1, 1])],
        "channel_spread_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, "H", "W"])],
        initializer=[numpy_helper.from_array(w, "w"),
                     numpy_helper.from_array((rng.normal(0, 0.1, 8) * scales).astype(np.float32), "b")],
    )
    return _save(tmp_path, "channel_spread_conv", graph, 13)


def test_int8_dynamic_quantizes_conv_weights_per_channel(tmp_path: Path) -> None:
    """ONNX Runtime's dynamic quantizer gives ConvInteger one weight scale for all channels (per_channel or not),
    on which the small channels here round to zero (relative error 1.0, measured; the whole output's cosine hides
    it, as a later layer would not); per channel every channel keeps its 8 bits."""
    src = channel_spread_conv_model(tmp_path)
    out = tmp_path / "int8d.onnx"
    checks = image_feeds(3, 1)
    info = onnx_to_int8_dynamic(src, out, checks)
    assert info["per_channel_conv"] == 1 and info["quantized_ops"].get("ConvInteger") == 1
    model = onnx.load(str(out))
    conv = next(n for n in model.graph.node if n.op_type == "ConvInteger")
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert inits[conv.input[1]].dtype == np.int8 and inits[conv.input[3]].shape == ()
    assert np.abs(inits[conv.input[1]]).reshape(8, -1).max(axis=1).min() == 127  # every channel on its own grid
    scale_mul = next(n for n in model.graph.node if n.op_type == "Mul" and n.name.endswith("_scales_mul"))
    assert inits[scale_mul.input[1]].shape == (8, 1, 1)
    for feed in checks:
        ref, got = run(src, feed)[0], run(out, feed)[0]
        error = np.sqrt(((got - ref) ** 2).sum(axis=(0, 2, 3)) / (ref**2).sum(axis=(0, 2, 3)))
        assert error.max() < 0.05, error  # per channel


def test_int8_quantizes_inside_if_branches_the_calibration_takes(tmp_path: Path) -> None:
    src = if_model(tmp_path)
    x = np.random.default_rng(4)
    feeds = [{"x": x.normal(0, 1, (3, 32)).astype(np.float32), "sr": np.array(16000, np.int64)} for _ in range(6)]
    out = tmp_path / "int8.onnx"
    info = onnx_to_int8(src, out, feeds, feeds[:3])

    taken = {s["branch"]: s for s in info["subgraphs"]}
    assert taken["pick.then_branch"]["quantized"] is True and taken["pick.then_branch"]["calibration_feeds"] == 6
    assert taken["pick.else_branch"] == {
        "branch": "pick.else_branch",
        "quantized": False,
        "why": "no calibration feed takes it",
    }
    model = onnx.load(str(out))
    pick = next(n for n in model.graph.node if n.op_type == "If")
    then = next(a.g for a in pick.attribute if a.name == "then_branch")
    other = next(a.g for a in pick.attribute if a.name == "else_branch")
    assert sum(n.op_type == "DequantizeLinear" for n in then.node) >= 4  # activations and both weights
    assert not any(n.op_type == "DequantizeLinear" for n in other.node)
    assert info["fidelity"]["cosine"]["y"] > 0.98
    # the untaken (8 kHz) branch still runs, in fp32
    feed = {"x": feeds[0]["x"], "sr": np.array(8000, np.int64)}
    np.testing.assert_allclose(run(out, feed)[0], run(src, feed)[0], rtol=1e-5, atol=1e-6)


def test_int8_dynamic_quantizes_if_branches(tmp_path: Path) -> None:
    src = if_model(tmp_path)
    feed = {"x": np.random.default_rng(5).normal(0, 1, (3, 32)).astype(np.float32), "sr": np.array(16000, np.int64)}
    info = onnx_to_int8_dynamic(src, tmp_path / "int8d.onnx", [feed])
    assert info["quantized_ops"].get("MatMulInteger", 0) >= 4  # two per branch
    assert info["fidelity"]["cosine"]["y"] > 0.98


@pytest.mark.parametrize("precision", ["int8", "int8_dynamic"])
def test_int8_search_keeps_the_node_that_breaks_the_check_in_fp32(tmp_path: Path, precision: str) -> None:
    src = outlier_feature_model(tmp_path)
    out = tmp_path / f"{precision}.onnx"
    checks = outlier_feeds(6, 2)
    if precision == "int8":
        info = onnx_to_int8(src, out, outlier_feeds(16, 1), checks)
    else:
        info = onnx_to_int8_dynamic(src, out, checks)

    first, last = info["attempts"][0], info["attempts"][-1]
    assert first["kept_fp32"] == "none" and first["passed"] is False and first["cosine"]["y"] < 0.9
    assert last["passed"] is True and last["kept_fp32"].startswith("search: 1 node(s)")
    assert info["kept_fp32"]["node_names"] == ["mixed_scale_matmul"]
    # only nodes the quantizer changed are candidates (and counted): the Relu between the MatMuls is never one
    # in a dynamic file (it reads the MatMul's fp32 output as before)
    assert info["kept_fp32"]["nodes"] == 1
    if precision == "int8_dynamic":
        assert info["kept_fp32"]["of_nodes"] == 2
    assert last["lower_bound"]["y"] >= INT8_MIN_COSINE  # the check asks that of its confidence bound too
    assert info["fidelity"]["passed"] is True
    nodes = all_nodes(onnx.load(str(out)).graph)
    assert any(n.op_type in ("DequantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul") for n in nodes)
    assert "mixed_scale_matmul" in {n.name for n in nodes if n.op_type == "MatMul"}  # still the fp32 op
    cosines = output_scores([run(src, f) for f in checks], [run(out, f) for f in checks], ["y"])
    assert cosines["y"] >= INT8_MIN_COSINE  # measured again here, not taken from meta.json


def test_output_scores_scores_integer_outputs_by_exact_match() -> None:
    ref = [[np.array([3, 1, 2, 2])], [np.array([0, 0, 1, 1])]]
    cand = [[np.array([3, 1, 2, 0])], [np.array([0, 0, 1, 1])]]
    assert output_scores(ref, cand, ["ids"])["ids"] == 7 / 8


def test_prefix_search_ends_when_every_node_is_a_culprit() -> None:
    """The last node breaking the check must end the search, not index past the list."""
    from model_zoo.onnx_precision.search import _prefix_search

    class Result:
        def __init__(self, ok: bool) -> None:
            self.ok = ok

        def summary(self, label: str) -> dict:
            return {"label": label, "passed": self.ok}

    order = ["a", "b", "c"]
    attempts: list[dict] = []
    best = _prefix_search(order, lambda kept: Result(kept >= set(order)), time.monotonic() + 60, attempts,
                          Result(False))
    assert best.ok and attempts[-1]["nodes_kept_fp32"] == ["a", "b", "c"]



@pytest.mark.parametrize(("culprits", "most_trials"), [
    (set(range(8)), 2 + 8 * 2 + 1),  # a run at the start (a detector's stem): a trial or two each
    ({10, 40}, 2 + 2 * 2 * 6 + 1),  # far apart: at most twice bisection's log2(64) each
])
def test_the_search_finds_every_culprit_and_gallops_over_runs_of_them(culprits: set[int], most_trials: int) -> None:
    """Deterministic: a configuration passes when every culprit is kept fp32; trials are counted, not timed."""
    from model_zoo.onnx_precision.search import _prefix_search

    order = [f"n{i}" for i in range(64)]
    wanted = {order[i] for i in culprits}

    class Result:
        def __init__(self, kept: set[str]) -> None:
            self.ok, self.kept = wanted <= kept, kept

        def summary(self, label: str) -> dict:
            return {"label": label, "passed": self.ok}

    attempts: list[dict] = []
    best = _prefix_search(order, Result, time.monotonic() + 600, attempts, Result(set()))
    assert best.ok and best.kept == wanted
    assert sorted(attempts[-1]["nodes_kept_fp32"]) == sorted(wanted)
    assert attempts[-1]["trials"] <= most_trials, attempts[-1]["trials"]


def test_the_search_candidates_are_the_nodes_the_dynamic_quantizer_changed(tmp_path: Path) -> None:
    """A Gather reading an embedding table that quantize_dynamic quantized keeps its name and op type, only its
    input changes: it is a candidate like the MatMul that became a MatMulInteger; the Relu is not."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from model_zoo.onnx_precision.int8 import _nodes_quantized

    rng = np.random.default_rng(0)
    table = numpy_helper.from_array(rng.normal(size=(300, 64)).astype(np.float32), "table")
    weight = numpy_helper.from_array(rng.normal(size=(64, 8)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["e"], name="embed"),
         helper.make_node("MatMul", ["e", "w"], ["m"], name="mm"),
         helper.make_node("Relu", ["m"], ["y"], name="relu")],
        "embedding", [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8])], [table, weight])
    src = tmp_path / "embedding.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), src)
    out = tmp_path / "embedding_int8d.onnx"
    quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8)
    quantized = onnx.load(str(out))
    assert "embed" in {n.name for n in quantized.graph.node if n.op_type == "Gather"}  # same name, same op
    assert _nodes_quantized(onnx.load(str(src)), quantized) == {"embed", "mm"}

def test_the_search_keeps_to_the_conversions_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deadline is the whole conversion's: no trial starts that the longest one so far says would end past
    it, the best configuration found so far is the answer, and with no time left none starts at all. A clock
    of our own (each trial costs 10 s of it): nothing here depends on this machine's speed."""
    from model_zoo.onnx_precision import search

    class Clock:
        now = 0.0

        @classmethod
        def monotonic(cls) -> float:
            return cls.now

    class Result:
        def __init__(self, kept: set[str]) -> None:
            Clock.now += 10.0
            self.ok = len(kept) >= 6  # six nodes of twenty must stay fp32
            self.kept = kept

        def summary(self, label: str) -> dict:
            return {"label": label, "passed": self.ok}

    monkeypatch.setattr(search, "time", Clock)
    order = [f"n{i}" for i in range(20)]
    attempts: list[dict] = []
    start = Result({"x"} | set(order))
    Clock.now = 0.0
    best = search._prefix_search(order, Result, 35.0, attempts, start)
    assert Clock.now <= 35.0 and best.ok and "(time budget)" in attempts[-1]["label"]
    assert attempts[-1]["trials"] == 3  # all fp32, nothing fp32, one gallop step: a fourth would end at 40 s
    spent: list[dict] = []
    assert search._prefix_search(order, Result, Clock.now - 1, spent, start) is start
    assert spent == [{"search": "not started: the conversion's time budget was spent before it", "passed": False}]


def test_renaming_follows_outer_names_into_branches_and_leaves_shadowing_ones_alone() -> None:
    """The then-branch defines its own `w` (shadowing the main graph's), the else-branch reads the outer one:
    after renaming each still reads its own, and the model computes the same."""
    from model_zoo.onnx_precision.graph import _unique_initializer_names

    w = numpy_helper.from_array(np.ones((2,), np.float32), "w")
    own_w = numpy_helper.from_array(np.full((2,), 5.0, np.float32), "w")
    then_branch = helper.make_graph([helper.make_node("Identity", ["w"], ["t"], name="id_t")], "then", [],
                                    [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2])], initializer=[own_w])
    else_branch = helper.make_graph(
        [helper.make_node("Add", ["w2", "w"], ["e"], name="add_e")], "else", [],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, [2])],
        initializer=[numpy_helper.from_array(np.full((2,), 2.0, np.float32), "w2")])
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], name="pick", then_branch=then_branch, else_branch=else_branch),
         helper.make_node("Add", ["y", "w"], ["z"], name="add_z")],
        "g", [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2])], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
    model.ir_version = 8

    def outputs(m: onnx.ModelProto) -> list[np.ndarray]:
        session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return [session.run(None, {"c": np.array(v)})[0] for v in (True, False)]

    before = outputs(model)
    _unique_initializer_names(model)
    names = {i.name for g in _graphs(model.graph) for i in g.initializer}
    assert all(name.startswith("accelbench_w") for name in names) and len(names) == 3
    after = outputs(model)
    np.testing.assert_array_equal(before[0], [6.0, 6.0])  # then: its own w (5) + outer w (1)
    np.testing.assert_array_equal(before[1], [4.0, 4.0])  # else: w2 (2) + outer w (1), + outer w (1)
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


def test_initializers_are_renamed_out_of_the_quantizers_way(tmp_path: Path) -> None:
    """Basic Pitch's bias `...conv1d_25` became `...conv1d_252` once quantized: another node's output. After the
    renaming no initializer shares a prefix with a node output, the If branches still find the outer weight,
    and the model computes the same."""
    from model_zoo.onnx_precision.graph import _unique_initializer_names

    src = if_model(tmp_path)
    model = onnx.load(str(src))
    _unique_initializer_names(model)
    path = tmp_path / "renamed.onnx"
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path))
    names = {i.name for g in _graphs(model.graph) for i in g.initializer}
    assert names and all(name.startswith("accelbench_w") for name in names)
    for sr in (8000, 16000):
        feed = {"x": RNG.normal(0, 1, (2, 32)).astype(np.float32), "sr": np.array(sr, np.int64)}
        np.testing.assert_allclose(run(path, feed)[0], run(src, feed)[0], rtol=1e-6)


def _graphs(graph: onnx.GraphProto) -> list[onnx.GraphProto]:
    found = [graph]
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                found += _graphs(attr.g)
    return found


def test_int8_without_calibration_data_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="without calibration data; try int8_dynamic"):
        onnx_to_int8(conv_constants_model(tmp_path), tmp_path / "o.onnx", [], [])


# --- fp16 --------------------------------------------------------------------------------------------------


def test_fp16_loss_is_caught_and_fixed_by_the_fragile_op_list(tmp_path: Path) -> None:
    src = tiny_scale_layernorm_model(tmp_path)
    feeds = [{"x": np.random.default_rng(i).normal(0, 1, (4, 32)).astype(np.float32)} for i in range(3)]
    out = tmp_path / "fp16.onnx"
    info = onnx_to_fp16(src, out, feeds)

    first, second = info["attempts"][:2]
    assert first["passed"] is False and first["cosine"]["y"] < FP16_MIN_COSINE  # naive fp16: scale flattened
    assert second["passed"] is True and len(info["attempts"]) == 2
    assert info["fidelity"]["passed"] is True and info["fidelity"]["cosine"]["y"] > 0.999
    assert info["out_of_range_nodes_kept"] == 1
    assert info["kept_fp32"]["by_op_type"] == {"LayerNormalization": 1, "Mul": 1}
    assert "LayerNormalization" in info["kept_fp32"]["op_types_blocked"]
    model = onnx.load(str(out))
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [TensorProto.FLOAT]  # keep_io_types
    assert output_scores([run(src, feeds[0])], [run(out, feeds[0])], ["y"])["y"] > 0.999


def test_fp16_search_finds_the_node_no_op_list_names(tmp_path: Path) -> None:
    src = tiny_weight_matmul_model(tmp_path)
    feeds = [{"x": np.random.default_rng(i).normal(0, 1, (4, 64)).astype(np.float32)} for i in range(3)]
    out = tmp_path / "fp16.onnx"
    info = onnx_to_fp16(src, out, feeds)

    assert [a["passed"] for a in info["attempts"]] == [False, False, True]
    search = info["attempts"][2]
    assert search["blocked"].startswith("search: 1 node(s)") and search["trials"] > 1
    assert info["kept_fp32"]["node_names"] == ["tiny_matmul"]  # the harmless MatMul and the rest stay fp16
    assert info["fidelity"]["passed"] is True
    model = onnx.load(str(out))
    types = {i.name: i.data_type for i in model.graph.initializer}
    assert types["w"] == TensorProto.FLOAT and types["w2"] == TensorProto.FLOAT16


def test_fp16_that_cannot_be_converted_fails_with_one_line(tmp_path: Path) -> None:
    """An fp16 model (Silero ships one): the converter refuses it; the error says what to do, in one line."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "b"], ["y"], name="add")],
        "half",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["N", 4])],
        initializer=[numpy_helper.from_array(np.ones(4, np.float16), "b")],
    )
    src = _save(tmp_path, "half", graph, 13)
    with pytest.raises(ConversionError) as err:
        onnx_to_fp16(src, tmp_path / "fp16.onnx", [{"x": np.ones((1, 4), np.float16)}])
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("half.onnx cannot be converted to fp16: converter: ValueError: The model is already")
    assert message.endswith("keep it in fp32, or give check feeds that reflect real inputs")


def test_fp16_keeps_out_of_range_constants_in_fp32_without_preprocessing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PP-OCRv4 det's failure in small: a BatchNormalization variance beyond float16 in a Constant node. Even
    when pre-processing (which would fuse it into the Conv) fails, the node is kept fp32 from the start."""
    from model_zoo import onnx_precision

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated")

    monkeypatch.setattr("onnxruntime.quantization.shape_inference.quant_pre_process", broken)
    rng = np.random.default_rng(7)
    var = np.full(4, 2.0e6, np.float32)
    nodes = [
        _const("w", rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32)),
        _const("scale", np.full(4, 1500.0, np.float32)),
        _const("bias", np.zeros(4, np.float32)),
        _const("mean", np.zeros(4, np.float32)),
        _const("var", var),
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["y"], name="bn"),
    ]
    graph = helper.make_graph(
        nodes,
        "bn_big_var",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])],
    )
    src = _save(tmp_path, "bn_big_var", graph, 12)
    feeds = [{"x": rng.normal(0, 1, (1, 3, 8, 8)).astype(np.float32)} for _ in range(2)]
    info = onnx_to_fp16(src, tmp_path / "fp16.onnx", feeds)
    assert info["pre_process"].startswith("Constant nodes folded into initializers only")
    assert info["out_of_range_nodes_kept"] == 1
    assert info["attempts"][0]["passed"] is True
    assert info["kept_fp32"]["node_names"] == ["bn"]
    assert onnx_precision.FP16_MAX == 65504.0


# --- real third-party models, when the corpus cache has them ------------------------------------------------


def _find_real(filename: str) -> Path | None:
    from model_zoo.cache import cache_dir

    roots = [str(cache_dir() / "corpus" / "files" / "*"), "/tmp/wild/**"]
    for root in roots:
        hits = sorted(glob.glob(f"{root}/{filename}", recursive=True))
        if hits:
            return Path(hits[0])
    return None


def _text_images(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    img = np.full((h, w, 3), 235.0) + rng.normal(0, 6, (h, w, 3))
    for _ in range(3):
        y, x = rng.integers(0, h - 8), rng.integers(0, w - 20)
        for k in range(x, min(w, x + 40), 3):
            img[y : y + 6, k : k + 2] = rng.integers(0, 60)
    img = (np.clip(img, 0, 255) / 255.0 - 0.5) / 0.5
    return img.transpose(2, 0, 1)[None].astype(np.float32)


def _ocr(h: int | None, w: int) -> Callable[[Path, int, int], list[dict[str, np.ndarray]]]:
    def feeds(path: Path, n: int, seed: int) -> list[dict[str, np.ndarray]]:
        rng = np.random.default_rng(seed)
        return [{"x": _text_images(rng, h or (64, 96)[i % 2], w if h else (64, 96)[i % 2])} for i in range(n)]

    return feeds


def _vad(path: Path, n: int, seed: int) -> list[dict[str, np.ndarray]]:
    """512-sample chunks (sine tones, silence) with the recurrent state the fp32 model itself carries over."""
    rng = np.random.default_rng(seed)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    state = np.zeros((2, 1, 128), np.float32)
    t = np.arange(512) / 16000
    feeds = []
    for i in range(n):
        amp = 0.0 if i % 3 == 0 else rng.uniform(0.05, 0.5)
        audio = amp * np.sin(2 * np.pi * rng.uniform(100, 800) * t) + rng.normal(0, 0.01, 512)
        feed = {
            "input": audio.clip(-1, 0.999)[None].astype(np.float32),
            "state": state,
            "sr": np.array(16000, np.int64),
        }
        feeds.append(feed)
        state = session.run(None, feed)[1]
    return feeds


REAL = {
    "ch_PP-OCRv4_det_infer.onnx": _ocr(None, 0),
    "ch_PP-OCRv4_rec_infer.onnx": _ocr(48, 160),
    "ch_ppocr_mobile_v2.0_cls_infer.onnx": _ocr(48, 192),
    "silero_vad.onnx": _vad,
    "silero_vad_16k_op15.onnx": _vad,
    "silero_vad_op18_ifless.onnx": _vad,
}


# What these tests check is that real exports convert into valid, loadable files of the right kind; the int8 node
# search that may follow has its own tests (and the wild-model e2e judges fidelity), so here it gets a short budget:
# on PP-OCRv4's detector it used its whole 240 s.
REAL_SEARCH_SECONDS = 5.0


@pytest.mark.parametrize("precision", ["fp16", "int8_dynamic", "int8"])
@pytest.mark.parametrize("filename", sorted(REAL))
def test_real_models(filename: str, precision: str, tmp_path: Path) -> None:
    src = _find_real(filename)
    if src is None:
        pytest.skip(f"{filename} is not in the corpus cache (model_zoo.corpus fetches it)")
    make = REAL[filename]
    checks = make(src, 4, 1)
    out = tmp_path / f"{precision}.onnx"
    if precision == "fp16":
        info = onnx_to_fp16(src, out, checks)
        assert info["fidelity"]["passed"] is True
        assert min(info["fidelity"]["cosine"].values()) >= FP16_MIN_COSINE
        converted = onnx.load(str(out))
        assert sum(i.data_type == TensorProto.FLOAT16 for g in [converted.graph] for i in g.initializer) or any(
            n.op_type == "If" for n in converted.graph.node
        )
    elif precision == "int8_dynamic":
        info = onnx_to_int8_dynamic(src, out, checks, deadline=time.monotonic() + REAL_SEARCH_SECONDS)
        assert sum(info["quantized_ops"].values()) > 0
        assert info["fidelity"]["checked"] and set(info["fidelity"]["cosine"]) == {
            o.name for o in onnx.load(str(src), load_external_data=False).graph.output
        }
    else:
        info = onnx_to_int8(src, out, make(src, 8, 0), checks, deadline=time.monotonic() + REAL_SEARCH_SECONDS)
        assert info["dequantize_nodes"] > 0 and info["per_channel"] is True
        if next(o.version for o in onnx.load(str(src)).opset_import if o.domain == "") < 13:
            assert info["opset_upgrade"]["to"] == 13
        if "ppocr" in filename.lower() or "PP-OCR" in filename:  # PP-LCNet backbones: depthwise convolutions
            assert info["channels_equalised"]["tensors"] >= 10, info["channels_equalised"]
    qdq = [n for n in all_nodes(onnx.load(str(out)).graph) if n.op_type in ("DequantizeLinear", "ConvInteger", "Cast")]
    assert qdq, "the file holds converted nodes"
    check_onnx(out, src)
    out_names = [o.name for o in onnx.load(str(src), load_external_data=False).graph.output]
    for feed in checks[:1]:
        got = run(out, feed)
        assert [g.shape for g in got] == [r.shape for r in run(src, feed)]
        assert all(np.all(np.isfinite(g)) for g in got), out_names


def test_static_int8_puts_qdq_on_the_weighted_ops_only(tmp_path: Path) -> None:
    """Conv → Add → Mul → Conv: Q/DQ only where a Conv reads (its inputs, and its output as ONNX Runtime's QDQ
    quantizer adds), as TensorRT's Q/DQ placement advice has it. The Add's output, read by the Mul alone, stays
    fp32, and so the Mul reads no DequantizeLinear; only the two Convs are search candidates."""
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.3, (4, 8, 1, 1)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.float32(0.5), "half"), numpy_helper.from_array(np.float32(0.1), "shift")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c1", "shift"], ["a"], name="add"),
             helper.make_node("Mul", ["a", "half"], ["m"], name="mul"),
             helper.make_node("Conv", ["m", "w2"], ["y"], name="conv2")]
    graph = helper.make_graph(nodes, "conv_add_mul", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                     [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], initializer=inits)
    src = _save(tmp_path, "conv_add_mul", graph, 13)
    feeds = [{"x": rng.normal(0, 1, (1, 3, 8, 8)).astype(np.float32)} for _ in range(8)]
    info = onnx_to_int8(src, tmp_path / "int8.onnx", feeds, feeds)
    model = onnx.load(str(tmp_path / "int8.onnx"))
    produced_by = {out: n for n in model.graph.node for out in n.output}
    quantized_inputs = {produced_by[n.input[0]].op_type for n in model.graph.node
                        if n.op_type == "QuantizeLinear" and n.input[0] in produced_by}
    assert quantized_inputs == {"Conv", "Mul"}, quantized_inputs  # conv1's output, conv2's input; not the Add's
    dq_consumers = {n.op_type for n in model.graph.node for i in n.input
                    if i in produced_by and produced_by[i].op_type == "DequantizeLinear"}
    assert "Conv" in dq_consumers and "Mul" not in dq_consumers, dq_consumers
    assert info["kept_fp32"]["of_nodes"] == 2


def _depthwise_model(tmp_path: Path, channel_scales: np.ndarray) -> Path:
    """x [N, C, 6, 6] → Mul by per-channel scales (channels of very different ranges, as a backbone's activations
    are) → depthwise 3×3 Conv → y."""
    channels = channel_scales.shape[0]
    rng = np.random.default_rng(5)
    inits = [numpy_helper.from_array(channel_scales.astype(np.float32).reshape(1, channels, 1, 1), "scales"),
             # output channels of like ranges (as batch norm folded into the weights leaves them): the output's
             # own Q/DQ is not what is tested
             numpy_helper.from_array((rng.normal(0, 0.5, (channels, 1, 3, 3))
                                      / channel_scales.reshape(-1, 1, 1, 1)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(0, 0.1, channels).astype(np.float32), "b")]
    nodes = [helper.make_node("Mul", ["x", "scales"], ["spread"], name="spread"),
             helper.make_node("Conv", ["spread", "w", "b"], ["y"], name="depthwise", group=channels,
                              pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "depthwise", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                  ["N", channels, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", channels, 6, 6])],
                              initializer=inits)
    return _save(tmp_path, "depthwise", graph, 13)


def test_depthwise_inputs_are_rescaled_per_channel_exactly_and_quantize_far_better(tmp_path: Path) -> None:
    """A depthwise conv reading channels whose ranges differ 125-fold: with one activation scale, the narrow
    channels get no quantization level at all; rescaled (and the weights scaled back) the fp32 model gives the
    same outputs and each channel survives int8."""
    from model_zoo.onnx_precision.equalise import equalise_channels

    scales = np.array([50.0, 20.0, 5.0, 1.0, 0.5, 0.4], np.float32)
    src = _depthwise_model(tmp_path, scales)
    rng = np.random.default_rng(6)
    feeds = [{"x": rng.normal(0, 1, (2, 6, 6, 6)).astype(np.float32)} for _ in range(8)]
    done = equalise_channels(src, tmp_path / "equalised.onnx", feeds)
    assert done == {"tensors": 1, "by_their_conv": 0, "muls_added": 1}
    equalised = onnx.load(str(tmp_path / "equalised.onnx"))
    assert [n.op_type for n in equalised.graph.node] == ["Mul", "Mul", "Conv"]
    for feed in feeds:
        np.testing.assert_allclose(run(tmp_path / "equalised.onnx", feed)[0], run(src, feed)[0], rtol=1e-4,
                                   atol=1e-5)

    info = onnx_to_int8(src, tmp_path / "int8.onnx", feeds, feeds)
    assert info["channels_equalised"] == {"tensors": 1, "by_their_conv": 0, "muls_added": 1}
    assert info["kept_fp32"]["nodes"] == 0

    def narrowest_channel_error(path: Path) -> float:
        got, want = run(path, feeds[0])[0][:, -1], run(src, feeds[0])[0][:, -1]
        return float(np.linalg.norm(got - want) / np.linalg.norm(want))

    plain = tmp_path / "plain.onnx"  # the same quantizer on the source as exported
    from model_zoo.onnx_precision.int8 import _StaticQuantizer, onnx_int8_options
    _StaticQuantizer(onnx_int8_options(), True, tmp_path / "plain").quantize(src, plain, feeds)
    assert narrowest_channel_error(plain) > 0.5  # 0.4 of a range 125 times wider: under one level
    assert narrowest_channel_error(tmp_path / "int8.onnx") < 0.05


def _conv_then(tmp_path: Path, reader: str) -> Path:
    """x [N, 3, 6, 6] → dense 3×3 Conv whose output channels span a 125-fold range → `reader` ("depthwise": a
    depthwise 3×3 Conv whose filters bring the channels back to like ranges; "mul": a Mul by a scalar constant,
    then a Relu; "relu": a Relu alone, which takes no factor: the output is multiplied back before it) → y."""
    rng = np.random.default_rng(8)
    spread = np.array([50.0, 20.0, 5.0, 1.0, 0.5, 0.4])
    inits = [numpy_helper.from_array((rng.normal(0, 0.3, (6, 3, 3, 3)) * spread.reshape(-1, 1, 1, 1))
                                     .astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.1, 6).astype(np.float32), "b1")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="dense", pads=[1, 1, 1, 1])]
    if reader == "depthwise":
        inits.append(numpy_helper.from_array((rng.normal(0, 0.5, (6, 1, 3, 3)) / spread.reshape(-1, 1, 1, 1))
                                             .astype(np.float32), "w2"))
        nodes.append(helper.make_node("Conv", ["c1", "w2"], ["y"], name="depthwise", group=6, pads=[1, 1, 1, 1]))
    elif reader == "relu":
        nodes.append(helper.make_node("Relu", ["c1"], ["y"], name="relu"))
    else:
        inits.append(numpy_helper.from_array(np.float32(0.5), "gain"))
        nodes += [helper.make_node("Mul", ["c1", "gain"], ["m"], name="gain"),
                  helper.make_node("Relu", ["m"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, reader, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6, 6, 6])],
                              initializer=inits)
    return _save(tmp_path, reader, graph, 13)


@pytest.mark.parametrize("reader", ["depthwise", "mul", "relu"])
def test_a_convs_output_is_rescaled_by_the_conv_itself_where_its_readers_take_the_factors(
        tmp_path: Path, reader: str) -> None:
    """The Conv's weights and bias are divided and the readers multiplied (a depthwise conv's filters, a Mul's
    constant: no node added; a Relu: one Mul before it), the fp32 outputs unchanged, and the Conv's own quantized
    output (ONNX Runtime's int8 Conv writes int8) keeps its narrow channels."""
    from model_zoo.onnx_precision.equalise import equalise_channels
    from model_zoo.onnx_precision.int8 import _StaticQuantizer, onnx_int8_options

    src = _conv_then(tmp_path, reader)
    rng = np.random.default_rng(9)
    feeds = [{"x": rng.normal(0, 1, (2, 3, 6, 6)).astype(np.float32)} for _ in range(8)]
    equalised = tmp_path / "equalised.onnx"
    done = equalise_channels(src, equalised, feeds)
    assert done == {"tensors": 1, "by_their_conv": 1, "muls_added": int(reader == "relu")}
    added = [n.op_type for n in onnx.load(str(equalised)).graph.node]
    assert added == [n.op_type for n in onnx.load(str(src)).graph.node][:1] + ["Mul"] * (reader == "relu") + \
        [n.op_type for n in onnx.load(str(src)).graph.node][1:]
    for feed in feeds:
        np.testing.assert_allclose(run(equalised, feed)[0], run(src, feed)[0], rtol=1e-4, atol=1e-4)
    if reader == "mul":  # the constant another node might read is left as it was
        assert numpy_helper.to_array(next(i for i in onnx.load(str(equalised)).graph.initializer
                                          if i.name == "gain")) == np.float32(0.5)

    def narrowest_channel_error(path: Path) -> float:
        got, want = run(path, feeds[0])[0][:, -1], run(src, feeds[0])[0][:, -1]
        return float(np.linalg.norm(got - want) / np.linalg.norm(want))

    for name, source in (("plain", src), ("rescaled", equalised)):
        _StaticQuantizer(onnx_int8_options(), True, tmp_path / name).quantize(source, tmp_path / f"{name}.q.onnx",
                                                                               feeds)
    assert narrowest_channel_error(tmp_path / "plain.q.onnx") > 0.3
    assert narrowest_channel_error(tmp_path / "rescaled.q.onnx") < 0.05


@pytest.mark.parametrize("read_in_branch", ["c1", "w1"])
def test_what_an_if_branch_reads_keeps_its_values(tmp_path: Path, read_in_branch: str) -> None:
    """An If branch reads outer names without listing them as its node's inputs: the Conv writing a tensor it reads
    must not divide it, and weights it reads too must not be scaled, or the branch would compute on other values
    (measured before the fix: relative error 1.6 on inputs taking the branch, which no check feed took)."""
    from model_zoo.onnx_precision.equalise import equalise_channels

    rng = np.random.default_rng(10)
    spread = np.array([50.0, 20.0, 5.0, 1.0, 0.5, 0.4]).reshape(-1, 1, 1, 1)
    taken = helper.make_node("Identity", ["c1"], ["b"], name="take") if read_in_branch == "c1" else \
        helper.make_node("Conv", ["x", "w1"], ["b"], name="again", pads=[1, 1, 1, 1])
    branch = helper.make_graph([taken], "then", [], [helper.make_tensor_value_info("b", TensorProto.FLOAT,
                                                                                   ["N", 6, 6, 6])])
    other = helper.make_graph([helper.make_node("Conv", ["x", "w3"], ["n"], name="other", pads=[1, 1, 1, 1])],
                              "else", [], [helper.make_tensor_value_info("n", TensorProto.FLOAT, ["N", 6, 6, 6])])
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w1"], ["c1"], name="dense", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c1"], ["y"], name="relu"),
         helper.make_node("If", ["flag"], ["z"], name="branch", then_branch=branch, else_branch=other)],
        "conv_if", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 6]),
                    helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6, 6, 6]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 6, 6, 6])],
        initializer=[numpy_helper.from_array((rng.normal(0, 0.3, (6, 3, 3, 3)) * spread).astype(np.float32), "w1"),
                     numpy_helper.from_array(rng.normal(0, 0.3, (6, 3, 3, 3)).astype(np.float32), "w3")])
    src = _save(tmp_path, "conv_if", graph, 13)
    feeds = [{"x": rng.normal(0, 1, (2, 3, 6, 6)).astype(np.float32), "flag": np.array(True)}]
    assert equalise_channels(src, tmp_path / "eq.onnx", feeds)["tensors"] == 0


def test_a_conv_with_an_empty_bias_name_is_rescaled_like_one_without(tmp_path: Path) -> None:
    """ONNX writes an absent optional input as "": nothing to scale there (it raised KeyError, which cost the whole
    per-channel plan)."""
    from model_zoo.onnx_precision.equalise import equalise_channels

    model = onnx.load(str(_conv_then(tmp_path, "relu")))
    model.graph.node[0].input[2] = ""
    del model.graph.initializer[1]  # b1
    src = tmp_path / "empty_bias.onnx"
    onnx.save(model, str(src))
    feeds = [{"x": np.random.default_rng(11).normal(0, 1, (2, 3, 6, 6)).astype(np.float32)}]
    assert equalise_channels(src, tmp_path / "eq.onnx", feeds)["by_their_conv"] == 1
    np.testing.assert_allclose(run(tmp_path / "eq.onnx", feeds[0])[0], run(src, feeds[0])[0], rtol=1e-4, atol=1e-4)


def test_no_rescaling_where_channels_agree_or_the_conv_is_not_depthwise(tmp_path: Path) -> None:
    from model_zoo.onnx_precision.equalise import equalise_channels

    src = _depthwise_model(tmp_path, np.ones(6, np.float32))
    feeds = [{"x": np.random.default_rng(7).normal(0, 1, (2, 6, 6, 6)).astype(np.float32)}]
    assert equalise_channels(src, tmp_path / "eq.onnx", feeds)["tensors"] == 0
    assert not (tmp_path / "eq.onnx").exists()
    model = onnx.load(str(src))  # the same graph as a dense conv: its input channels mix, no exact rescaling
    model.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.ones((6, 6, 3, 3), np.float32), "w"))
    model.graph.node[1].ClearField("attribute")
    model.graph.node[1].attribute.append(helper.make_attribute("pads", [1, 1, 1, 1]))
    dense = tmp_path / "dense.onnx"
    onnx.save(model, str(dense))
    assert equalise_channels(dense, tmp_path / "eq2.onnx", feeds)["tensors"] == 0


class _ScriptedSearch:
    """_Int8Search's search logic over a scripted check: `score(kept, check_set)` instead of quantizing and running."""

    def __new__(cls, order: list[str], score: Callable[[frozenset[str], str], float], confirmations: int = 0):
        from model_zoo.fidelity import ScoreBounds
        from model_zoo.onnx_precision.int8 import _Int8Result, _Int8Search

        class Scripted(_Int8Search):
            def attempt(self, kept: set[str]) -> _Int8Result:
                self.trials.append(frozenset(kept))
                value = score(frozenset(kept), getattr(self.reference, "feeds", self.reference))
                # the path names the configuration, for a scripted reference to score it again
                return _Int8Result(Path(",".join(sorted(kept))), set(kept), {"y": ScoreBounds(value, value)}, None,
                                   [])

        search = object.__new__(Scripted)
        search.order, search.trials, search.deadline = list(order), [], time.monotonic() + 600
        search.reference, search.confirmations = "check", [f"fresh{i}" for i in range(confirmations)]
        search._longest, search._protected = 0.0, None
        return search


def _confirming_search(monkeypatch: pytest.MonkeyPatch, order: list[str],
                       score: Callable[[frozenset[str], str], float]) -> Any:
    """A scripted search with two fresh sets ("fresh0", "fresh1"), whose confirmations score a configuration (named
    by its result's path, see _ScriptedSearch) with the same script."""
    import model_zoo.onnx_precision.int8 as int8
    from model_zoo.fidelity import ScoreBounds

    class FreshReference:
        def __init__(self, src: Path, feeds: str) -> None:
            self.feeds = feeds

        def bounds(self, path: Path) -> dict[str, ScoreBounds]:
            value = score(frozenset(str(path).split(",")), self.feeds)
            return {"y": ScoreBounds(value, value)}

    monkeypatch.setattr(int8, "_Reference", FreshReference)
    search = _ScriptedSearch(order, score, confirmations=2)
    search.src = Path("src")
    return search


def test_the_static_search_orders_candidates_least_harmful_first() -> None:
    """Each candidate quantized alone; the order sorts by that score, equal scores in graph order."""
    harm = {"stem": 0.90, "a": 0.999, "b": 0.995, "dw": 0.95, "c": 0.999}
    search = _ScriptedSearch(list(harm), lambda kept, _: min((harm[n] for n in harm if n not in kept), default=1.0))
    attempts: list[dict] = []
    assert search._by_sensitivity(attempts) == ["a", "c", "b", "dw", "stem"]
    assert search.trials == [frozenset(harm) - {name} for name in harm]  # one trial each, the rest fp32
    assert attempts[-1]["passed"] is True and list(attempts[-1]["worst"])[-1] == "stem"


def test_the_sensitivity_pass_keeps_graph_order_when_its_time_share_is_spent() -> None:
    search = _ScriptedSearch(["a", "b", "c"], lambda kept, _: 1.0)
    search.deadline = time.monotonic() - 1  # no time left: not one trial
    attempts: list[dict] = []
    assert search._by_sensitivity(attempts) == ["a", "b", "c"]
    assert search.trials == [] and "graph order kept" in attempts[-1]["sensitivity"]


def test_a_searched_answer_that_fails_fresh_samples_is_searched_again_on_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The winner's curse: `b` quantized passes on the check samples the search chose it on, not on fresh ones.
    The search goes on from its answer on the fresh set alone and keeps `b` fp32 too; the next fresh set confirms."""
    import model_zoo.onnx_precision.int8 as int8

    def score(kept: frozenset[str], check_set: str) -> float:
        broken = {"a"} if check_set == "check" else {"a", "b"}
        return 0.5 if broken - kept else 0.999

    search = _confirming_search(monkeypatch, ["a", "b", "c", "d"], score)
    attempts: list[dict] = []
    found = int8._prefix_search(search.order, search.attempt, search.deadline, attempts, search.attempt(set()))
    assert found.kept == {"a"}
    result = search._confirmed(found, attempts)
    assert result.ok and result.kept == {"a", "b"}
    labels = [a.get("kept_fp32", "") for a in attempts]
    confirmations = [a for a in attempts if str(a.get("kept_fp32", "")).startswith("confirmation")]
    assert [c["passed"] for c in confirmations] == [False, True], labels
    assert search.reference.feeds == "fresh0"  # the resumed search judged on the first fresh set alone


def test_a_resumed_search_tries_neither_its_failed_start_nor_every_node_fp32() -> None:
    """Resumed after a failed confirmation, the search starts from that answer's checked failure: trying it again
    spends a trial on a known result, and an every-node-fp32 trial, were the budget to end after it, would be kept
    as the answer (nothing quantized) over the one the search started from."""
    from model_zoo.onnx_precision.search import _prefix_search

    order = ["a", "b", "c"]
    trials: list[frozenset[str]] = []

    class Result:
        def __init__(self, kept: set[str]) -> None:
            trials.append(frozenset(kept))
            self.ok, self.kept = "c" in kept, kept

        def summary(self, label: str) -> dict:
            return {"label": label, "passed": self.ok}

    before = Result(set())  # every node quantized: checked, failing
    trials.clear()
    best = _prefix_search(order, Result, time.monotonic() + 600, [], before, resumed=True)
    assert best.ok and best.kept == {"c"}
    assert frozenset(order) not in trials and frozenset() not in trials, trials


def test_confirmation_sets_are_fresh_samples_of_made_data_and_none_of_a_data_file(tmp_path: Path) -> None:
    from model_zoo.calibration import check_feeds, confirmation_feeds
    from model_zoo.inputs import InputLayout, onnx_declared
    from model_zoo.requests import ModelRef

    src = outlier_feature_model(tmp_path)
    ref, declared = ModelRef(path=str(src)), onnx_declared(str(src))
    checks = check_feeds(ref, declared, InputLayout())
    fresh = confirmation_feeds(ref, declared, InputLayout())
    assert len(fresh) == 2 and all(len(feeds) == len(checks) for feeds in fresh)
    firsts = [feeds[0]["x"] for feeds in (checks, *fresh)]
    assert not any(np.array_equal(a, b) for i, a in enumerate(firsts) for b in firsts[i + 1:])  # other samples
    data = tmp_path / "inputs.npz"
    np.savez(data, x=np.ones((4, 8), np.float32))
    assert confirmation_feeds(ref, declared, InputLayout(data=str(data))) == []  # a seed changes nothing there


def test_an_answer_no_resumed_search_can_fix_stays_and_meets_no_later_fresh_set(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Fresh samples that every quantized node breaks: the resumed search ends with every node fp32, which is no
    answer; the searched one stays, its failure recorded, and it is not put to the second fresh set (passing there
    once would undo the failure)."""
    import model_zoo.onnx_precision.int8 as int8

    order = ["a", "b", "c"]

    def score(kept: frozenset[str], check_set: str) -> float:
        if check_set == "check":
            return 0.5 if "a" not in kept else 0.999
        if check_set == "fresh1":
            return 0.999
        return 0.999 if kept >= set(order) else 0.5

    search = _confirming_search(monkeypatch, order, score)
    attempts: list[dict] = []
    found = int8._prefix_search(order, search.attempt, search.deadline, attempts, search.attempt(set()))
    result = search._confirmed(found, attempts)
    assert result is found and result.kept == {"a"}
    confirmations = [a for a in attempts if str(a.get("kept_fp32", "")).startswith("confirmation")]
    assert [c["passed"] for c in confirmations] == [False]  # never put to fresh1
    assert attempts[-1]["passed"] is False and "answer stays" in attempts[-1]["confirmation"]
