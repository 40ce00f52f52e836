"""fp32 ONNX → fp16 / int8 ONNX that works on real exported models, judged by a build-time fidelity check.

Why this module exists: real third-party ONNX files (PaddleOCR at opset 11-12 with weights in Constant nodes,
Silero VAD with its whole network inside If subgraphs and a recurrent state) broke every naive conversion:
per-channel QDQ needs opset 13, `quantize_dynamic` wants weights as initializers, onnxconverter-common's fp16
clamps out-of-range weights and retypes subgraph values that ONNX Runtime then refuses, and a converted file
that loads can still be silently wrong (a detector's output at cosine 0.04 against fp32). So every conversion
here (1) pre-processes the graph the way ONNX Runtime recommends (shape inference plus its basic, standard-op
graph optimisations, which fold Constant nodes into initializers and fuse BatchNormalization into Conv),
(2) adapts to the graph (opset upgrade, per-tensor fallback, If branches quantized one by one, fp16-breaking
nodes kept in fp32) and (3) measures the result against the fp32 source on the caller's feeds with ONNX
Runtime CPU. fp16 must pass that check (FP16_MIN_COSINE) or the build fails with one line saying why; an int8
file that misses it gets nodes back in fp32 until it passes, and one that never does is kept for the harness's
guard to fail with its figures.

Every public function returns a JSON-ready dict of facts for the artefact's meta.json, and raises
`ConversionError` (one line, the next step included) when a model truly cannot be converted.
"""

from __future__ import annotations

import hashlib
import importlib.util
import platform
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, version_converter

from model_zoo import progress
from model_zoo.fidelity import SCORE_DEFINITION, output_scores
from model_zoo.inputs import onnx_declared
from model_zoo.targets import (
    FP16_MIN_COSINE,
    FP16_SEARCH_SECONDS,
    INT8_MIN_COSINE,
    INT8_SEARCH_MIN_COSINE,
    INT8_SEARCH_SECONDS,
)

# Per-channel QDQ (DequantizeLinear's `axis`) exists from opset 13 on.
PER_CHANNEL_MIN_OPSET = 13
# Largest finite float16; onnxconverter-common's default clamp (1e4) would distort weights fp16 can hold.
FP16_MAX = 65504.0
# Op types kept in fp32 by the first fp16 retry: those whose fp16 range or rounding typically breaks
# (exp/log overflow, x² sums and their roots in normalisations, sigmoid/softmax saturation, resampling).
# What broke PP-OCRv4's detector was none of these, found by bisection and inspection: its weights sit in
# Constant nodes, which the converter turns to fp16 even when their consumer is blocked, and one
# BatchNormalization variance reaches 9.8e7 (beyond fp16, clamped to 1e4): blocking any op type, or every
# non-Constant node, left cosine at 0.38. As initializers with that node kept fp32, or once pre-processing has
# fused BatchNormalization into Conv, the whole detector runs in fp16 at cosine 0.99998.
FP16_FRAGILE_OPS: tuple[str, ...] = (
    "Resize",
    "Upsample",
    "Sigmoid",
    "Softmax",
    "LogSoftmax",
    "Exp",
    "Log",
    "Pow",
    "Sqrt",
    "Reciprocal",
    "ReduceMean",
    "ReduceSum",
    "ReduceSumSquare",
    "ReduceL2",
    "ReduceLogSumExp",
    "LayerNormalization",
    "InstanceNormalization",
    "Erf",
    "CumSum",
)
# Load errors repaired by blocking the node ONNX Runtime names, per conversion attempt.
FP16_MAX_LOAD_REPAIRS = 40
_CONTROL_FLOW = ("If", "Loop", "Scan")


# Symmetric int8 QDQ with per-channel weights: the form TensorRT's explicit quantization consumes, and ONNX
# Runtime's CPU provider runs it too, so one file serves every backend.
ONNX_INT8_OPTIONS: dict[str, Any] = {
    "quant_format": "QDQ",
    "per_channel": True,
    "activation_type": "QInt8",
    "weight_type": "QInt8",
    "extra_options": {"ActivationSymmetric": True, "WeightSymmetric": True},
    "calibrate_method": "MinMax",
}


def onnx_int8_options() -> dict[str, Any]:
    """ONNX_INT8_OPTIONS plus `reduce_range` (7-bit weights), set on x86 hosts without VNNI.

    ONNX Runtime documents that its x86 int8 kernels on AVX2 without VNNI multiply with VPMADDUBSW, whose
    int16 accumulation can saturate with full-range int8 weights, and recommends reduce_range there. Measured
    on this project's 2-core AVX2 CI machine, digits_cnn's held-out top-1 on ONNX Runtime CPU: fp32 0.9733,
    full-range int8 QDQ 0.9422, reduce_range 0.9689. The file stays symmetric QDQ (zero points 0), which
    TensorRT consumes as is. The choice is part of the cache key, so machines that differ get their own file.
    """
    return {**ONNX_INT8_OPTIONS, "reduce_range": _x86_without_vnni()}


def _x86_without_vnni() -> bool:
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False  # ARM kernels (SDOT/SMMLA) accumulate in int32: no saturation to avoid
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True  # unknown x86: the safe choice costs a bit of weight precision, never a saturation
    return not any(flag in flags.split() for flag in ("avx512_vnni", "avx_vnni", "amx_int8"))


class ConversionError(RuntimeError):
    """A model that cannot be converted to the asked precision; the message is one line with the next step."""


Feed = Mapping[str, "np.ndarray"]


# --- public entry points -----------------------------------------------------------------------------------


def onnx_to_fp16(src: Path, out_file: Path, check_feeds: Sequence[Feed] | None = None,
                 deadline: float | None = None) -> dict[str, Any]:
    """float32 → float16 weights and activations, float32 model inputs and outputs kept, fidelity checked.

    Steps, each because a real model needed it: pre-processing folds Constant-node weights into initializers
    (onnxconverter-common converts a Constant node's tensor even when its consumer is kept in fp32, so a
    BatchNormalization variance of 1e8 was clamped) and fuses BatchNormalization into Conv; nodes whose
    constant inputs exceed float16's range stay fp32, as do Casts to float32 (the converter retypes their
    output without changing the Cast, which ONNX Runtime refuses to load). A file ONNX Runtime refuses is
    repaired by keeping the node it names in fp32. Then `check_feeds` decide: below FP16_MIN_COSINE on any
    output, FP16_FRAGILE_OPS are kept in fp32; still below, a bisection over the nodes in graph order keeps
    in fp32 each node from which the check fails, until it passes. Without feeds the check cannot run and
    meta.json says so. ``deadline`` (time.monotonic()) caps the whole conversion, the search included: out of time,
    the best configuration found so far is kept (default: FP16_SEARCH_SECONDS from now).
    """
    started = time.monotonic()
    deadline = started + FP16_SEARCH_SECONDS if deadline is None else deadline
    feeds = _dict_feeds(check_feeds, "check_feeds")
    with tempfile.TemporaryDirectory(prefix="accelbench-fp16-") as tmp:
        prepared, pre_info = _pre_process(src, Path(tmp))
        model = _load(prepared)
        _constants_to_initializers(model)  # in case pre-processing failed: see FP16_FRAGILE_OPS
        _name_nodes(model)
        reference = _Reference(src, feeds)
        search = _Fp16Search(model, reference)
        base = search.base_block()
        info: dict[str, Any] = {
            "converter": "onnxconverter_common.float16",
            "keep_io_types": True,
            "pre_process": pre_info,
            "fp32_casts_kept": len(search.fp32_casts),
            "out_of_range_nodes_kept": len(search.out_of_range),
        }
        attempts: list[dict[str, Any]] = []
        progress.step("converting to fp16 and checking it")
        result = search.attempt(base, ())
        attempts.append(result.summary("default block list"))
        if not result.ok:
            progress.step("fragile op types kept fp32: checking again")
            result = search.attempt(base, FP16_FRAGILE_OPS)
            attempts.append(result.summary(f"fragile op types kept fp32: {', '.join(FP16_FRAGILE_OPS)}"))
            if not result.ok:
                result = search.bisect(base, attempts, deadline, result)
        info["attempts"] = attempts
        if not result.ok or result.model is None:
            raise ConversionError(
                f"{src.name} cannot be converted to fp16: {result.reason()}; keep it in fp32, "
                "or give check feeds that reflect real inputs"
            )
        _save(result.model, out_file)
    check_onnx(out_file, src)
    info["kept_fp32"] = result.kept_fp32(model)
    info["fidelity"] = _fidelity_meta(result.cosines, FP16_MIN_COSINE, len(feeds))
    info["build_seconds"] = round(time.monotonic() - started, 2)
    return info


def onnx_to_int8_dynamic(src: Path, out_file: Path, check_feeds: Sequence[Feed] | None = None,
                         deadline: float | None = None) -> dict[str, Any]:
    """int8 weights, activations quantized at run time by ONNX Runtime (ConvInteger / MatMulInteger).

    Pre-processing first, because `quantize_dynamic` only quantizes weights that are initializers and real
    exporters emit Constant nodes; ONNX Runtime's subgraph option is on, so networks inside If branches get
    quantized too. Fallbacks, recorded: without subgraphs, then on the Constant-folded original, then
    without Conv (ConvInteger is the op ONNX Runtime's CPU provider lacks most often). A file that misses
    INT8_SEARCH_MIN_COSINE on `check_feeds` gets nodes back in fp32 (`_Int8Search`); one that still misses it
    is kept, and the harness's guard fails its cases with the figures. ``deadline`` (time.monotonic()) caps the
    whole conversion: out of time, the best file found so far is kept (default: INT8_SEARCH_SECONDS from now).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    started = time.monotonic()
    deadline = started + INT8_SEARCH_SECONDS if deadline is None else deadline
    feeds = _dict_feeds(check_feeds, "check_feeds")
    info: dict[str, Any] = {"weight_type": "QInt8"}
    with tempfile.TemporaryDirectory(prefix="accelbench-int8d-") as tmp:
        work = Path(tmp)
        prepared, info["pre_process"] = _pre_process(src, work)
        folded = work / "folded.onnx"
        model = _load(src)
        _constants_to_initializers(model)
        _prepare_for_quantizer(model, folded)
        _prepare_for_quantizer(_load(prepared), prepared)
        plans: list[tuple[str, Path, dict[str, Any]]] = [
            ("pre-processed, subgraphs", prepared, {"extra_options": {"EnableSubgraph": True}}),
            ("pre-processed", prepared, {}),
            ("Constant nodes folded", folded, {"extra_options": {"EnableSubgraph": True}}),
            (
                "pre-processed, Conv left fp32",
                prepared,
                {"extra_options": {"EnableSubgraph": True}, "op_types_to_quantize": list(_DYNAMIC_NO_CONV)},
            ),
        ]

        def quantize_with_plan(plan: tuple[str, Path, dict[str, Any]]) -> None:
            progress.step(f"quantizing ({plan[0]})")
            quantize_dynamic(str(plan[1]), str(out_file), weight_type=QuantType.QInt8, **plan[2])

        chosen, failures = _first_plan_that_converts(plans, quantize_with_plan, out_file, src)
        if chosen is None:
            raise ConversionError(
                f"{src.name} cannot be quantized dynamically: {failures[0]}; try int8 (static, with "
                "calibration data) or fp16"
            )
        label, source, kwargs = chosen
        info["variant"] = label
        reference = _Reference(src, feeds)
        if reference.feeds:
            def quantize_keeping(kept: set[str], path: Path) -> list[dict[str, Any]]:
                quantize_dynamic(str(source), str(path), weight_type=QuantType.QInt8, nodes_to_exclude=sorted(kept),
                                 **kwargs)
                return []

            search = _Int8Search(src, source, out_file, work, reference, quantize_keeping, deadline)
            info["search_threshold"] = INT8_SEARCH_MIN_COSINE
            info["attempts"] = search.run()
            info["kept_fp32"] = search.kept_fp32
        info["quantized_ops"] = {op: n for op, n in _op_counts(_load(out_file)).items() if op in _DYNAMIC_OPS}
    info["fallbacks_tried"] = failures
    info["fidelity"] = _fidelity_meta(reference.cosines(out_file), INT8_MIN_COSINE, len(feeds))
    info["build_seconds"] = round(time.monotonic() - started, 2)
    return info


def onnx_to_int8(
    src: Path,
    out_file: Path,
    calibration_feeds: Sequence[Feed],
    check_feeds: Sequence[Feed] | None = None,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Static symmetric int8 QDQ (the form TensorRT's explicit quantization consumes), calibrated on
    `calibration_feeds`: each dict is one model call, as given to ONNX Runtime's MinMax calibrator.

    `onnx_int8_options()` says per-channel; real exports at opset < 13 cannot carry per-channel
    DequantizeLinear, so the graph is upgraded with `onnx.version_converter` (kept only if the upgraded fp32
    model still gives the source's outputs) or, failing that, quantized per-tensor. ONNX Runtime's QDQ
    quantizer does not enter If subgraphs, where e.g. Silero VAD keeps its whole network: each branch that the
    calibration data takes is cut out as a model of its own (its outer-scope values as inputs, calibrated on
    the values the fp32 model feeds it), quantized the same way and put back; a branch no feed takes stays
    fp32 and meta.json says so. A file that misses INT8_SEARCH_MIN_COSINE on `check_feeds` gets nodes back in
    fp32 (`_Int8Search`, same calibration); one that still misses it is kept for the harness's guard to judge.
    ``deadline`` (time.monotonic()) caps the whole conversion, calibration and checks included: out of time, the
    best file found so far is kept (default: INT8_SEARCH_SECONDS from now).
    """

    started = time.monotonic()
    deadline = started + INT8_SEARCH_SECONDS if deadline is None else deadline
    calibration = _calibration_feeds(src, calibration_feeds)
    checks = _dict_feeds(check_feeds, "check_feeds") if check_feeds is not None else calibration[:8]
    options = onnx_int8_options()
    info: dict[str, Any] = {"calibration_feeds": len(calibration), "reduce_range": options["reduce_range"]}
    with tempfile.TemporaryDirectory(prefix="accelbench-int8-") as tmp:
        work = Path(tmp)
        prepared, info["pre_process"] = _pre_process(src, work)
        _prepare_for_quantizer(_load(prepared), prepared)
        reference = _Reference(src, checks)
        folded = work / "folded.onnx"
        model = _load(src)
        _constants_to_initializers(model)
        _prepare_for_quantizer(model, folded)
        plans = _int8_plans(prepared, folded, work, options, reference, info)
        ranges = work / "ranges"
        branches: list[dict[str, Any]] = []

        def quantize_with_plan(plan: tuple[str, Path, bool]) -> None:
            progress.step(f"calibrating on {len(calibration)} feed(s) and quantizing ({plan[0]})")
            quantizer = _StaticQuantizer(options, plan[2], work / plan[0].replace(" ", "_"), ranges=ranges)
            quantizer.quantize(plan[1], out_file, calibration)
            branches[:] = quantizer.subgraphs

        chosen, failures = _first_plan_that_converts(plans, quantize_with_plan, out_file, src)
        if chosen is None:
            raise ConversionError(
                f"{src.name} cannot be quantized statically: {failures[-1] if failures else 'no plan'}; try "
                "int8_dynamic or fp16, or give calibration data that exercises every input"
            )
        label, source, per_channel = chosen
        info["variant"] = label
        info["per_channel"] = per_channel
        info["subgraphs"] = branches
        info["fallbacks_tried"] = failures
        if reference.feeds:
            def quantize_keeping(kept: set[str], path: Path) -> list[dict[str, Any]]:
                trial = _StaticQuantizer(options, per_channel, path.with_suffix(""), kept, ranges)
                trial.quantize(source, path, calibration)
                return trial.subgraphs

            search = _Int8Search(src, source, out_file, work, reference, quantize_keeping, deadline)
            info["search_threshold"] = INT8_SEARCH_MIN_COSINE
            info["attempts"] = search.run()
            info["kept_fp32"] = search.kept_fp32
            info["subgraphs"] = search.subgraphs or info["subgraphs"]
        info["dequantize_nodes"] = _op_counts(_load(out_file)).get("DequantizeLinear", 0)
    info["fidelity"] = _fidelity_meta(reference.cosines(out_file), INT8_MIN_COSINE, len(checks))
    info["build_seconds"] = round(time.monotonic() - started, 2)
    return info


_Plan = TypeVar("_Plan", bound=tuple)


def _first_plan_that_converts(
    plans: Sequence[_Plan], quantize: Callable[[_Plan], None], out_file: Path, src: Path
) -> tuple[_Plan | None, list[str]]:
    """The first plan (label first) whose `quantize` writes to `out_file` a file that `_finish_converted` accepts and
    that has a quantized node, and a line per plan that failed before it: every library failure is one more
    fallback to try, and the messages say which."""
    failures: list[str] = []
    for plan in plans:
        try:
            quantize(plan)
            _finish_converted(out_file, src)
            if not _quantized_nodes(out_file):
                raise ConversionError("no node was quantized")
        except Exception as exc:  # the next plan is the fallback
            failures.append(f"{plan[0]}: {_first_line(exc)}")
            continue
        return plan, failures
    return None, failures


def _finish_converted(path: Path, src: Path) -> None:
    """What every quantized file goes through: nodes in topological order (the quantizers append), then
    `check_onnx` against its source."""
    _toposort_file(path)
    check_onnx(path, src)


def _quantized_nodes(path: Path) -> int:
    """Quantized nodes in the file, static (DequantizeLinear) or dynamic (ConvInteger, MatMulInteger, ...)."""
    counts = _op_counts(_load(path))
    return sum(counts.get(op, 0) for op in _DYNAMIC_OPS)


def check_onnx(out_file: Path, src: Path) -> None:
    """The converted file must pass the ONNX checker, load in ONNX Runtime CPU, and keep every input
    dimension the source left dynamic dynamic (a batch size frozen by a converter would be a silent loss)."""

    onnx.checker.check_model(str(out_file))
    before = {s.name: s for s in onnx_declared(str(src))}
    for spec in onnx_declared(str(out_file)):
        old = before.get(spec.name)
        if old is None:
            raise RuntimeError(f"the converted model has an input {spec.name!r} the source does not have")
        batch, old_batch = (spec.shape[0] if spec.shape else None), (old.shape[0] if old.shape else None)
        if old_batch is None and batch is not None:
            raise RuntimeError(f"the converted model fixed the batch dimension of input {spec.name!r} at {batch}")
    _session(out_file)


class _Reference:
    """The fp32 source's outputs on the check feeds, computed once and compared with each candidate."""

    def __init__(self, src: Path, feeds: Sequence[Feed]) -> None:
        self.feeds = list(feeds)
        session = _session(src)
        self.names = [o.name for o in session.get_outputs()]
        self.outputs = [session.run(None, dict(feed)) for feed in self.feeds]

    def cosines(self, candidate: Path | bytes) -> dict[str, float]:
        if not self.feeds:
            return {}
        session = _session(candidate)
        outputs = [session.run(self.names, dict(feed)) for feed in self.feeds]
        return output_scores(self.outputs, outputs, self.names)


def _fidelity_meta(cosines: Mapping[str, float], threshold: float, feeds: int) -> dict[str, Any]:
    if not feeds:
        return {"checked": False, "why": "no check feeds were given"}
    return {
        "checked": True,
        "metric": f"per output vs fp32 on ONNX Runtime CPU, each feed one sample: the guard's {SCORE_DEFINITION}",
        "feeds": feeds,
        "threshold": threshold,
        "cosine": {name: round(value, 6) for name, value in cosines.items()},
        "passed": all(value >= threshold for value in cosines.values()),
    }


# --- fp16 --------------------------------------------------------------------------------------------------


class _Fp16Result:
    def __init__(
        self,
        model: onnx.ModelProto | None,
        blocked: set[str],
        op_block: tuple[str, ...],
        cosines: dict[str, float],
        error: str | None,
        repaired: list[str],
    ) -> None:
        self.model, self.blocked, self.op_block = model, blocked, op_block
        self.cosines, self.error, self.repaired = cosines, error, repaired

    @property
    def ok(self) -> bool:
        return self.error is None and all(v >= FP16_MIN_COSINE for v in self.cosines.values())

    def reason(self) -> str:
        if self.error:
            return self.error
        worst = min(self.cosines, key=self.cosines.__getitem__)
        return f"output {worst!r} keeps cosine {self.cosines[worst]:.4f} < {FP16_MIN_COSINE} against fp32"

    def summary(self, label: str) -> dict[str, Any]:
        out: dict[str, Any] = {"blocked": label, "passed": self.ok}
        if self.error:
            out["error"] = self.error
        else:
            out["cosine"] = {k: round(v, 6) for k, v in self.cosines.items()}
        if self.repaired:
            out["load_repairs"] = len(self.repaired)
        return out

    def kept_fp32(self, model: onnx.ModelProto) -> dict[str, Any]:
        from onnxconverter_common import float16

        op_block = set(float16.DEFAULT_OP_BLOCK_LIST) | set(self.op_block)
        nodes = [n for n in _all_nodes(model.graph) if n.op_type in op_block or n.name in self.blocked]
        types: dict[str, int] = {}
        for node in nodes:
            types[node.op_type] = types.get(node.op_type, 0) + 1
        return {
            "op_types_blocked": sorted(self.op_block),
            "nodes": len(nodes),
            "of_nodes": sum(1 for _ in _all_nodes(model.graph)),
            "by_op_type": dict(sorted(types.items())),
            "node_names": sorted(n.name for n in nodes if n.name in self.blocked)[:200],
        }


class _Fp16Search:
    """Converts with a given block list, repairs load errors, checks fidelity; bisects when asked."""

    def __init__(self, model: onnx.ModelProto, reference: _Reference) -> None:
        self.model = model
        self.reference = reference
        nodes = list(_all_nodes(model.graph))
        self.fp32_casts = {
            n.name
            for n in nodes
            if n.op_type == "Cast" and any(a.name == "to" and a.i == TensorProto.FLOAT for a in n.attribute)
        }
        self.out_of_range = _nodes_with_out_of_range_constants(model)
        # the order the bisection walks: graph order, a subgraph's nodes right after their If/Loop/Scan node;
        # control-flow nodes themselves are never blocked by the search (that would block whole subgraphs)
        self.order = [n.name for n in nodes if n.op_type not in _CONTROL_FLOW and n.op_type != "Constant"]
        # a Constant node's tensor is converted unless the node itself is blocked, whatever its consumers:
        # it follows them into fp32, as the converter does for initializers
        self.constant_consumers: dict[str, set[str]] = {}
        for graph in _all_graphs(model.graph):
            produced_by = {n.output[0]: n.name for n in graph.node if n.op_type == "Constant" and n.output}
            for node in _all_nodes(graph):
                for name in node.input:
                    if name in produced_by:
                        self.constant_consumers.setdefault(produced_by[name], set()).add(
                            node.op_type + "\0" + node.name
                        )

    def base_block(self) -> set[str]:
        return set(self.fp32_casts) | set(self.out_of_range)

    def attempt(self, blocked: set[str], op_block: Sequence[str]) -> _Fp16Result:
        from onnxconverter_common import float16

        blocked = set(blocked)
        repaired: list[str] = []
        while True:
            for constant, consumers in self.constant_consumers.items():
                if any(c.split("\0")[0] in op_block or c.split("\0")[1] in blocked for c in consumers):
                    blocked.add(constant)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # one warning per clamped weight: the expected fp16 loss
                try:
                    converted = float16.convert_float_to_float16(
                        onnx.ModelProto.FromString(self.model.SerializeToString()),
                        max_finite_val=FP16_MAX,
                        keep_io_types=True,
                        op_block_list=list(float16.DEFAULT_OP_BLOCK_LIST) + list(op_block),
                        node_block_list=sorted(blocked),
                    )
                except Exception as exc:  # the converter's failure is the attempt's result
                    return _Fp16Result(None, blocked, tuple(op_block), {}, f"converter: {_first_line(exc)}", repaired)
            _toposort(converted.graph)
            data = converted.SerializeToString()
            try:
                if self.reference.feeds:
                    cosines = self.reference.cosines(data)
                else:
                    _session(data)
                    cosines = {}
            except Exception as exc:  # a refused file is repaired by blocking the named node
                culprit = self._culprit(str(exc), blocked)
                if culprit is None or len(repaired) >= FP16_MAX_LOAD_REPAIRS:
                    return _Fp16Result(
                        None, blocked, tuple(op_block), {}, f"ONNX Runtime: {_first_line(exc)}", repaired
                    )
                blocked.add(culprit)
                repaired.append(culprit)
                continue
            return _Fp16Result(converted, blocked, tuple(op_block), cosines, None, repaired)

    def _culprit(self, message: str, blocked: set[str]) -> str | None:
        """The innermost node an ONNX Runtime type error names that is not yet blocked ("... of node (X)")."""
        names = {n.name: n.op_type for n in _all_nodes(self.model.graph)}
        for name in reversed(re.findall(r"[Nn]ode \(([^)]+)\)", message)):
            if name in names and name not in blocked and names[name] not in _CONTROL_FLOW:
                return name
        return None

    def bisect(self, base: set[str], attempts: list[dict[str, Any]], deadline: float,
               before: _Fp16Result) -> _Fp16Result:
        """The nodes whose fp16 conversion breaks the check, found by `_prefix_search` before ``deadline``."""
        return _prefix_search(self.order, lambda kept: self.attempt(base | kept, ()), deadline, attempts, before)


class _SearchResult(Protocol):
    @property
    def ok(self) -> bool: ...

    def summary(self, label: str) -> dict[str, Any]: ...


_R = TypeVar("_R", bound=_SearchResult)


def _prefix_search(order: Sequence[str], attempt: Callable[[set[str]], _R], deadline: float,
                   attempts: list[dict[str, Any]], before: _R) -> _R:
    """Greedy search for the nodes a conversion must leave in fp32, given `attempt(kept_fp32)`.

    The longest prefix of `order` that converts and passes (the rest kept fp32) ends at a node that breaks
    the check; keep that node fp32 and look for the next one, until everything else is converted. Out of
    time, the last passing configuration (its tail in fp32) is kept. Every node fp32 failing ends the search
    at once: then no choice of nodes can help. ``deadline`` is the whole conversion's (time.monotonic()): no trial
    starts that the longest one so far says would end past it, so the conversion keeps to its budget; ``before``
    (the configuration the search starts from) is the answer when there is no time for any.
    """
    culprits: set[str] = set()
    trials = 0
    longest = 0.0

    def trial(k: int) -> _R:
        nonlocal trials, longest
        trials += 1
        begun = time.monotonic()
        result = attempt(culprits | set(order[k:]))
        longest = max(longest, time.monotonic() - begun)
        return result

    def time_left() -> bool:
        return time.monotonic() + longest < deadline

    lo = 0
    if not time_left():
        attempts.append({"search": "not started: the conversion's time budget was spent before it", "passed": False})
        return before
    best = trial(0)
    if not best.ok:
        attempts.append(best.summary("every node fp32 (search start)"))
        return best
    full = None
    while time_left():
        full = trial(len(order))
        if full.ok:
            best = full
            break
        hi = len(order)
        while hi - lo > 1 and time_left():
            mid = (lo + hi) // 2
            result = trial(mid)
            if result.ok:
                lo, best = mid, result
            else:
                hi = mid
        if hi - lo > 1 or lo >= len(order):  # out of time (the passing prefix is kept), or nothing left to add
            break
        culprits.add(order[lo])
        lo += 1  # order[:lo] converted but order[lo-1] kept is the configuration `best` already had
    summary = best.summary(
        f"search: {len(culprits)} node(s) found breaking the check"
        + ("" if best is full else f", nodes from #{lo} of {len(order)} left fp32 (time budget)")
    )
    summary["trials"] = trials
    summary["nodes_kept_fp32"] = sorted(culprits)[:200]
    attempts.append(summary)
    return best


def _nodes_with_out_of_range_constants(model: onnx.ModelProto) -> set[str]:
    """Nodes fed a float constant (initializer or Constant node) with a finite value beyond float16's range."""
    out: set[str] = set()
    for graph in _all_graphs(model.graph):
        big: set[str] = set()
        for init in graph.initializer:
            if init.data_type == TensorProto.FLOAT:
                a = numpy_helper.to_array(init)
                if a.size and np.any(np.isfinite(a) & (np.abs(a) > FP16_MAX)):
                    big.add(init.name)
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].t.data_type == TensorProto.FLOAT:
                a = numpy_helper.to_array(node.attribute[0].t)
                if a.size and np.any(np.isfinite(a) & (np.abs(a) > FP16_MAX)):
                    big.add(node.output[0])
                    out.add(node.name)
        for node in graph.node:
            if any(i in big for i in node.input):
                out.add(node.name)
    return out


# --- int8 (static) -----------------------------------------------------------------------------------------


def _int8_plans(
    prepared: Path, folded: Path, work: Path, options: Mapping[str, Any], reference: _Reference, info: dict[str, Any]
) -> list[tuple[str, Path, bool]]:
    """What to try, in order: per-channel (after an opset upgrade when needed), then per-tensor."""
    # last resort: the quantizer's own shape inference trips over some pre-processed graphs (a Transpose whose
    # input rank the pre-processor got wrong), so the source as exported gets a try too
    original = [("per-tensor, graph as exported", folded, False)]
    if not options["per_channel"]:
        return [("per-tensor", prepared, False), *original]
    opset = _opset(_load(prepared))
    if opset >= PER_CHANNEL_MIN_OPSET:
        return [("per-channel", prepared, True), ("per-tensor", prepared, False), *original]
    upgraded = work / "upgraded.onnx"
    try:
        _upgrade_opset(prepared, upgraded, PER_CHANNEL_MIN_OPSET, reference)
    except Exception as exc:  # no upgrade: per-tensor at the model's own opset
        info["opset_upgrade"] = {"from": opset, "to": None, "why_not": _first_line(exc)}
        return [("per-tensor", prepared, False), *original]
    info["opset_upgrade"] = {"from": opset, "to": PER_CHANNEL_MIN_OPSET}
    return [("per-channel", upgraded, True), ("per-tensor", prepared, False), *original]


def _upgrade_opset(src: Path, out: Path, target: int, reference: _Reference) -> None:
    """onnx.version_converter, accepted only if the upgraded fp32 model gives the source's outputs."""
    upgraded = version_converter.convert_version(_load(src), target)
    onnx.checker.check_model(upgraded)
    _save(upgraded, out)
    if reference.feeds:
        cosines = reference.cosines(out)
        worst = min(cosines.values(), default=1.0)
        if worst < 0.9999:
            raise RuntimeError(f"the upgraded fp32 model differs from the source (cosine {worst:.5f})")
    else:
        _session(out)


class _StaticQuantizer:
    """quantize_static, plus the If branches ONNX Runtime's QDQ quantizer leaves alone, recursively."""

    def __init__(self, options: Mapping[str, Any], per_channel: bool, work: Path,
                 excluded: set[str] | None = None, ranges: Path | None = None) -> None:
        self.options, self.per_channel, self.work = options, per_channel, work
        self.excluded = sorted(excluded or ())
        # tensor ranges computed once per source graph (ONNX Runtime's calibration cache), keyed by the graph's
        # bytes: the int8 search re-quantizes the same graphs with other nodes excluded, and calibration was
        # most of each trial's time (Basic Pitch: 64 calls of a 40 ms model per trial)
        self.ranges = ranges
        self.subgraphs: list[dict[str, Any]] = []
        self._count = 0
        work.mkdir(parents=True, exist_ok=True)

    def quantize(self, source: Path, out_file: Path, feeds: Sequence[Feed], where: str = "") -> None:
        self._quantize_static(source, out_file, feeds)
        if not any(n.op_type == "If" for n in _load(source).graph.node):
            return
        fp32 = _load(source)
        quantized = _load(out_file)
        q_ifs = {n.name: n for n in quantized.graph.node if n.op_type == "If"}
        outer_inits = {i.name: i for i in fp32.graph.initializer}
        wanted: list[tuple[onnx.NodeProto, str, list[str]]] = []
        names: set[str] = set()
        for node in fp32.graph.node:
            if node.op_type != "If" or node.name not in q_ifs:
                continue
            names.add(node.input[0])
            for attr in node.attribute:
                outer = sorted(_outer_names(attr.g) - set(outer_inits))
                wanted.append((node, attr.name, outer))
                names.update(outer)
        values = _intermediates(source, feeds, sorted(names))
        for node, branch, outer in wanted:
            label = f"{where}{node.name}.{branch}"
            taken = [i for i, v in enumerate(values) if bool(v[node.input[0]]) == (branch == "then_branch")]
            if not taken:
                self.subgraphs.append({"branch": label, "quantized": False, "why": "no calibration feed takes it"})
                continue
            graph = next(a.g for a in node.attribute if a.name == branch)
            branch_feeds = [{name: values[i][name] for name in outer} for i in taken]
            self._count += 1
            sub_src = self.work / f"branch{self._count}.onnx"
            sub_out = self.work / f"branch{self._count}_q.onnx"
            _save(_branch_model(fp32, graph, outer, outer_inits, branch_feeds[0]), sub_src)
            try:
                self.quantize(sub_src, sub_out, branch_feeds, where=f"{label}/")
                new_graph = _graph_from_branch(_load(sub_out), graph, set(outer_inits))
            except Exception as exc:  # one branch that cannot be quantized stays fp32
                self.subgraphs.append({"branch": label, "quantized": False, "why": _first_line(exc)})
                continue
            target = next(a for a in q_ifs[node.name].attribute if a.name == branch)
            target.g.CopyFrom(new_graph)
            for opset in _load(sub_out).opset_import:
                if opset.domain and not any(o.domain == opset.domain for o in quantized.opset_import):
                    quantized.opset_import.append(opset)
            self.subgraphs.append({"branch": label, "quantized": True, "calibration_feeds": len(taken)})
        _save(quantized, out_file)

    def _quantize_static(self, source: Path, out_file: Path, feeds: Sequence[Feed]) -> None:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self._feeds = iter([dict(f) for f in feeds])

            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(self._feeds, None)

        cache: dict[str, str] = {}
        if self.ranges is not None:
            self.ranges.mkdir(parents=True, exist_ok=True)

            digest = hashlib.sha256(source.read_bytes())
            for feed in feeds:  # the same graph calibrated on other data (two identical If branches) has other ranges
                for name in sorted(feed):
                    digest.update(name.encode() + np.ascontiguousarray(feed[name]).tobytes())
            cache["calibration_cache_path"] = str(self.ranges / f"{digest.hexdigest()[:20]}.json")
        quantize_static(
            str(source),
            str(out_file),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=self.per_channel,
            reduce_range=self.options["reduce_range"],
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options=dict(self.options["extra_options"]),
            nodes_to_exclude=self.excluded,
            **cache,
        )


class _Int8Result:
    def __init__(self, path: Path | None, kept: set[str], cosines: dict[str, float], error: str | None,
                 subgraphs: list[dict[str, Any]]) -> None:
        self.path, self.kept, self.cosines, self.error, self.subgraphs = path, kept, cosines, error, subgraphs

    @property
    def ok(self) -> bool:
        return self.error is None and all(v >= INT8_SEARCH_MIN_COSINE for v in self.cosines.values())

    def summary(self, label: str) -> dict[str, Any]:
        out: dict[str, Any] = {"kept_fp32": label, "passed": self.ok}
        if self.error:
            out["error"] = self.error
        else:
            out["cosine"] = {k: round(v, 6) for k, v in self.cosines.items()}
        return out


# Quantizes `source` into the given file with the named nodes left fp32; returns the If branches it handled.
_Int8Quantize = Callable[[set[str], Path], list[dict[str, Any]]]


class _Int8Search:
    """An int8 file (static or dynamic) that misses INT8_SEARCH_MIN_COSINE on the check feeds gets nodes back in fp32
    (the quantizers' `nodes_to_exclude`), found by `_prefix_search` over the nodes in graph order, so the file
    keeps as many int8 nodes as the check allows. No op-type list first, unlike fp16: keeping the fp16 list
    (Pow, Sqrt, Sigmoid, ...) in fp32 changed neither Basic Pitch's nor Silero VAD's figures. Measured: Basic
    Pitch's pitch posteriorgram, calibrated on 64 samples, scored cosine 0.887 fully quantized and 0.985 with
    9 of 246 nodes (its constant-Q front end) in fp32, found in 69 trials (119 s on 2 cores)."""

    def __init__(self, src: Path, source: Path, out_file: Path, work: Path, reference: _Reference,
                 quantize_keeping: _Int8Quantize, deadline: float) -> None:
        self.src, self.source, self.out_file, self.work = src, source, out_file, work
        self.reference, self.quantize_keeping, self.deadline = reference, quantize_keeping, deadline
        self._passing: Path | None = None
        nodes = list(_all_nodes(_load(source).graph))
        self.order = [n.name for n in nodes if n.op_type not in _CONTROL_FLOW and n.op_type != "Constant"]
        self.op_types = {n.name: n.op_type for n in nodes}
        self.kept_fp32: dict[str, Any] = {"nodes": 0}
        self.subgraphs: list[dict[str, Any]] = []
        self._trials = 0

    def attempt(self, kept: set[str]) -> _Int8Result:
        """One configuration, checked like every converted file (the ONNX checker, dynamic dims kept) and scored.
        Only the newest passing file is kept on disk (`_prefix_search` returns the newest passing result): 69
        trials of a 100 MB model would otherwise fill the temporary folder."""
        self._trials += 1
        progress.step(f"node search: trial {self._trials}, {len(kept)} of {len(self.order)} node(s) kept fp32")
        path = self.work / f"trial{self._trials}.onnx"
        try:
            subgraphs = self.quantize_keeping(kept, path)
            _finish_converted(path, self.src)
            result = _Int8Result(path, kept, self.reference.cosines(path), None, subgraphs)
        except Exception as exc:  # a configuration that does not build or load is a failed attempt
            result = _Int8Result(None, kept, {}, _first_line(exc), [])
        shutil.rmtree(path.with_suffix(""), ignore_errors=True)  # branch models and calibration of this trial
        if not result.ok:
            path.unlink(missing_ok=True)
        else:
            if self._passing is not None:
                self._passing.unlink(missing_ok=True)
            self._passing = path
        return result

    def run(self) -> list[dict[str, Any]]:
        """Attempts in meta.json form; the best file ends at `out_file`, what it keeps fp32 in `kept_fp32`."""
        progress.step("checking the quantized file")
        first = _Int8Result(self.out_file, set(), self.reference.cosines(self.out_file), None, [])
        attempts = [first.summary("none")]
        if first.ok:
            return attempts
        result = _prefix_search(self.order, self.attempt, self.deadline, attempts, first)
        if not result.ok:
            return attempts  # nothing found passes: the first file stays, the harness's guard fails it
        if result.path is None or not _quantized_nodes(result.path):
            attempts.append({"kept_fp32": "result", "passed": False, "error": "no node stays quantized"})
            return attempts
        result.path.replace(self.out_file)
        by_type: dict[str, int] = {}
        kept = result.kept
        for name in kept:
            by_type[self.op_types.get(name, "?")] = by_type.get(self.op_types.get(name, "?"), 0) + 1
        self.kept_fp32 = {"nodes": len(kept), "of_nodes": len(self.order), "by_op_type": dict(sorted(by_type.items())),
                          "node_names": sorted(kept)[:200]}
        self.subgraphs = result.subgraphs
        return attempts


def _outer_names(graph: onnx.GraphProto) -> set[str]:
    """Names a subgraph (and the subgraphs inside it) reads from enclosing scopes."""
    defined: set[str] = set()
    used: set[str] = set()
    for g in _all_graphs(graph):
        defined.update(i.name for i in g.initializer)
        defined.update(i.name for i in g.input)
        for node in g.node:
            used.update(i for i in node.input if i)
            defined.update(o for o in node.output if o)
    used.update(o.name for o in graph.output)
    return used - defined


def _intermediates(source: Path, feeds: Sequence[Feed], names: Sequence[str]) -> list[dict[str, np.ndarray]]:
    """The fp32 values of `names` (graph inputs or top-level intermediates) for every feed."""
    model = _load(source)
    have = {o.name for o in model.graph.output}
    for name in names:
        if name not in have:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
    session = _session(model.SerializeToString())
    out_names = [o.name for o in session.get_outputs()]
    inputs = {i.name for i in model.graph.input}
    result = []
    for feed in feeds:
        values = dict(zip(out_names, session.run(None, dict(feed)), strict=True))
        values.update({k: v for k, v in feed.items() if k in inputs})
        result.append({name: values[name] for name in names})
    return result


def _branch_model(
    parent: onnx.ModelProto,
    graph: onnx.GraphProto,
    outer: Sequence[str],
    outer_inits: Mapping[str, onnx.TensorProto],
    sample: Feed,
) -> onnx.ModelProto:
    """An If branch as a model: its outer-scope values become inputs (typed from a sample), the outer
    initializers it reads are copied in."""
    inputs = [
        helper.make_tensor_value_info(
            name, helper.np_dtype_to_tensor_dtype(sample[name].dtype), [None] * sample[name].ndim
        )
        for name in outer
    ]
    # Outer initializers are copied in under a name of their own: the quantizer names a weight's
    # DequantizeLinear output after the weight, which put back in the branch would shadow the outer name.
    renamed = {n: f"{n}__accelbench_{graph.name or 'branch'}" for n in sorted(_outer_names(graph)) if n in outer_inits}
    inits = list(graph.initializer)
    for old, new in renamed.items():
        tensor = onnx.TensorProto()
        tensor.CopyFrom(outer_inits[old])
        tensor.name = new
        inits.append(tensor)
    new_graph = helper.make_graph(
        list(graph.node),
        f"{graph.name or 'branch'}",
        inputs,
        list(graph.output),
        initializer=inits,
        value_info=list(graph.value_info),
    )
    for node in _all_nodes(new_graph):
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
    model = helper.make_model(new_graph, opset_imports=list(parent.opset_import))
    model.ir_version = parent.ir_version
    return onnx.shape_inference.infer_shapes(model)


def _graph_from_branch(model: onnx.ModelProto, original: onnx.GraphProto, outer_inits: set[str]) -> onnx.GraphProto:
    """The quantized branch model back as a subgraph: no inputs, outer initializers not shadowed."""
    graph = model.graph
    inits = [i for i in graph.initializer if i.name not in outer_inits]
    return helper.make_graph(
        list(graph.node),
        original.name,
        [],
        list(graph.output),
        initializer=inits,
        value_info=[v for v in graph.value_info if v.name not in {i.name for i in graph.input}],
    )


# --- shared helpers ----------------------------------------------------------------------------------------

_DYNAMIC_NO_CONV = ("MatMul", "Gemm", "Attention", "LSTM", "GRU", "Gather")
_DYNAMIC_OPS = (
    "MatMulInteger",
    "ConvInteger",
    "DynamicQuantizeLinear",
    "DynamicQuantizeMatMul",
    "DynamicQuantizeLSTM",
    "QAttention",
    "DequantizeLinear",
)


def _pre_process(src: Path, work: Path) -> tuple[Path, str]:
    """ONNX Runtime's recommended pre-processing, with symbolic shape inference when sympy is installed
    (it needs it; accelbench does not require it), then without it, then none: the step helps, but a
    graph it cannot handle is still worth converting as it is."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = work / "preprocessed.onnx"
    tries: list[tuple[str, dict[str, Any]]] = []
    if importlib.util.find_spec("sympy") is not None:
        tries.append(("quant_pre_process", {}))
    tries.append(("quant_pre_process(skip_symbolic_shape=True)", {"skip_symbolic_shape": True}))
    errors = []
    for label, kwargs in tries:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quant_pre_process(str(src), str(out), **kwargs)
            _session(out)
            return out, label if not errors else f"{label} ({'; '.join(errors)})"
        except Exception as exc:  # fall back to the next, lighter pre-processing
            errors.append(f"{label} failed: {_first_line(exc)}")
    model = _load(src)
    _constants_to_initializers(model)
    _save(model, out)
    return out, "Constant nodes folded into initializers only (" + "; ".join(errors) + ")"


def _constants_to_initializers(model: onnx.ModelProto) -> None:
    """Constant nodes holding a tensor become initializers of their graph (quantizers only see those)."""
    for graph in _all_graphs(model.graph):
        keep = []
        for node in graph.node:
            if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
                tensor = graph.initializer.add()
                tensor.CopyFrom(node.attribute[0].t)
                tensor.name = node.output[0]
            else:
                keep.append(node)
        if len(keep) != len(graph.node):
            del graph.node[:]
            graph.node.extend(keep)


def _toposort(graph: onnx.GraphProto) -> None:
    """Topological order in every graph and subgraph. onnxconverter-common sorts only the main graph after
    inserting its Casts, and ONNX Runtime refuses a subgraph whose Cast sits after its consumer."""
    for g in _all_graphs(graph):
        nodes = list(g.node)
        producer = {out: i for i, node in enumerate(nodes) for out in node.output if out}
        needs: list[set[int]] = []
        for node in nodes:
            names = set(node.input)
            for attr in node.attribute:
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    names |= _outer_names(sub)
            needs.append({producer[n] for n in names if n in producer} - {nodes.index(node)})
        done: set[int] = set()
        order: list[int] = []
        while len(order) < len(nodes):
            ready = [i for i in range(len(nodes)) if i not in done and needs[i] <= done]
            if not ready:  # a cycle: leave the graph as it is for the checker to report
                return
            order.append(ready[0])
            done.add(ready[0])
        if order != list(range(len(nodes))):
            del g.node[:]
            g.node.extend(nodes[i] for i in order)


def _toposort_file(path: Path) -> None:
    model = _load(path)
    before = model.SerializeToString()
    _toposort(model.graph)
    if model.SerializeToString() != before:
        _save(model, path)


def _initializers_into_subgraphs(model: onnx.ModelProto) -> bool:
    """Main-graph initializers read only inside If/Loop/Scan bodies are moved into each body that reads them:
    ONNX Runtime's subgraph quantization looks for a weight among the subgraph's own initializers ("Expected
    ... to be an initializer" on Silero VAD op18, whose exporter hoisted every weight to the main graph)."""
    graph = model.graph
    top_used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    movable = {i.name: i for i in graph.initializer if i.name not in top_used}
    if not movable:
        return False
    moved: set[str] = set()
    for node in graph.node:
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                for name in sorted(_outer_names(sub) & set(movable)):
                    sub.initializer.append(movable[name])
                    moved.add(name)
    if not moved:
        return False
    keep = [i for i in graph.initializer if i.name not in moved]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return True


def _prepare_for_quantizer(model: onnx.ModelProto, path: Path) -> None:
    """What ONNX Runtime's static quantizer needs besides pre-processing, saved to `path`: weights read only in
    If bodies moved into them, every node named (the int8 search keeps nodes fp32 by name) and initializers
    renamed out of the way of the names the quantizer derives."""
    _initializers_into_subgraphs(model)
    _name_nodes(model)
    _unique_initializer_names(model)
    _save(model, path)


def _unique_initializer_names(model: onnx.ModelProto) -> None:
    """Initializers get names no node output can collide with.

    The quantizer names a quantized bias by appending to the bias's name, and tf2onnx names tensors by
    joining TensorFlow op names: in Basic Pitch, bias `…conv1d_25` quantized became `…conv1d_252`, the name
    of another Conv's output, whose shape then became the bias's [36] and ONNX Runtime refused the file.
    Graph inputs and outputs keep their names; references in subgraphs follow.
    """
    counter = iter(range(1 << 62))
    # a name some graph gives as its output keeps its name wherever it is an initializer: renaming it in the
    # enclosing graph would leave the subgraph's output pointing at nothing
    outputs = {o.name for g in _all_graphs(model.graph) for o in g.output}

    def rename(graph: onnx.GraphProto, scope: Mapping[str, str]) -> None:
        # what this graph defines itself shadows the enclosing graphs' names (ONNX allows a body's input or
        # initializer to reuse an outer name): those references are local and keep their meaning
        local = {old: new for old, new in scope.items() if old not in _defined_in(graph)}
        for tensor in graph.initializer:
            if tensor.name not in outputs and tensor.name not in {i.name for i in graph.input}:
                new_name = f"accelbench_w{next(counter)}"
                local[tensor.name] = new_name
                tensor.name = new_name
        for node in graph.node:
            for i, name in enumerate(node.input):
                if name in local:
                    node.input[i] = local[name]
            for attr in node.attribute:
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    rename(sub, local)
        for info in graph.value_info:
            if info.name in local:
                info.name = local[info.name]

    rename(model.graph, {})


def _defined_in(graph: onnx.GraphProto) -> set[str]:
    """Names a graph itself defines: its inputs, initializers and node outputs (not its subgraphs')."""
    return ({i.name for i in graph.input} | {i.name for i in graph.initializer}
            | {o for node in graph.node for o in node.output if o})


def _name_nodes(model: onnx.ModelProto) -> None:
    """Unique names for every node of every graph: fp16 blocking works by node name."""
    seen: set[str] = set()
    for i, node in enumerate(_all_nodes(model.graph)):
        if not node.name or node.name in seen:
            node.name = f"accelbench_node_{i}"
        seen.add(node.name)


def _all_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _all_graphs(attr.g)
            for g in attr.graphs:
                yield from _all_graphs(g)


def _all_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _all_nodes(attr.g)
            for g in attr.graphs:
                yield from _all_nodes(g)


def _op_counts(model: onnx.ModelProto) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in _all_nodes(model.graph):
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _load(path: Path) -> onnx.ModelProto:
    return onnx.load(str(path))


def _save(model: onnx.ModelProto, path: Path) -> None:
    onnx.save(model, str(path))


def _session(model: Path | bytes) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # "Removing initializer ..." and similar warnings are noise here
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _first_line(exc: BaseException) -> str:
    """A library error's first meaningful line, without the traceback or ONNX Runtime's status prefix."""
    for line in str(exc).splitlines():
        line = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", line.strip())
        if line:
            return f"{type(exc).__name__}: {line[:300]}"
    return type(exc).__name__


def _dict_feeds(feeds: Sequence[Feed] | None, what: str) -> list[Feed]:
    if feeds is None:
        return []
    feeds = list(feeds)
    for feed in feeds:
        if not isinstance(feed, Mapping):
            got = type(feed).__name__
            raise TypeError(f"{what} must be dicts of input name → array, one per model call; got {got}")
    return feeds


def _calibration_feeds(src: Path, feeds: Sequence[Feed]) -> list[Feed]:
    feeds = list(feeds)
    if not feeds:
        raise ConversionError(f"{src.name} cannot be quantized statically without calibration data; try int8_dynamic")
    return feeds
