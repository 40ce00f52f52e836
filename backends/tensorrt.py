"""TensorRT: ONNX → engine with the TensorRT Python API, run with `execute_async_v3` on a CUDA stream.

- **Precision by version.** TensorRT 11 removed the FP16/INT8 builder flags: networks are strongly typed and
  the precision comes from the ONNX file itself, which is why the zoo makes backend-neutral fp16 and QDQ int8
  ONNX files. TensorRT 10 builds the same files weakly typed, with the FP16/INT8 flags that let it pick those
  kernels (INT8 is required there for explicit Q/DQ). `build_recipe` decides from the version and the flag
  names the installed module really has, so an API change shows up as a reason, not an AttributeError.
- **Shapes.** One engine per case, built for exactly its batch size (one optimisation profile with
  min = opt = max, as `trtexec --shapes` does): the fastest engine for that shape, no profile compromise.
- **Caches.** Engines are cached on disk by (ONNX content hash, TensorRT version, GPU name and compute
  capability, precision, sparsity, shapes); a timing cache per (TensorRT version, GPU) makes rebuilds fast.
  Build time is reported as init; a cache hit says so in `info()`.
- **Timing.** Inputs live in pinned host memory and are copied to the device on every call, like trtexec's
  default: a call is H2D copy + enqueue + D2H copy + stream sync, timed by the wall clock in the harness.
  CUDA events around each part give H2D, compute and D2H apart (trtexec's "H2D Latency", "GPU Compute Time",
  "D2H Latency"); their medians are in `info()`.
- **Profiles.** The profiling pass loads an engine built with DETAILED profiling verbosity (its own cache entry:
  verbosity is part of the key, and the timed engine keeps the default) and reads each layer's time through
  an `IProfiler`; the engine inspector names each layer's type and tactic. A layer TensorRT fused from several
  ONNX nodes ("Conv_0 + Relu_1") is flagged fused, a Myelin graph ("{ForeignNode[...]}") opaque.

Nothing here can run without an NVIDIA GPU; on other machines availability gives the exact reason.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from backends.base import (
    Availability,
    Backend,
    BackendOptions,
    Session,
    input_shapes,
    module_version,
)
from backends.onnxruntime_cpu import _spec
from backends.op_profile import PROFILE_WARMUP_RUNS, ProfilePass, summed_ops, write_chrome_trace
from model_zoo.cache import cache_dir, content_hash
from model_zoo.inputs import InputLayout, TensorSpec
from sysinfo.gpu_telemetry import gpu_identity, nvidia_driver_status

TRT_DISTRIBUTIONS = ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11")
WORKSPACE_BYTES = 4 << 30


def build_recipe(version: str, precision: str, compression: str, flag_names: set[str],
                 creation_flag_names: set[str]) -> dict[str, Any]:
    """How to build `precision` with this TensorRT: network typing and builder flags, or why it cannot.

    Returns {"strongly_typed": bool, "flags": [...]} or {"error": reason}. Pure, so it is tested on machines
    without TensorRT; on a GPU machine it is fed the installed module's real flag names.
    """
    major = int(version.split(".")[0])
    sparse = compression == "prune:2:4"
    flags: list[str] = []
    if sparse:
        if "SPARSE_WEIGHTS" not in flag_names:
            return {"error": f"TensorRT {version} has no SPARSE_WEIGHTS builder flag for 2:4 sparse weights"}
        flags.append("SPARSE_WEIGHTS")
    if major >= 11 or ("FP16" not in flag_names and "INT8" not in flag_names):
        if "STRONGLY_TYPED" not in creation_flag_names:
            return {"error": f"TensorRT {version} has neither precision flags nor strongly typed networks"}
        return {"strongly_typed": True, "flags": flags}  # precision from the fp16 / QDQ ONNX file itself
    if major < 10:
        return {"error": f"TensorRT {version} is older than 10, which accelbench supports"}
    wanted = {"fp32": [], "fp16": ["FP16"], "int8": ["INT8", "FP16"]}.get(precision)
    if wanted is None:
        return {"error": f"tensorrt does not run {precision}"}
    missing = [flag for flag in wanted if flag not in flag_names]
    if missing:
        return {"error": f"TensorRT {version} lacks builder flag(s) {', '.join(missing)}"}
    return {"strongly_typed": False, "flags": flags + wanted}


def engine_key(onnx_sha256: str, trt_version: str, gpu: str, precision: str, compression: str,
               shapes: dict[str, tuple[int, ...]], recipe: dict[str, Any], profiling_verbosity: str = "default") -> str:
    """The engine cache key: everything that makes a different engine, and nothing that does not. A DETAILED
    profiling verbosity makes another engine (the profiling pass's), so it is in the key; the default adds
    nothing, so that the timed engines' keys stay what they were."""
    identity = {"onnx": onnx_sha256, "tensorrt": trt_version, "gpu": gpu, "precision": precision,
                "compression": compression, "shapes": {k: list(v) for k, v in sorted(shapes.items())},
                "recipe": recipe, "workspace": WORKSPACE_BYTES}
    if profiling_verbosity != "default":
        identity["profiling_verbosity"] = profiling_verbosity
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python
    return cudart


def _check(result: Any, what: str) -> Any:
    """cuda-python returns (error, value...) tuples; turn a non-zero error into an exception that says what."""
    error, *values = result if isinstance(result, tuple) else (result,)
    if int(error) != 0:
        raise RuntimeError(f"CUDA {what} failed: {error}")
    return values[0] if len(values) == 1 else values


def gpu_name_and_capability() -> str:
    cudart = _cudart()
    props = _check(cudart.cudaGetDeviceProperties(0), "cudaGetDeviceProperties")
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return f"{name.strip(chr(0))} sm_{props.major}{props.minor}"


class _Logger:
    """TensorRT's messages, kept so that a failed build reports TensorRT's own words."""

    def __init__(self, trt: Any) -> None:
        class Logger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)
                self.messages: list[str] = []

            def log(self, severity: Any, msg: str) -> None:
                if int(severity) <= int(trt.ILogger.Severity.WARNING):
                    self.messages.append(f"{severity.name}: {msg}")

        self.logger = Logger()


def build_engine(trt: Any, onnx_path: Path, shapes: dict[str, tuple[int, ...]], recipe: dict[str, Any],
                 timing_cache_path: Path, profiling_verbosity: str = "default") -> bytes:
    logger = _Logger(trt).logger
    builder = trt.Builder(logger)
    creation = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if recipe["strongly_typed"] else 0
    network = builder.create_network(creation)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT's ONNX parser rejected {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    for flag in recipe["flags"]:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if profiling_verbosity == "detailed":
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    profile = builder.create_optimization_profile()
    for name, shape in shapes.items():
        profile.set_shape(name, shape, shape, shape)
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(timing_cache_path.read_bytes() if timing_cache_path.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT could not build {onnx_path}: " + " | ".join(logger.messages[-5:]))
    timing_cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(plan)


class TensorrtSession(Session):
    def __init__(self, trt: Any, engine: Any, shapes: dict[str, tuple[int, ...]], info: dict[str, Any]) -> None:
        self._cudart = cudart = _cudart()
        self._engine, self._info = engine, info
        self._context = engine.create_execution_context()
        self._stream = _check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._events = [_check(cudart.cudaEventCreate(), "cudaEventCreate") for _ in range(4)]
        self.inputs, self.outputs = [], []
        self._host: dict[str, np.ndarray] = {}
        self._device: dict[str, int] = {}
        self._phases: list[tuple[float, float, float]] = []
        names = [engine.get_tensor_name(index) for index in range(engine.num_io_tensors)]
        inputs = [name for name in names if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT]
        for name in inputs:  # the engine's own shapes may keep -1 for a dynamic batch: the context's are real
            self._context.set_input_shape(name, shapes[name])
        for name in names:
            shape = tuple(int(d) for d in self._context.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            (self.inputs if name in inputs else self.outputs).append(TensorSpec(name, shape, dtype.name))
            nbytes = int(np.prod(shape)) * dtype.itemsize
            pinned = _check(cudart.cudaMallocHost(nbytes), "cudaMallocHost")  # page-locked: true async copies
            self._host[name] = np.ctypeslib.as_array((ctypes.c_byte * nbytes).from_address(pinned)).view(dtype) \
                .reshape(shape)
            self._device[name] = _check(cudart.cudaMalloc(nbytes), "cudaMalloc")
            self._context.set_tensor_address(name, self._device[name])

    def bind(self, feeds: list[np.ndarray]) -> Callable[[], list[np.ndarray]]:
        cudart, stream, context = self._cudart, self._stream, self._context
        stream_handle = int(stream)  # TensorRT takes the raw cudaStream_t as an integer
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for spec, array in zip(self.inputs, feeds, strict=True):
            np.copyto(self._host[spec.name], array)
        copies_in = [(self._device[s.name], self._host[s.name].ctypes.data, self._host[s.name].nbytes)
                     for s in self.inputs]
        copies_out = [(self._host[s.name].ctypes.data, self._device[s.name], self._host[s.name].nbytes)
                      for s in self.outputs]
        start, after_h2d, after_compute, end = self._events
        outputs = [self._host[s.name] for s in self.outputs]

        def run() -> list[np.ndarray]:
            _check(cudart.cudaEventRecord(start, stream), "cudaEventRecord")
            for dst, src, n in copies_in:
                _check(cudart.cudaMemcpyAsync(dst, src, n, h2d, stream), "cudaMemcpyAsync (H2D)")
            _check(cudart.cudaEventRecord(after_h2d, stream), "cudaEventRecord")
            if not context.execute_async_v3(stream_handle):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            _check(cudart.cudaEventRecord(after_compute, stream), "cudaEventRecord")
            for dst, src, n in copies_out:
                _check(cudart.cudaMemcpyAsync(dst, src, n, d2h, stream), "cudaMemcpyAsync (D2H)")
            _check(cudart.cudaEventRecord(end, stream), "cudaEventRecord")
            _check(cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
            self._phases.append(tuple(  # type: ignore[arg-type]
                _check(cudart.cudaEventElapsedTime(a, b), "cudaEventElapsedTime")
                for a, b in ((start, after_h2d), (after_h2d, after_compute), (after_compute, end))))
            return [array.copy() for array in outputs]

        return run

    def close(self) -> None:
        cudart = self._cudart
        for name, array in self._host.items():
            cudart.cudaFreeHost(array.ctypes.data)
            cudart.cudaFree(self._device[name])
        for event in self._events:
            cudart.cudaEventDestroy(event)
        cudart.cudaStreamDestroy(self._stream)
        self._host, self._device, self._events = {}, {}, []

    def bare_loop(self, feeds: list[np.ndarray], runs: int) -> list[int]:
        call = self.bind(feeds)
        clock, samples = time.perf_counter_ns, []
        for _ in range(runs):
            begin = clock()
            call()
            samples.append(clock() - begin)
        return samples

    def info(self) -> dict[str, Any]:
        phases = self._phases
        split = {}
        if phases:
            for index, label in enumerate(("h2d_ms_median", "compute_ms_median", "d2h_ms_median")):
                split[label] = statistics.median(p[index] for p in phases)
            split["cuda_event_samples"] = len(phases)
        return {"runtime": "tensorrt", "device": "gpu", "software_device": False, **self._info, **split,
                **gpu_identity()}


class Tensorrt(Backend):
    name = "tensorrt"
    artifact_format = "onnx"
    precisions = ("fp32", "fp16", "int8")
    description = "TensorRT engine from the ONNX file (per-shape engine, engine + timing cache), execute_async_v3"

    @classmethod
    def available(cls) -> Availability:
        """Package, import, CUDA bindings, device, in that order; a reason also says what the driver looks like."""
        state = cls._available()
        return state if state.ok else Availability(False, f"{state.reason}; {nvidia_driver_status()}")

    @classmethod
    def _available(cls) -> Availability:
        version = next((v for v in map(module_version, TRT_DISTRIBUTIONS) if v), None)
        if version is None:
            return Availability(False, "tensorrt is not installed (make setup-gpu, or pip install accelbench[gpu])")
        try:
            import tensorrt  # noqa: F401
        except Exception as error:
            return Availability(False, f"tensorrt {version} is installed but does not import: {error}")
        try:
            cudart = _cudart()
        except Exception as error:
            return Availability(False, f"tensorrt {version}: the CUDA runtime bindings do not import "
                                       f"(pip install cuda-python): {error}")
        error, count = cudart.cudaGetDeviceCount()
        if int(error) != 0 or count == 0:
            return Availability(False, f"tensorrt {version}: no CUDA device ({error})")
        return Availability(True, f"tensorrt {version} on {gpu_name_and_capability()}")

    @classmethod
    def unsupported_reason(cls, precision: str, options: BackendOptions) -> str | None:
        if precision == "int8_dynamic":
            return ("tensorrt does not run int8_dynamic: TensorRT quantizes explicitly (Q/DQ) with static scales; "
                    "use int8")
        return super().unsupported_reason(precision, options)

    def prepare(self, artifact: str, options: BackendOptions, batch_size: int,
                layout: InputLayout | None = None) -> Session:
        return self._session(artifact, options, batch_size, layout, "default")

    def _session(self, artifact: str, options: BackendOptions, batch_size: int, layout: InputLayout | None,
                 profiling_verbosity: str) -> TensorrtSession:
        import onnxruntime as ort  # only to read the ONNX file's input specs, exactly as onnxruntime_cpu does
        import tensorrt as trt

        specs = [_spec(n) for n in ort.InferenceSession(artifact, providers=["CPUExecutionProvider"]).get_inputs()]
        shapes = {spec.name: shape for spec, shape in zip(specs, input_shapes(specs, batch_size, layout), strict=True)}
        recipe = build_recipe(trt.__version__, options.precision, options.compression,
                              set(trt.BuilderFlag.__members__), set(trt.NetworkDefinitionCreationFlag.__members__))
        if "error" in recipe:
            raise RuntimeError(recipe["error"])
        gpu = gpu_name_and_capability()
        folder = cache_dir() / "tensorrt"
        folder.mkdir(parents=True, exist_ok=True)
        key = engine_key(content_hash(Path(artifact)), trt.__version__, gpu, options.precision,
                         options.compression, shapes, recipe, profiling_verbosity)
        engine_file = folder / f"{key}.engine"
        started = time.perf_counter()
        cached = engine_file.exists()
        if not cached:
            timing_cache = folder / f"timing-{trt.__version__}-{gpu.replace(' ', '_')}.cache"
            plan = build_engine(trt, Path(artifact), shapes, recipe, timing_cache, profiling_verbosity)
            engine_file.with_suffix(".tmp").write_bytes(plan)
            engine_file.with_suffix(".tmp").replace(engine_file)
        runtime = trt.Runtime(_Logger(trt).logger)
        engine = runtime.deserialize_cuda_engine(engine_file.read_bytes())
        if engine is None:
            raise RuntimeError(f"TensorRT could not load the engine {engine_file}")
        info = {"runtime_version": trt.__version__, "engine_cache_hit": cached, "engine": str(engine_file),
                "strongly_typed": recipe["strongly_typed"], "builder_flags": recipe["flags"],
                "build_or_load_s": time.perf_counter() - started, "gpu_sm": gpu}
        session = TensorrtSession(trt, engine, shapes, info)
        session._runtime = runtime  # the runtime must outlive its engine
        return session

    def profile(self, artifact: str, options: BackendOptions, batch_size: int, layout: InputLayout | None,
                feeds: list[np.ndarray], runs: int, trace_path: str) -> ProfilePass:
        import tensorrt as trt

        session = self._session(artifact, options, batch_size, layout, "detailed")
        try:
            return profile_session(trt, session, feeds, runs, trace_path)
        finally:
            session.close()


def layer_flags(layer_name: str, layer_type: str) -> dict[str, Any]:
    """Whether a TensorRT layer is a fusion of several ONNX nodes or an opaque graph, from its name and type."""
    if layer_type == "Myelin" or layer_name.startswith("{ForeignNode"):
        return {"opaque": True, "detail": "a Myelin graph compiled as one unit: its ONNX nodes are not timed apart"}
    if " + " in layer_name:
        return {"fused": True, "detail": f"TensorRT fused {layer_name.count(' + ') + 1} nodes into this layer"}
    return {}


def profile_session(trt: Any, session: TensorrtSession, feeds: list[np.ndarray], runs: int,
                    trace_path: str) -> ProfilePass:
    """Per-layer times through an IProfiler on the detailed engine, ``runs`` runs after PROFILE_WARMUP_RUNS."""
    layers: list[tuple[int, str, float]] = []
    run_index = [0]

    class LayerProfiler(trt.IProfiler):
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            layers.append((run_index[0], layer_name, ms))

    call = session.bind(feeds)
    for _ in range(PROFILE_WARMUP_RUNS):
        call()
    session._context.profiler = LayerProfiler()
    run_ms = []
    for index in range(runs):
        run_index[0] = index
        started = time.perf_counter_ns()
        call()
        run_ms.append((time.perf_counter_ns() - started) / 1e6)
    inspector = session._engine.create_engine_inspector()
    kinds = {}
    for index in range(session._engine.num_layers):
        detail = json.loads(inspector.get_layer_information(index, trt.LayerInformationFormat.JSON) or "{}")
        if isinstance(detail, dict) and "Name" in detail:
            kinds[detail["Name"]] = detail.get("LayerType", "?")
    rows = [(name, kinds.get(name, "?"), "TensorRT", ms) for _, name, ms in layers]
    ops = summed_ops(rows)
    for op in ops:
        for key, value in layer_flags(op.name, op.op_type).items():
            setattr(op, key, value)
    trace, cursor, last_run = [], 0.0, -1
    for run, name, ms in layers:  # IProfiler gives durations only: laid end to end within each run
        if run != last_run:
            cursor, last_run = run * 1e6, run
        trace.append({"name": name, "cat": kinds.get(name, "?"), "ph": "X", "ts": cursor, "dur": ms * 1e3,
                      "pid": 1, "tid": 1})
        cursor += ms * 1e3
    return ProfilePass(
        route="TensorRT IProfiler on an engine built with ProfilingVerbosity.DETAILED",
        note="a second engine (DETAILED profiling verbosity, its own cache entry) run after the timed loop; run "
             "times are the wall clock around each call (H2D and D2H copies included, which are not layers)",
        run_ms=run_ms, ops=ops,
        trace_file=write_chrome_trace(trace_path, trace, {"runtime": "tensorrt", "laid_end_to_end": True}))
