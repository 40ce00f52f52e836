"""Format conversions: Keras → SavedModel → TFLite / ONNX (fp32 ONNX → fp16 / int8 ONNX is model_zoo.onnx_precision).

Everything converts from the SavedModel, not from the in-memory Keras model, so a user's SavedModel and a
zoo model take the same road, and the TFLite and ONNX files derive from exactly the bytes the TensorFlow
reference backend loads. TFLite precisions come from the TFLite converter itself (it sees the TensorFlow
graph). TensorFlow and tf2onnx are imported inside the functions (seconds each); onnx at the top. Errors are
raised as plain exceptions with readable text; `model_zoo.artifacts` adds which model and file they concern.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from model_zoo.inputs import TensorSpec
from model_zoo.tf_env import import_tf

if TYPE_CHECKING:
    import keras
    import numpy as np

ONNX_OPSET = 17
SERVING_TAG = "serve"
DEFAULT_SIGNATURE = "serving_default"
# Calibration batches for ONNX Runtime's calibrator: it keeps every intermediate tensor of a batch, so whole
# data sets at once would cost gigabytes on the large zoo models; one sample at a time would be slow.
ONNX_CALIBRATION_BATCH = 16
def load_keras_file(path: Path) -> keras.Model:
    import_tf()
    import keras

    # compile=False: the optimizer state is irrelevant for inference and a common cause of load failures.
    return keras.saving.load_model(path, compile=False)


def export_savedmodel(model: keras.Model, out_dir: Path) -> None:
    """Export with Keras 3's `model.export`, whose signature keeps the batch dimension dynamic."""
    model.export(str(out_dir), format="tf_saved_model", verbose=False)


def serving_signature(savedmodel_dir: Path) -> str:
    """Pick the signature to convert: `serving_default` if present, else the only one there is."""
    import_tf()
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((savedmodel_dir / "saved_model.pb").read_bytes())
    served = [g for g in proto.meta_graphs if SERVING_TAG in g.meta_info_def.tags] or list(proto.meta_graphs)
    names = sorted({name for graph in served for name in graph.signature_def if not name.startswith("__")})
    if DEFAULT_SIGNATURE in names:
        return DEFAULT_SIGNATURE
    if len(names) == 1:
        return names[0]
    raise ValueError(
        f"the SavedModel has signatures {names or 'none'}; expected '{DEFAULT_SIGNATURE}' or exactly one"
    )


def savedmodel_input_specs(savedmodel_dir: Path) -> list[TensorSpec]:
    """The serving signature's inputs (their full shapes, batch first), in TensorFlow's own order for them (sorted
    by name)."""
    tf = import_tf()
    loaded = tf.saved_model.load(str(savedmodel_dir))
    function = loaded.signatures[serving_signature(savedmodel_dir)]
    args, kwargs = function.structured_input_signature
    specs = [(spec.name or f"input_{i}", spec) for i, spec in enumerate(args)] + sorted(kwargs.items())
    result = []
    for name, spec in specs:
        dims = spec.shape.as_list() if spec.shape.rank is not None else [None]
        result.append(TensorSpec(name=name, shape=tuple(dims), dtype=spec.dtype.name))
    return result


def savedmodel_to_tflite(
    savedmodel_dir: Path,
    out_file: Path,
    precision: str = "fp32",
    representative: Sequence[dict[str, np.ndarray]] | None = None,
    fixed_batch: int | None = None,
) -> None:
    """Convert with the TFLite converter at one of the four precisions.

    `fixed_batch` bakes a batch size into the file: the serving function is traced again with that batch, so
    shapes computed from the batch (a Flatten's reshape) become constants. GPU accelerators need that.

    fp16 stores weights as float16 (dequantized on load by CPU kernels, run as fp16 by GPU delegates);
    int8_dynamic stores int8 weights and quantizes activations on the fly; int8 is full integer, calibrated on
    `representative` (batches keyed by signature input name), with float32 model inputs and outputs kept so
    the harness can feed the same data to every precision.
    """
    tf = import_tf()
    if fixed_batch is None:
        converter = tf.lite.TFLiteConverter.from_saved_model(
            str(savedmodel_dir), signature_keys=[serving_signature(savedmodel_dir)]
        )
    else:
        converter, _keep_alive = _fixed_batch_converter(tf, savedmodel_dir, fixed_batch)
    # Builtin ops only: a model needing SELECT_TF_OPS would not run on the plain LiteRT runtime anyway,
    # so failing here, with the converter's list of offending ops, is the honest outcome.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        if not representative:
            raise ValueError("full-integer quantization needs calibration data")
        batches = list(representative)

        def samples() -> Iterator[dict[str, np.ndarray]]:
            yield from batches

        converter.representative_dataset = samples
        # Every op in int8 or the conversion fails, naming the op: a half-float model is not "int8".
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.float32
        converter.inference_output_type = tf.float32
    elif precision not in ("fp32", "int8_dynamic"):
        raise ValueError(f"unknown precision {precision}")
    with warnings.catch_warnings():
        # The calibrator runs TensorFlow's own (deprecated) tf.lite.Interpreter; nothing for a user to act on.
        warnings.filterwarnings("ignore", r"\s*Warning: tf.lite.Interpreter is deprecated", UserWarning)
        out_file.write_bytes(converter.convert())


def _fixed_batch_converter(tf: Any, savedmodel_dir: Path, batch: int) -> tuple[Any, Any]:
    """A TFLite converter for the serving signature re-traced at a fixed batch (inputs keep their names).

    Returns the loaded SavedModel too: the converter reads its variables, so it must outlive the conversion.
    """
    loaded = tf.saved_model.load(str(savedmodel_dir))
    serving = loaded.signatures[serving_signature(savedmodel_dir)]
    specs = serving.structured_input_signature[1]
    names = list(specs)
    fixed = [tf.TensorSpec([batch, *specs[n].shape[1:]], specs[n].dtype, name=n) for n in names]

    @tf.function(input_signature=fixed)
    def at_fixed_batch(*inputs: Any) -> Any:
        return serving(**dict(zip(names, inputs, strict=True)))

    return tf.lite.TFLiteConverter.from_concrete_functions([at_fixed_batch.get_concrete_function()], loaded), loaded


def savedmodel_to_onnx(
    savedmodel_dir: Path, out_file: Path, precision: str = "fp32", opset: int = ONNX_OPSET
) -> None:
    """Run tf2onnx's documented CLI in a child process.

    A child, because tf2onnx switches TensorFlow into graph mode and installs its own log handlers; the
    extra TensorFlow import (about 2 s) is cheaper than a builder process whose state was changed under it.
    tf2onnx exits 0 even when it had to leave ops unconverted, so the result is checked with the ONNX checker.
    """
    _require_fp32(precision)
    command = [
        sys.executable, "-m", "tf2onnx.convert",
        "--saved-model", str(savedmodel_dir),
        "--tag", SERVING_TAG,
        "--signature_def", serving_signature(savedmodel_dir),
        "--opset", str(opset),
        "--output", str(out_file),
    ]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    errors = [line for line in proc.stderr.splitlines() if " - ERROR - " in line or "Error" in line]
    if proc.returncode != 0 or not out_file.exists():
        detail = "\n".join(errors[-5:] or proc.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"tf2onnx failed (exit {proc.returncode}): {detail}")
    try:
        onnx.checker.check_model(str(out_file), full_check=True)
    except onnx.checker.ValidationError as exc:
        detail = "\n".join(errors[-5:])
        raise RuntimeError(f"tf2onnx produced an invalid ONNX model: {exc}\n{detail}".strip()) from exc


def _require_fp32(precision: str) -> None:
    if precision != "fp32":
        raise ValueError(f"tf2onnx converts at fp32 only; {precision} ONNX is made from the fp32 ONNX")
