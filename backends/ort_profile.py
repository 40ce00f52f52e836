"""ONNX Runtime's own profiler, read into a ProfilePass (every provider: CPU, CUDA, TensorRT).

ONNX Runtime cannot switch profiling on in a session that exists, so the pass opens a second session with the
same options plus ``enable_profiling`` and runs it; the record says so. Its JSON trace has one "model_run"
event per run and one "<node>_kernel_time" event per node and run, with the node's op type and the provider
that ran it: exactly the per-op table wanted, read from the kept runs only (the first ones warm the new session).

What the graph optimizer did shows in the op types: a type the model file does not contain was made by ONNX
Runtime, either from several of the model's nodes (FusedConv, QLinearConv from a QDQ pair around a Conv:
``fused``) or inserted for layout (the NCHWc reorders). A TensorRT engine run as one node is ``opaque``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from backends.op_profile import PROFILE_WARMUP_RUNS, OpTime, ProfilePass, summed_ops, write_chrome_trace

# op types ONNX Runtime inserts without merging any of the model's nodes: layout changes
INSERTED_LAYOUT_OPS = frozenset({"ReorderInput", "ReorderOutput", "Transpose", "MemcpyToHost", "MemcpyFromHost"})
KERNEL_SUFFIX = "_kernel_time"


def model_nodes(artifact: str) -> tuple[set[str], dict[str, str]]:
    """The model file's op types, and a detail per node name worth showing (a grouped convolution's group)."""
    import onnx

    model = onnx.load(artifact, load_external_data=False)
    graphs, types, details = [model.graph], set(), {}
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            types.add(node.op_type)
            for attribute in node.attribute:
                if attribute.name == "group" and attribute.i > 1:
                    details[node.name] = f"group {attribute.i}"
                if attribute.type == onnx.AttributeProto.GRAPH:  # If / Loop / Scan bodies
                    graphs.append(attribute.g)
    return types, details


def _flag(op: OpTime, model_types: set[str], details: dict[str, str]) -> OpTime:
    if op.where == "TensorrtExecutionProvider" or op.op_type.startswith("TRTKernel"):
        op.opaque, op.detail = True, "a TensorRT engine run as one ONNX Runtime node: its layers are not visible"
    elif op.op_type not in model_types:
        if op.op_type in INSERTED_LAYOUT_OPS:
            op.detail = "inserted by ONNX Runtime's graph optimizer (layout)"
        else:
            op.fused, op.detail = True, "made by ONNX Runtime's graph optimizer from several of the model's nodes"
    op.detail = details.get(op.name, op.detail) if op.detail is None else op.detail
    return op


def read_ort_trace(events: list[dict[str, Any]], runs: int) -> tuple[list[float], list[tuple[str, str, str, float]],
                                                                      list[dict[str, Any]]]:
    """(ms of each kept run, one (node, op type, provider, ms) row per node call in them, their trace events)."""
    model_runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                        key=lambda e: e["ts"])
    kept = model_runs[-runs:]
    if not kept:
        raise ValueError("ONNX Runtime's profile has no model_run event")
    start = kept[0]["ts"]
    rows, trace = [], []
    for event in events:
        if event.get("ts", -1) < start:
            continue
        if event.get("cat") == "Node" and event.get("name", "").endswith(KERNEL_SUFFIX):
            args = event.get("args", {})
            name, op_type = event["name"][: -len(KERNEL_SUFFIX)], args.get("op_name", "?")
            provider = args.get("provider", "?")
            rows.append((name, op_type, provider, event["dur"] / 1e3))
            trace.append({"name": name, "cat": op_type, "ph": "X", "ts": event["ts"], "dur": event["dur"],
                          "pid": 1, "tid": 1, "args": {"op_type": op_type, "provider": provider}})
        elif event.get("cat") == "Session" and event.get("name") == "model_run":
            trace.append({"name": "run", "cat": "run", "ph": "X", "ts": event["ts"], "dur": event["dur"],
                          "pid": 1, "tid": 0})
    return [e["dur"] / 1e3 for e in kept], rows, trace


def ort_profile(open_session: Callable[[Any], Any], session_options: Any, artifact: str, feeds: list[np.ndarray],
                runs: int, trace_path: str, bind: Callable[[Any, list[np.ndarray]], Callable[[], Any]]) -> ProfilePass:
    """Profile ``runs`` runs (after PROFILE_WARMUP_RUNS) of a second session that ``open_session`` makes from
    ``session_options`` with profiling on; ``bind`` makes its call as the adapter's timed call is made."""
    with tempfile.TemporaryDirectory(prefix="accelbench-ort-profile-") as folder:
        session_options.enable_profiling = True
        session_options.profile_file_prefix = str(Path(folder) / "ort")
        session = open_session(session_options)
        call = bind(session, feeds)
        for _ in range(PROFILE_WARMUP_RUNS + runs):
            call()
        raw = session.end_profiling()
        events = json.loads(Path(raw).read_text())
        os.unlink(raw)
    run_ms, rows, trace = read_ort_trace(events, runs)
    model_types, details = model_nodes(artifact)
    ops = [_flag(op, model_types, details) for op in summed_ops(rows)]
    metadata = {"runtime": "onnxruntime", "providers": session.get_providers(), "kept_runs": len(run_ms)}
    return ProfilePass(
        route="onnxruntime SessionOptions.enable_profiling (its JSON trace: model_run and node kernel_time events)",
        note="a second ONNX Runtime session with the case's options and profiling on, opened after the timed loop "
             "(profiling cannot be switched on in an existing session)",
        run_ms=run_ms, ops=ops, trace_file=write_chrome_trace(trace_path, trace, metadata))
