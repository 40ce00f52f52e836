"""Per-channel input scales for depthwise convolutions, folded into their weights before static int8.

Why: QDQ int8 gives an activation one scale for all its channels. The input of a depthwise convolution in a
mobile backbone (MobileNet, PP-LCNet, ESNet) often spans two orders of magnitude across channels (PP-OCR's
detector: 1.4 to 68 in one tensor), so its small channels get a handful of levels and the error compounds from
there (measured: the detector fully quantized scored cosine 0.78, 0.89 with its depthwise convolutions in fp32).
A depthwise convolution reads each channel alone, so dividing channel c of its input by s_c and multiplying
channel c of its weights by s_c leaves the fp32 output unchanged, up to rounding, while every channel of the
quantized input now spans the same range; the weights are quantized per output channel, so their scaling costs
nothing. This is cross-layer equalisation's rescaling applied where it is exact whatever activation comes before
(hard-swish, which is not positively homogeneous, stops the classic rewrite across two layers). The division is
one Mul per rescaled tensor, which TensorRT fuses into the quantizing of its output.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from model_zoo.onnx_precision.graph import Feed, _load, _save
from model_zoo.onnx_precision.subgraphs import _intermediates

# a channel whose range is under this fraction of the tensor's widest channel is scaled up only this far (a
# channel that is always zero must not be divided by zero, and one at 1e-6 of the rest carries no signal
# worth 127 levels)
SMALLEST_SCALE = 2.0**-7
# tensors whose channels differ less than this (widest / narrowest range) are left alone: nothing to gain
MIN_SPREAD = 2.0


def depthwise_conv_inputs(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    """Per tensor, the depthwise convolutions (one input channel per group, one filter per channel) of the main
    graph that read it, where the weights are an initializer no other node reads."""
    inits = {i.name: i for i in model.graph.initializer}
    readers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    found: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        dims = list(inits[node.input[1]].dims)
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if len(dims) >= 3 and dims[1] == 1 and group == dims[0] > 1 and readers[node.input[1]] == 1:
            found.setdefault(node.input[0], []).append(node)
    return found


def equalise_depthwise_inputs(source: Path, out_file: Path, feeds: Sequence[Feed]) -> dict[str, Any]:
    """Writes `source` with each depthwise convolution's input rescaled per channel (ranges: the largest absolute
    value per channel over `feeds`, the calibration data) and returns what was done; with nothing to rescale,
    `out_file` is not written and "tensors" is 0."""
    model = _load(source)
    targets = depthwise_conv_inputs(model)
    if not targets or not feeds:
        return {"tensors": 0, "convolutions": 0}
    values = _intermediates(source, feeds, sorted(targets))
    inits = {i.name: i for i in model.graph.initializer}
    taken = {i.name for i in model.graph.initializer} | {o for n in model.graph.node for o in n.output}
    before: dict[str, list[onnx.NodeProto]] = {}
    convolutions = 0
    for name, convs in sorted(targets.items()):
        ranges = np.max([_channel_ranges(v[name]) for v in values], axis=0)
        if ranges.max() <= 0 or ranges.max() < MIN_SPREAD * max(ranges.min(), ranges.max() * SMALLEST_SCALE):
            continue
        scales = np.maximum(ranges, ranges.max() * SMALLEST_SCALE) / ranges.max()
        if any(numpy_helper.to_array(inits[c.input[1]]).shape[0] != scales.shape[0] for c in convs):
            continue  # a channel multiplier other than one: not this rewrite
        factors, rescaled = _unique(f"{name}_equalising_factors", taken), _unique(f"{name}_equalised", taken)
        shape = [1, scales.shape[0]] + [1] * (values[0][name].ndim - 2)
        model.graph.initializer.append(numpy_helper.from_array((1.0 / scales).astype(np.float32).reshape(shape),
                                                               factors))
        mul = onnx.helper.make_node("Mul", [name, factors], [rescaled], name=_unique(f"{name}_equalise", taken))
        before.setdefault(convs[0].output[0], []).append(mul)
        for conv in convs:
            weights = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float64)
            scaled = weights * scales.reshape([-1] + [1] * (weights.ndim - 1))
            inits[conv.input[1]].CopyFrom(numpy_helper.from_array(scaled.astype(np.float32), conv.input[1]))
            conv.input[0] = rescaled
            convolutions += 1
    if not before:
        return {"tensors": 0, "convolutions": 0}
    nodes = []
    for node in model.graph.node:
        nodes.extend(before.get(node.output[0], []) if node.output else [])
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    _save(model, out_file)
    return {"tensors": sum(len(m) for m in before.values()), "convolutions": convolutions}


def _channel_ranges(value: np.ndarray) -> np.ndarray:
    """Largest absolute value per channel (axis 1, the layout ONNX's Conv reads)."""
    flat = np.abs(np.asarray(value, dtype=np.float64)).reshape(value.shape[0], value.shape[1], -1)
    return flat.max(axis=(0, 2))


def _unique(name: str, taken: set[str]) -> str:
    """`name`, or `name_2`, `name_3`, ... when the graph already has it (the quantizer names its own tensors
    `<tensor>_scale`, `<tensor>_zero_point`: our names must not look like those either)."""
    candidate, k = name, 1
    while candidate in taken:
        k += 1
        candidate = f"{name}_{k}"
    taken.add(candidate)
    return candidate
