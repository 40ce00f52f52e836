"""ONNX Runtime with the CPU execution provider."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from backends.base import (
    Availability,
    Backend,
    BackendOptions,
    Session,
    input_shapes,
    installed_and_importable,
    module_version,
)
from backends.op_profile import ProfilePass
from backends.ort_profile import ort_profile
from model_zoo.inputs import TensorSpec, meaningful_dim_name
from model_zoo.requests import PRECISIONS

if TYPE_CHECKING:
    from model_zoo.inputs import InputLayout

# ONNX type strings as onnxruntime reports them → numpy dtype names.
_ONNX_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}

_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
               "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


def _spec(node: Any) -> TensorSpec:
    """ONNX Runtime gives a dim as an int (fixed; PaddlePaddle's -1 means dynamic), a str (a named dynamic dim)
    or None."""
    shape = tuple(dim if isinstance(dim, int) and dim > 0 else None for dim in node.shape)
    names = tuple(dim if isinstance(dim, str) and meaningful_dim_name(dim) else None for dim in node.shape)
    return TensorSpec(node.name, shape, _ONNX_TYPES.get(node.type, node.type), names)


class OrtSession(Session):
    def __init__(self, session: Any, options: BackendOptions, opt_level: str) -> None:
        self._session = session
        self.inputs = [_spec(n) for n in session.get_inputs()]
        self.outputs = [_spec(n) for n in session.get_outputs()]
        self._input_names = [spec.name for spec in self.inputs]
        self._threads = options.threads
        self._spinning = options.extra.get("spinning", True)
        self._opt_level = opt_level

    def bind(self, feeds: list[np.ndarray]) -> Callable[[], list[np.ndarray]]:
        run, feed_dict = self._session.run, dict(zip(self._input_names, feeds, strict=True))
        return lambda: run(None, feed_dict)

    def bare_loop(self, feeds: list[np.ndarray], runs: int) -> list[int]:
        session, clock = self._session, time.perf_counter_ns
        feed_dict = dict(zip(self._input_names, feeds, strict=True))
        samples = []
        for _ in range(runs):
            start = clock()
            session.run(None, feed_dict)
            samples.append(clock() - start)
        return samples

    def info(self) -> dict[str, Any]:
        return {
            "runtime": "onnxruntime",
            "runtime_version": module_version("onnxruntime") or module_version("onnxruntime-gpu"),
            "device": "cpu",
            "providers": self._session.get_providers(),
            "graph_optimization_level": self._opt_level,
            "threads": self._threads,
            "spinning": self._spinning,
            "software_device": False,
        }


class OnnxRuntimeCpu(Backend):
    name = "onnxruntime_cpu"
    artifact_format = "onnx"
    threads_are_its_cores = True
    precisions = PRECISIONS  # the zoo makes each as a file of this format
    description = "ONNX Runtime, CPU execution provider (graph_optimization: disable|basic|extended|all)"

    @classmethod
    def available(cls) -> Availability:
        version, problem = installed_and_importable(("onnxruntime", "onnxruntime-gpu"), "onnxruntime")
        if problem:
            return problem
        import onnxruntime

        if "CPUExecutionProvider" not in onnxruntime.get_available_providers():
            return Availability(False, f"onnxruntime {version} has no CPUExecutionProvider")
        return Availability(True, f"onnxruntime {version}, CPUExecutionProvider")

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return ("graph_optimization", "spinning")

    @classmethod
    def option_problem(cls, name: str, value: Any) -> str | None:
        if name == "graph_optimization" and (not isinstance(value, str) or value not in _OPT_LEVELS):
            return f"unknown graph_optimization {value!r} (expected one of {', '.join(_OPT_LEVELS)})"
        if name == "spinning" and not (isinstance(value, bool) or value == "within_runs"):
            return f"spinning is true, false or within_runs, not {value!r}"
        return None

    @staticmethod
    def session_options(options: BackendOptions) -> Any:
        """The case's SessionOptions: one place, so that the profiling pass's second session is the timed one's."""
        import onnxruntime as ort

        level = options.extra.get("graph_optimization", "all")
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[level])
        if options.threads:
            session_options.intra_op_num_threads = options.threads
            session_options.inter_op_num_threads = 1
        spinning = options.extra.get("spinning")
        if spinning is False:
            # idle pool threads that spin hold a core: in a race, or beside other work, they slow whoever computes
            session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session_options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        elif spinning == "within_runs":
            # spin between the operators of a run, as by default, but stop when the run returns: by default the pool
            # keeps spinning after it (measured: ~35 ms of CPU in the 100 ms after a run, two threads)
            session_options.add_session_config_entry("session.force_spinning_stop", "1")
        return session_options

    def prepare(self, artifact: str, options: BackendOptions, batch_size: int,
                layout: InputLayout | None = None) -> Session:
        import onnxruntime as ort

        session = ort.InferenceSession(artifact, sess_options=self.session_options(options),
                                       providers=["CPUExecutionProvider"])
        wrapped = OrtSession(session, options, options.extra.get("graph_optimization", "all"))
        input_shapes(wrapped.inputs, batch_size, layout)  # fail early, with a readable reason, on shapes it cannot take
        return wrapped

    def profile(self, artifact: str, options: BackendOptions, batch_size: int, layout: InputLayout | None,
                feeds: list[np.ndarray], runs: int, trace_path: str) -> ProfilePass:
        import onnxruntime as ort

        level = options.extra.get("graph_optimization", "all")
        return ort_profile(
            lambda session_options: ort.InferenceSession(artifact, sess_options=session_options,
                                                         providers=["CPUExecutionProvider"]),
            self.session_options(options), artifact, feeds, runs, trace_path,
            lambda session, arrays: OrtSession(session, options, level).bind(arrays))
