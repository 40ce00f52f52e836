"""Format conversions: Keras → SavedModel → TFLite / ONNX. Heavy imports happen inside the functions.

Everything converts from the SavedModel, not from the in-memory Keras model, so a user's SavedModel and a
zoo model take the same road, and the TFLite and ONNX files derive from exactly the bytes the TensorFlow
reference backend loads. Errors are raised as plain exceptions with readable text; `model_zoo.artifacts`
adds which model and file they concern.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from model_zoo.tf_env import import_tf

if TYPE_CHECKING:
    import keras

ONNX_OPSET = 17
SERVING_TAG = "serve"
DEFAULT_SIGNATURE = "serving_default"


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


def savedmodel_to_tflite(savedmodel_dir: Path, out_file: Path, precision: str = "fp32") -> None:
    _require_fp32(precision)
    tf = import_tf()
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(savedmodel_dir), signature_keys=[serving_signature(savedmodel_dir)]
    )
    # Builtin ops only: a model needing SELECT_TF_OPS would not run on the plain LiteRT runtime anyway,
    # so failing here, with the converter's list of offending ops, is the honest outcome.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    out_file.write_bytes(converter.convert())


def savedmodel_to_onnx(
    savedmodel_dir: Path, out_file: Path, precision: str = "fp32", opset: int = ONNX_OPSET
) -> None:
    """Run tf2onnx's documented CLI in a child process.

    A child, because tf2onnx switches TensorFlow into graph mode and installs its own log handlers; the
    extra TensorFlow import (about 2 s) is cheaper than a builder process whose state was changed under it.
    tf2onnx exits 0 even when it had to leave ops unconverted, so the result is checked with the ONNX checker.
    """
    _require_fp32(precision)
    import onnx

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
        raise NotImplementedError(f"precision {precision} is not supported yet")
