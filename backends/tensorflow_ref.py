"""TensorFlow running the SavedModel itself: the fp32 reference the other backends are compared against."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from backends.base import (
    Availability,
    Backend,
    BackendOptions,
    Session,
    module_version,
)
from model_zoo.inputs import InputLayout, TensorSpec


def _tf_spec(name: str, spec: Any) -> TensorSpec:
    dims = spec.shape.as_list() if spec.shape.rank is not None else []
    return TensorSpec(name, tuple(dims), spec.dtype.as_numpy_dtype().dtype.name)


class TensorflowSession(Session):
    def __init__(self, loaded: Any, signature: Any, threads: int | None) -> None:
        import tensorflow as tf

        self._tf = tf
        self._loaded = loaded  # keeps the variables the signature closes over alive
        self._signature = signature
        input_specs = signature.structured_input_signature[1]
        self._input_names = sorted(input_specs)
        self.inputs = [_tf_spec(n, input_specs[n]) for n in self._input_names]
        self._output_names = sorted(signature.structured_outputs)
        self.outputs = [_tf_spec(n, signature.structured_outputs[n]) for n in self._output_names]
        self._threads = threads

    def bind(self, feeds: list[np.ndarray]) -> Callable[[], list[np.ndarray]]:
        tensors = {name: self._tf.constant(array) for name, array in zip(self._input_names, feeds, strict=True)}
        signature, names = self._signature, self._output_names

        def run() -> list[np.ndarray]:
            result = signature(**tensors)
            return [result[name].numpy() for name in names]  # .numpy() waits for the result

        return run

    def info(self) -> dict[str, Any]:
        return {
            "runtime": "tensorflow",
            "runtime_version": self._tf.__version__,
            "device": "cpu",
            "threads": self._threads,
            "software_device": False,
        }


class TensorflowReference(Backend):
    name = "tensorflow"
    artifact_format = "savedmodel"
    description = "TensorFlow executing the SavedModel (the fp32 reference)"

    @classmethod
    def available(cls) -> Availability:
        version = module_version("tensorflow-cpu") or module_version("tensorflow")
        if version is None:
            return Availability(False, "tensorflow is not installed (pip install tensorflow-cpu)")
        return Availability(True, f"tensorflow {version}")

    def prepare(self, artifact: str, options: BackendOptions, batch_size: int,
                layout: InputLayout | None = None) -> Session:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf

        if options.threads:
            tf.config.threading.set_intra_op_parallelism_threads(options.threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        loaded = tf.saved_model.load(artifact)
        signature = loaded.signatures.get("serving_default")
        if signature is None:
            raise ValueError(f"{artifact} has no serving_default signature (found: {list(loaded.signatures)})")
        return TensorflowSession(loaded, signature, options.threads)
