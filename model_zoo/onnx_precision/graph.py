"""Graph surgery the conversions share: loading, saving and checking ONNX files, ONNX Runtime's pre-processing,
Constant nodes as initializers, names made unique, nodes walked into subgraphs.

Why one module: the fp16 and int8 conversions and the If-branch quantizer all edit real exported graphs (weights
in Constant nodes, unnamed nodes, names shadowed in branches), and each fix belongs to every conversion."""

from __future__ import annotations

import importlib.util
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from model_zoo.inputs import onnx_declared

_CONTROL_FLOW = ("If", "Loop", "Scan")


class ConversionError(RuntimeError):
    """A model that cannot be converted to the asked precision; the message is one line with the next step."""


Feed = Mapping[str, "np.ndarray"]


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


def _group(node: onnx.NodeProto) -> int:
    """A Conv's `group` attribute (1 when absent)."""
    return next((int(a.i) for a in node.attribute if a.name == "group"), 1)


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
