"""fp32 ONNX → fp16 ONNX (onnxconverter-common), fp32 model I/O kept, repaired and searched until it passes.

Why the steps: onnxconverter-common converts a Constant node's tensor even when its consumer is kept in fp32,
clamps out-of-range weights, and retypes subgraph values that ONNX Runtime then refuses; each step here comes
from a real model that needed it (see onnx_to_fp16)."""

from __future__ import annotations

import re
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from model_zoo import progress
from model_zoo.onnx_precision.graph import (
    _CONTROL_FLOW,
    ConversionError,
    Feed,
    _all_graphs,
    _all_nodes,
    _constants_to_initializers,
    _dict_feeds,
    _first_line,
    _load,
    _name_nodes,
    _pre_process,
    _save,
    _session,
    _toposort,
    check_onnx,
)
from model_zoo.onnx_precision.search import _fidelity_meta, _prefix_search, _Reference
from model_zoo.targets import (
    FP16_MIN_COSINE,
    FP16_SEARCH_SECONDS,
)

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
        if result.ok and set(search.order) <= result.blocked:  # the search's start: nothing converted
            raise ConversionError(
                f"{src.name} cannot be converted to fp16 within the conversion's budget: the only configuration "
                "found that passes keeps every node fp32; keep it in fp32"
            )
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
        return f"output {worst!r} keeps fidelity score {self.cosines[worst]:.4f} < {FP16_MIN_COSINE} against fp32"

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
        self.trials = 0
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
        self.trials += 1
        progress.step(f"fp16 check: attempt {self.trials}, {len(blocked)} node(s) kept fp32")
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
