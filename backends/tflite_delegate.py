"""TFLite through an external delegate library given by path: the classic TFLite GPU delegate, a vendor's NPU
delegate, anything that exports TFLite's external-delegate entry points (`tflite_plugin_create_delegate`).

    backends: [{name: tflite_delegate, library: /opt/vendor/libvendor_delegate.so, options: {device: npu0}}]

`library` is an absolute path or one relative to the working directory. Nodes the delegate does not take run
on TFLite's builtin kernels; `xnnpack: true` lets XNNPACK take them instead (as benchmark_model does).

Whether a library loads is decided before any case runs, by loading it in a subprocess with the scenario's
options: a missing file, a file that is not a delegate, or a delegate that rejects its options becomes the
skip reason of every case that names it, and a library that crashes on load takes down only the probe.
How much of the model the delegate took is in `info()` (nodes it replaced, and whether any ran on the CPU).
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any

from backends.base import Availability, Backend, BackendOptions, Session, installed_and_importable
from backends.native_log import native_stderr_captured, static_shapes_reason
from backends.tflite_cpu import TfliteCpu, TfliteCpuSession, shape_for_batch
from model_zoo.inputs import InputLayout
from model_zoo.requests import PRECISIONS
from sysinfo.probe import run_probe

PROBE_TIMEOUT_S = 120


def _probe(library: str, options: dict[str, str]) -> dict[str, Any]:
    from ai_edge_litert.interpreter import load_delegate

    try:
        load_delegate(library, options)
    except Exception as exc:
        text = ": ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        return {"ok": False, "error": f"{type(exc).__name__}: {text[:400]}"}
    return {"ok": True}


@functools.cache
def delegate_probe(library: str, options_json: str) -> dict[str, Any]:
    """Does `library` load as a TFLite delegate with these options? Once per (library, options) per process."""
    try:
        found = Path(library).is_file()
    except (OSError, ValueError) as error:  # a name too long for the file system, a NUL byte
        return {"ok": False, "error": f"the delegate library path is unusable: {error}"}
    if not found:
        return {"ok": False, "error": f"the delegate library {library} does not exist"}
    result, _ = run_probe("backends.tflite_delegate", [library, options_json], PROBE_TIMEOUT_S,
                          f"loading the delegate library {library}")
    return result


def _options(options: BackendOptions) -> dict[str, str]:
    """TFLite passes delegate options as strings; true/false as the C side expects them."""
    raw = options.extra.get("options") or {}
    return {str(k): (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in raw.items()}


class TfliteDelegateSession(TfliteCpuSession):
    def __init__(self, interpreter: Any, options: BackendOptions, library: str, delegate_options: dict[str, str],
                 xnnpack: bool) -> None:
        super().__init__(interpreter, options, xnnpack=xnnpack)
        self._library, self._delegate_options = library, delegate_options

    def info(self) -> dict[str, Any]:
        """`delegate_kernels`: the kernels the delegate put in the graph (each replaces a run of nodes). XNNPACK,
        TFLite's default delegate, is kept out unless asked for, so 0 means every node ran on TFLite's builtin
        CPU kernels: the delegate took nothing."""
        ops = self._interpreter._get_ops_details()
        kernels = sum(1 for op in ops if op.get("op_name") == "DELEGATE")
        return {
            **super().info(),
            "device": "delegate",
            "kernels": f"external delegate {Path(self._library).name}, the rest on "
                       + ("XNNPACK (its kernels are counted too)" if self._xnnpack else "TFLite's builtin kernels"),
            "delegate_library": self._library,
            "delegate_options": self._delegate_options,
            "delegate_kernels": kernels,
        }


class TfliteDelegate(Backend):
    name = "tflite_delegate"
    artifact_format = "tflite"
    precisions = PRECISIONS  # what a delegate accepts is its own business
    description = "LiteRT Interpreter with an external delegate library (library: PATH, options: {...})"

    @classmethod
    def available(cls) -> Availability:
        version, problem = installed_and_importable(("ai-edge-litert",), "ai_edge_litert.interpreter")
        if problem:
            return problem
        return Availability(True, f"ai-edge-litert {version}; each scenario names its delegate library (library:)")

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return ("library", "options", "xnnpack")

    @classmethod
    def option_problem(cls, name: str, value: Any) -> str | None:
        if name == "library" and not (isinstance(value, str) and value):
            return f"library takes the path of a delegate library (.so), not {value!r}"
        if name == "xnnpack":
            return TfliteCpu.option_problem(name, value)
        if name == "options" and not (isinstance(value, dict) and all(
                isinstance(v, str | int | float | bool) for v in value.values())):
            return f"options takes a mapping of names to plain values, not {value!r}"
        return None

    @classmethod
    def unsupported_reason(cls, precision: str, options: BackendOptions) -> str | None:
        library = options.extra.get("library")
        if not library:
            return "tflite_delegate needs the delegate library's path: {name: tflite_delegate, library: PATH}"
        probe = delegate_probe(str(library), json.dumps(_options(options), sort_keys=True))
        if not probe["ok"]:
            return f"tflite_delegate: {probe['error']}"
        return super().unsupported_reason(precision, options)

    def prepare(self, artifact: str, options: BackendOptions, batch_size: int,
                layout: InputLayout | None = None) -> Session:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType, load_delegate

        library, delegate_options = str(options.extra["library"]), _options(options)
        xnnpack = bool(options.extra.get("xnnpack", False))
        resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        with native_stderr_captured() as native_log:
            try:
                interpreter = Interpreter(model_path=artifact, num_threads=options.threads,
                                          experimental_delegates=[load_delegate(library, delegate_options)],
                                          experimental_op_resolver_type=resolver)
                shape_for_batch(interpreter, batch_size, layout)
                error = None
            except RuntimeError as exc:  # the binding's message is often empty; the why is in the native log
                error = exc
        if error is not None:
            why = static_shapes_reason(native_log(), f"the delegate {Path(library).name}")
            raise RuntimeError(why or str(error) or "the delegate refused the model (see the case log)") from error
        return TfliteDelegateSession(interpreter, options, library, delegate_options, xnnpack)


if __name__ == "__main__" and sys.argv[1:2] == ["--probe"]:
    print(json.dumps(_probe(sys.argv[2], json.loads(sys.argv[3]))))
