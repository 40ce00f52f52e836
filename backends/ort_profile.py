"""ONNX Runtime's own profiler, read into a ProfilePass (every provider: CPU, CUDA, TensorRT).

ONNX Runtime cannot switch profiling on in a session that exists, so the pass opens a second session with the
same options plus ``enable_profiling`` and runs it; the record says so. Its JSON trace has one "model_run"
event per run and one "<node>_kernel_time" event per node and run, with the node's op type and the provider
that ran it: exactly the per-op table wanted, read from the kept runs only (the first ones warm the new session).

What the graph optimizer did is read from the graph the session ran: the profiling session writes its optimized
graph (``optimized_model_filepath``), whose node names are the profiler's. A type the model file does not
contain was made by ONNX Runtime, either from several of the model's nodes (FusedConv, QLinearConv from a QDQ
pair around a Conv: ``fused``) or inserted for layout (the NCHWc reorders); a node with an ``activation``
attribute had the following Relu / Clip / Sigmoid folded into it (``fused``: the NCHWc Conv of the "all"
level keeps the op type Conv). A TensorRT engine run as one node is ``opaque``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backends.op_profile import PROFILE_WARMUP_RUNS, OpTime, ProfilePass, summed_ops, write_chrome_trace

# op types ONNX Runtime inserts without merging any of the model's nodes: layout changes
INSERTED_LAYOUT_OPS = frozenset({"ReorderInput", "ReorderOutput", "Transpose", "MemcpyToHost", "MemcpyFromHost"})
KERNEL_SUFFIX = "_kernel_time"
NCHWC_DOMAIN = "com.microsoft.nchwc"
# control flow: its kernel_time spans the nodes of the subgraph it runs, each with its own event
CONTAINER_OPS = frozenset({"If", "Loop", "Scan"})
OPTIMIZED_FILE = "optimized.onnx"


@dataclass(frozen=True)
class GraphNode:
    """What a graph file says about one node, by the name the profiler reports it under."""

    op_type: str
    domain: str
    group: int = 1
    activation: str | None = None  # an activation the optimizer folded into it (NCHWc Conv, FusedConv)


def graph_nodes(path: str) -> tuple[set[str], dict[str, GraphNode]]:
    """A graph file's op types, and its nodes by name (If / Loop / Scan bodies included)."""
    import onnx

    model = onnx.load(path, load_external_data=False)
    graphs, types, nodes = [model.graph], set(), {}
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            types.add(node.op_type)
            group, activation = 1, None
            for attribute in node.attribute:
                if attribute.name == "group":
                    group = attribute.i
                elif attribute.name == "activation" and attribute.type == onnx.AttributeProto.STRING:
                    activation = attribute.s.decode()
                elif attribute.type == onnx.AttributeProto.GRAPH:
                    graphs.append(attribute.g)
            nodes[node.name] = GraphNode(node.op_type, node.domain, group, activation)
    return types, nodes


def _flag(op: OpTime, model_types: set[str], nodes: dict[str, GraphNode]) -> OpTime:
    """Mark what the optimizer made: ``nodes`` are those of the graph the session ran (ONNX Runtime's optimized
    file where it could write one, else the model file), so renamed NCHWc nodes still show their group and the
    activation folded into them."""
    if op.where == "TensorrtExecutionProvider" or op.op_type.startswith("TRTKernel"):
        op.opaque, op.detail = True, "a TensorRT engine run as one ONNX Runtime node: its layers are not visible"
        return op
    node, parts = nodes.get(op.name), []
    if node is not None and node.group > 1:
        parts.append(f"group {node.group}")
    if op.op_type not in model_types:
        if op.op_type in INSERTED_LAYOUT_OPS:
            parts.append("inserted by ONNX Runtime's graph optimizer (layout)")
        else:
            op.fused = True
            parts.append("made by ONNX Runtime's graph optimizer from several of the model's nodes")
    elif node is not None and node.activation:
        op.fused = True
        parts.append(f"{node.activation} folded into it by ONNX Runtime's graph optimizer")
    if node is not None and node.domain == NCHWC_DOMAIN:
        parts.append("NCHWc layout")
    op.detail = "; ".join(parts) or None
    return op


Inputs = list[tuple[str, list[int]]]  # (element type, shape) per input of a node


def event_inputs(args: dict[str, Any]) -> Inputs:
    """A node event's inputs as (element type, shape): ``input_type_shape`` is ``[{"float": [1, 3, 8, 8]}, …]``."""
    shapes = args.get("input_type_shape")
    if not isinstance(shapes, list):
        return []
    return [(str(dtype), list(shape) if isinstance(shape, list) else [])
            for entry in shapes if isinstance(entry, dict) for dtype, shape in list(entry.items())[:1]]


# where each convolution op keeps its input and its weight
_CONV_INPUTS = {"Conv": (0, 1), "ConvInteger": (0, 1), "FusedConv": (0, 1), "QLinearConv": (0, 3)}


def group_from_shapes(op_type: str, inputs: Inputs) -> int:
    """A convolution's group from the shapes it ran with (input channels over the weight's second dimension), for
    a node the graph file does not name; 1 where the shapes do not say (an NCHWc-blocked input, say)."""
    if op_type not in _CONV_INPUTS:
        return 1
    x, w = _CONV_INPUTS[op_type]
    if len(inputs) <= max(x, w) or len(inputs[x][1]) != 4 or len(inputs[w][1]) != 4:
        return 1
    channels, per_group = inputs[x][1][1], inputs[w][1][1]
    return channels // per_group if per_group > 0 and channels % per_group == 0 and channels > per_group else 1


def read_ort_trace(events: list[dict[str, Any]], runs: int) -> tuple[list[float], list[tuple[str, str, str, float]],
                                                                      list[dict[str, Any]], dict[str, Inputs]]:
    """(ms of each kept run, one (node, op type, provider, ms) row per node call in them, their trace events, each
    node's inputs as (element type, shape))."""
    model_runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                        key=lambda e: e["ts"])
    kept = model_runs[-runs:]
    if not kept:
        raise ValueError("ONNX Runtime's profile has no model_run event")
    start = kept[0]["ts"]
    rows, trace, inputs = [], [], {}
    for event in events:
        if event.get("ts", -1) < start:
            continue
        if event.get("cat") == "Node" and event.get("name", "").endswith(KERNEL_SUFFIX):
            args = event.get("args", {})
            name, op_type = event["name"][: -len(KERNEL_SUFFIX)], args.get("op_name", "?")
            provider = args.get("provider", "?")
            if op_type not in CONTAINER_OPS:  # their subgraphs' nodes have events of their own: counted once
                rows.append((name, op_type, provider, event["dur"] / 1e3))
            if name not in inputs:
                inputs[name] = event_inputs(args)
            trace.append({"name": name, "cat": op_type, "ph": "X", "ts": event["ts"], "dur": event["dur"],
                          "pid": 1, "tid": 1, "args": {"op_type": op_type, "provider": provider}})
        elif event.get("cat") == "Session" and event.get("name") == "model_run":
            trace.append({"name": "run", "cat": "run", "ph": "X", "ts": event["ts"], "dur": event["dur"],
                          "pid": 1, "tid": 0})
    return [e["dur"] / 1e3 for e in kept], rows, trace, inputs


def ort_profile(open_session: Callable[[Any], Any], session_options: Any, artifact: str, feeds: list[np.ndarray],
                runs: int, trace_path: str, bind: Callable[[Any, list[np.ndarray]], Callable[[], Any]],
                save_optimized: bool = True) -> ProfilePass:
    """Profile ``runs`` runs (after PROFILE_WARMUP_RUNS) of a second session that ``open_session`` makes from
    ``session_options`` with profiling on; ``bind`` makes its call as the adapter's timed call is made.
    ``save_optimized=False`` for a provider that compiles nodes (TensorRT): such a session cannot save its graph,
    and a failed first try would build the engines twice."""
    with tempfile.TemporaryDirectory(prefix="accelbench-ort-profile-") as folder:
        session_options.enable_profiling = True
        session_options.profile_file_prefix = str(Path(folder) / "ort")
        session_options.log_severity_level = 3  # its warning that an NCHWc graph fits this machine only: we know
        optimized = Path(folder) / OPTIMIZED_FILE
        session_options.optimized_model_filepath = str(optimized) if save_optimized else ""
        try:  # the graph as optimized names what was fused; a session with compiled nodes (TensorRT) cannot save it
            session = open_session(session_options)
        except Exception:  # the retry without it raises whatever is really wrong
            session_options.optimized_model_filepath = ""
            optimized.unlink(missing_ok=True)
            session = open_session(session_options)
        call = bind(session, feeds)
        for _ in range(PROFILE_WARMUP_RUNS + runs):
            call()
        raw = session.end_profiling()
        events = json.loads(Path(raw).read_text())
        os.unlink(raw)
        model_types, nodes = graph_nodes(artifact)
        if optimized.is_file():
            nodes = graph_nodes(str(optimized))[1]
    run_ms, rows, trace, inputs = read_ort_trace(events, runs)
    ops = [_flag(op, model_types, nodes) for op in summed_ops(rows)]
    for op in ops:
        seen = inputs.get(op.name) or []
        op.dtype = seen[0][0] if seen else None
        if op.name not in nodes and (group := group_from_shapes(op.op_type, seen)) > 1:  # an unnamed node
            op.detail = f"group {group}" + (f"; {op.detail}" if op.detail else "")
    metadata = {"runtime": "onnxruntime", "providers": session.get_providers(), "kept_runs": len(run_ms)}
    note = ("a second ONNX Runtime session with the case's options and profiling on, opened after the timed loop "
            "(profiling cannot be switched on in an existing session)")
    if any(op.where == "CUDAExecutionProvider" for op in ops):
        # CUDA kernels run asynchronously: a node event times its launch on the host, not the GPU's work
        note += ("; CUDA nodes' times are their host-side launch, the GPU runs them asynchronously, so their shares "
                 "say where the host waits, not where the GPU works")
        for op in ops:
            if op.where == "CUDAExecutionProvider":
                op.detail = "; ".join(filter(None, [op.detail, "host-side launch time"]))
    return ProfilePass(
        route="onnxruntime SessionOptions.enable_profiling (its JSON trace: model_run and node kernel_time events)",
        note=note,
        run_ms=run_ms, ops=ops, trace_file=write_chrome_trace(trace_path, trace, metadata))
