"""If branches as models of their own: ONNX Runtime's QDQ quantizer does not enter subgraphs, where e.g. Silero VAD
keeps its whole network, so each branch the calibration data takes is cut out (its outer-scope values as inputs,
calibrated on what the fp32 model feeds it), quantized and put back."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from model_zoo.onnx_precision.graph import Feed, _all_nodes, _load, _outer_names, _session


def _intermediates(source: Path, feeds: Sequence[Feed], names: Sequence[str],
                   reduce: Callable[[np.ndarray], np.ndarray] | None = None) -> list[dict[str, np.ndarray]]:
    """The fp32 values of `names` (graph inputs or top-level intermediates) for every feed; with `reduce`, what it
    makes of each value, computed as the feed runs (a detector's activations over every calibration feed would
    not fit in memory, their per-channel ranges do)."""
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
        result.append({name: values[name] if reduce is None else reduce(values[name]) for name in names})
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
