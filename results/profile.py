"""Where the time goes: a case's per-operator profile as the record keeps it, set beside other cases' profiles.

The worker's profiling pass (backends.op_profile.ProfilePass) lists every op; the record keeps a summary that
every runtime fills the same way (time per run by op type and by category, the top ops, coverage) and the run
folder keeps the whole list. Categories are what make two runtimes or two precisions comparable: ONNX Runtime's
ConvInteger, XNNPACK's "Convolution (NHWC, QS8) IGEMM" and TFLite's CONV_2D are all "convolution".

Category mapping (the op type's name, case-insensitive, first rule that matches):
  convolution  conv (Conv, ConvInteger, QLinearConv, FusedConv, CONV_2D, DEPTHWISE_CONV_2D, XNNPACK Convolution,
               TensorRT's CaskConvolution)
  matmul       matmul, gemm, fully connected / fully_connected, batch matrix multiply, MatMulInteger (XNNPACK
               runs 1×1 convolutions as "Fully Connected" GEMMs: they land here, not in convolution)
  quantize     quantize, dequantize, XNNPACK's Convert (a dtype change between float and int8)
  layout       transpose, reshape, reorder, squeeze, flatten, concat, split, slice, gather, pad, copy, memcpy,
               reformat, expand, tile, shape, depth/space to space/depth
  elementwise  add, sub, mul, div, relu, clip, clamp, sigmoid, tanh, swish, gelu, exp, sqrt, pow, erf, abs, neg,
               min, max (elementwise), cast, where, leaky relu, prelu, hard swish, elu, not, equal, less, greater
  other        everything else (pooling, softmax, normalization, reductions, resize, a delegate's opaque kernel)
"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

CATEGORIES = ("convolution", "matmul", "quantize", "layout", "elementwise", "other")
_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("convolution", re.compile(r"conv(?!ert)")),
    ("matmul", re.compile(r"matmul|gemm|fully.?connected|batch.?mat|matrix.?multiply")),
    ("quantize", re.compile(r"quantiz|^convert\b")),
    ("layout", re.compile(r"transpose|reshape|reorder|squeeze|flatten|concat|split|slice|gather|pad|copy|memcpy|"
                          r"reformat|expand|tile|^shape|depth.?to.?space|space.?to.?depth")),
    ("elementwise", re.compile(r"^(add|sub|mul|div|relu|clip|clamp|sigmoid|tanh|h?swish|hard.?swish|gelu|exp|"
                               r"sqrt|pow|erf|abs|neg|minimum|maximum|min|max|cast|where|leaky.?relu|prelu|elu|"
                               r"not|equal|less|greater|multiply|subtract|divide|square|log|reciprocal|floor|ceil|"
                               r"round|sign|bias.?add)\b")),
)
TOP_OPS = 10
FLOAT_DTYPES = frozenset({"float", "float16", "double", "bfloat16"})
SLOWER_TO_EXPLAIN = 1.1
# two profiling passes are not one sitting: runs minutes apart differ by 5–23 % on shared machines
DIFF_NOISE_SHARE = 0.25  # a profiled case this many times slower than its fp32 sibling gets a sentence


def category(op_type: str) -> str:
    name = op_type.strip().lower()
    for label, pattern in _RULES:
        if pattern.search(name):
            return label
    return "other"


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class OpTypeTime(_Part):
    """All the ops of one type (and where they ran), per run of the profiling pass."""

    op_type: str
    category: str
    where: str
    ms: float  # per run
    share: float  # of the pass's median run
    ops: int  # distinct ops (nodes, layers) of this type
    fused: int = 0
    opaque: int = 0
    detail: str | None = None  # "27.9 ms of it in 17 with group > 1"


class OpEntry(_Part):
    name: str
    op_type: str
    category: str
    where: str
    ms: float  # per run
    share: float
    fused: bool = False
    opaque: bool = False
    detail: str | None = None
    dtype: str | None = None  # its first input's element type, where the runtime says


class FloatOps(_Part):
    """Ops of one type whose input was still float in a profile that has quantize ops: what the graph converts
    int8 tensors back for."""

    op_type: str
    ops: int
    ms: float  # per run


class ProfileSummary(_Part):
    """A case's per-operator profile in its record; ``error`` alone where there is none, with why."""

    route: str | None = None
    note: str | None = None
    runs: int | None = None
    run_ms_mean: float | None = None  # the profiling pass's own latency
    run_ms_median: float | None = None
    ops_ms_per_run: float | None = None  # the ops' median calls summed: the bars' height less the uncovered part
    coverage: float | None = None  # all the pass's op time over all its run time: the share of a run inside ops
    timed_p50_ms: float | None = None  # the timed loop's, for the profiler's own cost
    profiler_overhead: float | None = None  # run_ms_median / timed_p50_ms
    op_calls_per_run: float | None = None
    profiler_us_per_op_call: float | None = None  # (run_ms_median - timed_p50_ms) / op calls per run, in µs; None
    # where the pass ran faster, or where the case has no one-stream timed p50 (concurrent mode)
    by_category: dict[str, float] | None = None  # ms per run
    by_op_type: list[OpTypeTime] | None = None  # every op type, slowest first
    top_ops: list[OpEntry] | None = None
    ops: int | None = None
    fused_ops: int | None = None
    opaque_ops: int | None = None
    opaque_share: float | None = None
    float_ops: list[FloatOps] | None = None  # where the profile has quantize ops and the runtime says dtypes
    file: str | None = None  # every op, in the run folder
    trace: str | None = None  # the Chrome trace
    error: str | None = None


def summarise(wire: dict[str, Any], timed_p50_ms: float | None) -> tuple[ProfileSummary, list[dict[str, Any]]]:
    """The record's summary of a worker's ProfilePass, and every op with its category and time per run.

    Medians, not means: an op's time per run is its median call times its calls per run, and shares are of the
    pass's median run, so that one call preempted among the pass's twenty cannot make a Reshape the slowest op.
    Coverage is the accounting of the whole pass instead: all op time over all run time."""
    runs = len(wire["run_ms"])
    if runs == 0:
        return ProfileSummary(route=wire.get("route"), note=wire.get("note"),
                              error="the profiling pass recorded no run"), []
    run_mean, run_median = statistics.fmean(wire["run_ms"]), statistics.median(wire["run_ms"])
    ops = []
    for op in wire["ops"]:
        ms = op["median_ms"] * op["calls"] / runs if op.get("median_ms") else op["total_ms"] / runs
        ops.append({**op, "category": category(op["op_type"]), "ms": ms,
                    "share": ms / run_median if run_median else 0.0})
    ops.sort(key=lambda op: -op["ms"])
    types: dict[tuple[str, str], dict[str, Any]] = {}
    grouped: dict[tuple[str, str], list[float]] = defaultdict(list)
    for op in ops:
        entry = types.setdefault((op["op_type"], op["where"]), {
            "op_type": op["op_type"], "category": op["category"], "where": op["where"], "ms": 0.0, "share": 0.0,
            "ops": 0, "fused": 0, "opaque": 0})
        entry["ms"] += op["ms"]
        entry["share"] += op["share"]
        entry["ops"] += 1
        entry["fused"] += bool(op.get("fused"))
        entry["opaque"] += bool(op.get("opaque"))
        if (op.get("detail") or "").startswith("group "):
            grouped[(op["op_type"], op["where"])].append(op["ms"])
    for key, times in grouped.items():
        types[key]["detail"] = f"{sum(times):.3g} ms of it in the {len(times)} with group > 1 (grouped or depthwise)"
    by_category = {name: 0.0 for name in CATEGORIES}
    for op in ops:
        by_category[op["category"]] += op["ms"]
    ops_ms = sum(op["ms"] for op in ops)
    float_ops: dict[str, list[float]] = defaultdict(list)
    if by_category["quantize"] > 0:
        for op in ops:
            if op.get("dtype") in FLOAT_DTYPES and op["category"] != "quantize":
                float_ops[op["op_type"]].append(op["ms"])
    opaque_ms = sum(op["ms"] for op in ops if op.get("opaque"))
    calls_per_run = sum(op["calls"] for op in ops) / runs
    # coverage is accounting, not a typical run: every op call's time against every run's, preempted ones included
    ops_total, run_total = sum(op["total_ms"] for op in ops), sum(wire["run_ms"])
    summary = ProfileSummary(
        route=wire.get("route"), note=wire.get("note"), runs=runs, run_ms_mean=run_mean, run_ms_median=run_median,
        ops_ms_per_run=ops_ms, coverage=ops_total / run_total if run_total else None, timed_p50_ms=timed_p50_ms,
        profiler_overhead=run_median / timed_p50_ms if timed_p50_ms else None, op_calls_per_run=calls_per_run,
        # None where the pass ran faster than the timed loop: no profiler cost can be read from that
        profiler_us_per_op_call=(1e3 * (run_median - timed_p50_ms) / calls_per_run
                                 if timed_p50_ms and calls_per_run and run_median >= timed_p50_ms else None),
        by_category={name: ms for name, ms in by_category.items() if ms > 0},
        by_op_type=[OpTypeTime(**entry) for entry in sorted(types.values(), key=lambda e: -e["ms"])],
        top_ops=[OpEntry(**{k: op.get(k) for k in OpEntry.model_fields}) for op in ops[:TOP_OPS]],
        ops=len(ops), fused_ops=sum(bool(op.get("fused")) for op in ops),
        opaque_ops=sum(bool(op.get("opaque")) for op in ops),
        opaque_share=opaque_ms / run_median if run_median else None,
        float_ops=[FloatOps(op_type=op_type, ops=len(times), ms=sum(times))
                   for op_type, times in sorted(float_ops.items(), key=lambda kv: -sum(kv[1]))] or None,
        trace=wire.get("trace_file"))
    return summary, ops


def diff(a: ProfileSummary, b: ProfileSummary, by: str = "op_type") -> list[dict[str, Any]]:
    """What got faster or slower from ``a`` to ``b``, per op type (or per category), largest change first: ms per
    run on each side (0 where a side has none of it), their difference and ratio, ``changed``: whether the
    difference is beyond DIFF_NOISE_SHARE of the larger side, and ``change``: "slower", "faster", or "same" for one
    that is not (never shown as faster or slower)."""
    def table(summary: ProfileSummary) -> dict[str, float]:
        if by == "category":
            return dict(summary.by_category or {})
        totals: dict[str, float] = defaultdict(float)
        for entry in summary.by_op_type or []:
            totals[entry.op_type] += entry.ms
        return totals

    left, right = table(a), table(b)
    rows = [{"key": key, "a_ms": left.get(key, 0.0), "b_ms": right.get(key, 0.0),
             "delta_ms": right.get(key, 0.0) - left.get(key, 0.0),
             "ratio": right[key] / left[key] if left.get(key) and key in right else None}
            for key in dict.fromkeys([*left, *right])]
    for row in rows:  # two separate passes: a change inside their noise is no change
        row["changed"] = abs(row["delta_ms"]) > DIFF_NOISE_SHARE * max(row["a_ms"], row["b_ms"])
        row["change"] = ("slower" if row["delta_ms"] > 0 else "faster") if row["changed"] else "same"
    return sorted(rows, key=lambda row: -abs(row["delta_ms"]))


def _ms(value: float | None) -> str:
    return "?" if value is None else f"{value:.3g} ms"


def _us(value: float | None) -> str:
    return "?" if value is None else f"{value:.3g} µs"


@dataclass(frozen=True)
class _Cause:
    why: str
    avoid: str | None = None
    precisions: tuple[str, ...] | None = None  # the cause holds at these precisions only
    # what else the profiles must show for the cause to hold (slow case's summary, fp32's summary)
    holds: Callable[[ProfileSummary, ProfileSummary], bool] | None = None


def _has(summary: ProfileSummary, test: Callable[[OpTypeTime], bool]) -> bool:
    return any(test(entry) for entry in summary.by_op_type or [])


def _fused_integer(entry: OpTypeTime) -> bool:
    """An integer kernel ONNX Runtime made from a DequantizeLinear → op → QuantizeLinear group (at its "extended"
    level and above: at "basic" and "disable" the same int8 file runs DQ, float op, Q; checked on ORT 1.32)."""
    return entry.op_type.startswith(("QLinear", "QGemm"))


_CPU = "CPUExecutionProvider"
_QDQ_WHY = ("ONNX Runtime fuses DequantizeLinear → op → QuantizeLinear into one integer kernel (QLinearConv, "
            "QLinearMatMul, …) only where it matches the group; every other tensor is converted on its own")
_NCHWC_WHY = ("ONNX Runtime converts tensors to and from its blocked NCHWc layout around the convolutions it runs "
              "in that layout")
# causes read in the runtime's own source or documentation, stated for the op type that takes the most time, and
# only where the profiles show what the cause needs
KNOWN_CAUSES: dict[tuple[str, str], _Cause] = {
    ("ConvInteger", _CPU): _Cause(
        "ONNX Runtime's CPU ConvInteger kernel (core/providers/cpu/quantization/conv_integer.cc) copies the input "
        "into an im2col buffer and runs one int8 GEMM per group, with no depthwise path and no pre-packed weights",
        "static int8, whose convolutions are QLinearConv, or dynamic quantization of MatMul/Gemm only "
        "(quantize_dynamic(..., op_types_to_quantize=[\"MatMul\", \"Gemm\"])); ONNX Runtime's quantization guide "
        "advises static quantization for CNNs"),
    ("DynamicQuantizeLinear", _CPU): _Cause(
        "DynamicQuantizeLinear finds each activation's range and quantizes it at every run, before every integer op",
        "static int8 fixes the activations' scales at calibration"),
    # with nothing fused at all the cause is the graph optimization level, not the pattern: said apart
    ("DequantizeLinear", _CPU): _Cause(_QDQ_WHY, holds=lambda b, a: _has(b, _fused_integer)),
    ("QuantizeLinear", _CPU): _Cause(_QDQ_WHY, holds=lambda b, a: _has(b, _fused_integer)),
    ("DEPTHWISE_CONV_2D", "TFLite builtin kernel (CPU)"): _Cause(
        "LiteRT's XNNPACK delegate refuses a DEPTHWISE_CONV_2D whose input is float and whose filter is int8 "
        "(\"unsupported mixed types\", tflite/delegates/xnnpack/xnnpack_delegate.cc), so the builtin hybrid kernel "
        "runs it",
        "int8 (full integer) or fp32 keeps depthwise convolutions on XNNPACK", ("int8_dynamic",),
        holds=lambda b, a: _has(b, lambda t: t.where == "XNNPACK")),  # with xnnpack: false nothing was refused
    ("ReorderInput", _CPU): _Cause(_NCHWC_WHY),
    ("ReorderOutput", _CPU): _Cause(_NCHWC_WHY),
}
_NOTHING_FUSED = ("no QLinear op ran, so no DequantizeLinear → op → QuantizeLinear group was fused: check the "
                  "case's graph_optimization (fusion needs \"extended\" or \"all\")")


def _cause_for(top: OpTypeTime, slow: Any, base: Any) -> _Cause | None:
    cause = KNOWN_CAUSES.get((top.op_type, top.where))
    if cause is None or (cause.precisions is not None and slow.precision not in cause.precisions):
        return None
    if cause.holds is not None and not cause.holds(slow.profile, base.profile):
        return _Cause(_NOTHING_FUSED) if cause.why == _QDQ_WHY else None
    if top.op_type == "ConvInteger" and _has(base.profile, lambda t: t.op_type in ("ReorderInput", "ReorderOutput")):
        return _Cause(cause.why + ", where fp32 Conv ran MLAS's NCHWc convolution kernels (its profile has their "
                      "layout reorders)", cause.avoid)
    return cause


# a profiling pass this many times longer than the timed p50 measured mostly the profiler: its shares say little
PROFILER_DOMINATES = 2.0


def _profiler_dominates(record: Any) -> bool:
    overhead = record.profile.profiler_overhead
    return overhead is not None and overhead > PROFILER_DOMINATES


def explain(slow: Any, base: Any, others: list[Any]) -> str | None:
    """One sentence on why ``slow`` (a record with a profile) is slower than ``base`` (its fp32 sibling on the same
    backend), from the two profiles: where its time goes, against the same category in fp32, the cause where the
    runtime's source or guide states it, and which of ``others`` (profiled records of the same model and batch) do
    the same work in far less time. A profile that mostly measured the profiler gets that said instead."""
    a, b = base.profile, slow.profile
    if not (a and b and a.run_ms_median and b.run_ms_median and b.by_op_type):
        return None
    # whether there is a slowdown to explain is the timed loops' say: profiling adds a cost per op call, and a
    # static int8 graph makes several times fp32's calls, so profiled times alone would find slowdowns that aren't
    timed_ratio = (b.timed_p50_ms / a.timed_p50_ms if a.timed_p50_ms and b.timed_p50_ms else
                   b.run_ms_median / a.run_ms_median)
    if timed_ratio < SLOWER_TO_EXPLAIN:
        return None
    if _profiler_dominates(slow):
        return (f"{slow.precision} on {slow.label}: no attribution: its profiling pass took "
                f"{_ms(b.run_ms_median)} a run against a timed p50 of {_ms(b.timed_p50_ms)} (the profiler added "
                f"{_us(b.profiler_us_per_op_call)} to each op call), so its op shares measure the profiler.")
    top = b.by_op_type[0]
    spent = (b.by_category or {}).get(top.category, 0.0)
    base_same = (a.by_category or {}).get(top.category, 0.0)
    # two separate passes, not a same-sitting comparison: the times are said, no "× slower" is claimed
    sentence = (f"{slow.precision} on {slow.label}: its profiling pass took {_ms(b.run_ms_median)} a run against "
                f"fp32's {_ms(a.run_ms_median)} (separate passes; which is faster needs a race): {top.share:.0%} "
                f"of its time is in {top.op_type} on {top.where} ({_ms(top.ms)} a run over {top.ops} ops")
    sentence += f"; {top.detail})" if top.detail else ")"
    sentence += (f", where fp32's {top.category} ops took {_ms(base_same)} in all" if base_same > 0 else
                 f", and fp32 has no {top.category} ops")
    if _profiler_dominates(base):
        sentence += (f" (fp32's profile is mostly the profiler's: its pass took {_ms(a.run_ms_median)} against a "
                     f"timed p50 of {_ms(a.timed_p50_ms)}, so its figure is an upper bound)")
    if len(b.by_op_type) > 1:
        second = b.by_op_type[1]
        sentence += f"; next, {second.op_type} {second.share:.0%} ({_ms(second.ms)})"
    cause = _cause_for(top, slow, base)
    if cause is not None:
        sentence += f". Why: {cause.why}"
    if top.category == "quantize" and b.float_ops:
        listed = ", ".join(f"{f.op_type} ×{f.ops} ({_ms(f.ms)})" for f in b.float_ops[:4])
        sentence += f". Ops on float inputs in this profile: {listed}"
    better = []
    for other in others:
        other_ms = (other.profile.by_category or {}).get(top.category, 0.0) if other.profile else 0.0
        # the same runtime only: categories of two runtimes differ in what they hold (XNNPACK runs 1×1
        # convolutions as Fully Connected GEMMs: matmul); none of the category: not the same work
        if (other is slow or other is base or other.label != slow.label or not 0.0 < other_ms <= 0.5 * spent
                or _profiler_dominates(other)):
            continue
        better.append(f"{other.precision} on {other.label} ({_ms(other_ms)})")
    if better:
        sentence += (f". Its {top.category} ops take {_ms(spent)} a run; in " + ", ".join(better[:3])
                     + " they take under half of that (separate passes)")
    if cause is not None and cause.avoid:
        sentence += f". Avoided by: {cause.avoid}"
    return sentence + "."


def explanations(records: list[Any]) -> list[str]:
    """Sentences for every profiled case slower than its profiled fp32 sibling (same model, backend, batch, mode
    and compression), in the records' order."""
    profiled = [r for r in records if r.profile is not None and r.profile.run_ms_mean]
    sentences = []
    for record in profiled:
        if record.precision == "fp32":
            continue
        base = next((r for r in profiled if r.precision == "fp32" and r.model == record.model
                     and r.label == record.label and r.batch_size == record.batch_size and r.mode == record.mode
                     and r.compression == record.compression), None)
        if base is None:
            continue
        others = [r for r in profiled if r.model == record.model and r.batch_size == record.batch_size
                  and r.mode == record.mode]
        if (sentence := explain(record, base, others)) is not None:
            sentences.append(sentence)
    return sentences
