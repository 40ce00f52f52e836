"""Name → backend class. Entries are import paths so that listing backends imports no runtime.

Adding a backend: write ``backends/<name>.py`` with a :class:`backends.base.Backend` subclass and add one
line here. Backends that live outside this repository (a vendor's adapter, a test double of a crashing
runtime) are registered with ``ACCELBENCH_BACKENDS="name=package.module:Class,..."``; worker processes inherit
the variable, so they resolve the same names.
"""

from __future__ import annotations

import importlib
import os

from backends.base import Availability, Backend

BACKENDS: dict[str, str] = {
    "tflite_cpu": "backends.tflite_cpu:TfliteCpu",
    "tflite_gpu": "backends.tflite_gpu:TfliteGpu",
    "tflite_delegate": "backends.tflite_delegate:TfliteDelegate",
    "onnxruntime_cpu": "backends.onnxruntime_cpu:OnnxRuntimeCpu",
    "onnxruntime_cuda": "backends.onnxruntime_gpu:OnnxRuntimeCuda",
    "onnxruntime_trt": "backends.onnxruntime_gpu:OnnxRuntimeTensorrt",
    "tensorrt": "backends.tensorrt:Tensorrt",
    "tensorflow": "backends.tensorflow_ref:TensorflowReference",
    "python_callable": "backends.python_callable:PythonCallable",
}


def _all() -> dict[str, str]:
    extra = {}
    for item in filter(None, os.environ.get("ACCELBENCH_BACKENDS", "").split(",")):
        name, _, target = item.partition("=")
        extra[name.strip()] = target.strip()
    return {**BACKENDS, **extra}


def backend_names() -> list[str]:
    return list(_all())


def get_backend(name: str) -> type[Backend]:
    """The backend class for ``name``; raises KeyError for an unknown name."""
    module_name, class_name = _all()[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def find_backend(name: str) -> type[Backend] | None:
    """The backend class for ``name``, or None where the name is unknown or its adapter cannot be imported: for
    callers that only ask a backend's traits (and treat one that cannot say as having none)."""
    try:
        return get_backend(name)
    except (KeyError, ImportError, AttributeError):
        return None


def availability(name: str) -> Availability:
    try:
        return get_backend(name).available()
    except Exception as error:  # a broken adapter must not take `doctor` down with it
        return Availability(False, f"adapter failed to load: {type(error).__name__}: {error}")
