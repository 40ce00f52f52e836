"""What the harness asks of the zoo: "give me model M as format F at precision P", answered from a cache.

Importing this module must never import TensorFlow (onnx and NumPy it does): LiteRT / ONNX Runtime workers and
pytest collection import it. Only `build` imports TensorFlow, inside the conversions; the harness calls it
through `python -m model_zoo.build` so that its own process never does.

Keys are content addresses. A SavedModel's key hashes its source: a zoo model's recipe (name, shape, seed,
recipe version, library versions) or a user file's bytes. A TFLite or ONNX file's key hashes the bytes of
the SavedModel it was converted from, plus format, precision, converter versions and options; so a user
SavedModel byte-identical to a cached one shares its conversions, and a changed converter never serves an
old file.

Precisions and compression extend the same scheme. fp16 / int8 ONNX files derive from the fp32 ONNX (a
user's .onnx file included) and hash its bytes; TFLite files at every precision derive from the SavedModel.
A pruned model is a SavedModel of its own (`model_zoo.prune`), keyed by the dense SavedModel's bytes (zoo) or
the .keras file's bytes plus the pruning recipe, and the source of that model's TFLite / ONNX files. An int8
key also covers the calibration settings and the calibration data's content. Fields at their defaults are
left out of keys and JSON, so fp32 artefacts keep the keys they had before precisions existed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import onnx

# convert, calibration and prune are cheap to import: they defer TensorFlow, tf2onnx, onnx, tfmot and
# onnxruntime.quantization to the functions that need them.
from model_zoo import cache, convert, onnx_precision, progress, prune
from model_zoo.builders import construct_keras_model
from model_zoo.cache import cache_dir
from model_zoo.calibration import (
    calibration_data,
    calibration_identity,
    check_feeds,
    confirmation_feeds,
    source_problem,
)
from model_zoo.catalog import CATALOG
from model_zoo.errors import ArtifactError
from model_zoo.inputs import InputError, InputLayout, onnx_declared
from model_zoo.requests import FORMATS, PRECISIONS, ArtifactRequest, Calibration, ModelRef, parse_compression
from model_zoo.targets import FP16_MIN_COSINE, FP16_SEARCH_SECONDS, INT8_SEARCH_SECONDS
from model_zoo.tf_env import import_tf

__all__ = [
    "FORMATS",
    "MODEL_FILES",
    "PRECISIONS",
    "ArtifactError",
    "ArtifactRequest",
    "Calibration",
    "ModelRef",
    "artifact_key",
    "artifact_meta",
    "build",
    "cache_dir",
    "lookup",
    "request_from_json",
    "request_to_json",
    "unsupported_reason",
]

log = logging.getLogger("accelbench.zoo")

MODEL_FILES = {"savedmodel": "savedmodel", "tflite": "model.tflite", "onnx": "model.onnx"}
_NAMES = {"onnx": "ONNX", "tflite": "TFLite", "keras": "Keras", "savedmodel": "a TensorFlow SavedModel"}
_ARTICLES = {"onnx": "an", "tflite": "a", "keras": "a"}
_MAX_MESSAGE = 3000


def unsupported_reason(req: ArtifactRequest) -> str | None:
    """Why the request can never be produced, or None. Cheap: no TensorFlow, no big reads.

    A file type accelbench cannot read is such a reason, and so is a combination no converter makes. A
    missing or corrupt file is not (a missing calibration .npz included): that is an error `build` raises,
    so the case fails rather than being skipped.
    """
    try:
        source = req.model.source_format()
    except ArtifactError as exc:
        return str(exc)
    if req.format not in FORMATS:
        return f"unknown artefact format {req.format!r}; expected one of {', '.join(FORMATS)}"
    if req.precision not in PRECISIONS:
        return f"unknown precision {req.precision!r}; expected one of {', '.join(PRECISIONS)}"
    try:
        compression = parse_compression(req.compression)
    except ValueError as exc:
        return str(exc)
    if source in ("onnx", "tflite") and req.format != source:
        return (
            f"{req.model.path} is {_ARTICLES[source]} {_NAMES[source]} file; "
            f"accelbench cannot convert {_NAMES[source]} to {_NAMES[req.format]}"
        )
    if req.batch is not None and (req.format != "tflite" or source == "tflite"):
        return (f"a fixed batch size is made only for .tflite files converted by accelbench, not for "
                f"{'a TFLite file given as is' if source == 'tflite' else req.format}")
    if req.format == "savedmodel" and req.precision != "fp32":
        return (
            f"the tensorflow backend runs the fp32 SavedModel only; {req.precision} is made as a TFLite or ONNX file"
        )
    if source == "tflite" and req.precision != "fp32":
        return (
            f"{req.model.path}: cannot re-quantize a TFLite file; give the SavedModel, .keras or .onnx source "
            f"for {req.precision}"
        )
    if compression is not None and source not in ("zoo", "keras"):
        return (
            f"{req.model.path}: {req.compression} needs the Keras model, because pruning works on Keras layers; "
            f"give a zoo model or a .keras file, not {_ARTICLES.get(source, 'a')} {_NAMES[source]}"
            + ("" if source == "savedmodel" else " file")
        )
    if req.precision == "int8":
        problem = source_problem(req.calibration)
        if problem is not None:
            return problem
    if source == "zoo":
        return CATALOG[req.model.zoo].shape_problem(req.model.shape)
    return None


def lookup(req: ArtifactRequest) -> Path | None:
    """The artefact's path if it exists complete, else None. No TensorFlow; user files are not validated."""
    if unsupported_reason(req) is not None:
        return None
    if _is_passthrough(req):
        path = Path(req.model.path)
        return path if path.exists() else None
    try:
        key = artifact_key(req)
    except ArtifactError:  # e.g. the user's file is missing: build() will say so
        return None
    return None if key is None else cache.find(key, MODEL_FILES[req.format])


def artifact_key(req: ArtifactRequest) -> str | None:
    """The cache key, or None while it cannot be known (the file it derives from is not built yet).

    Raises ArtifactError when a file the key hashes cannot be read (a user model, a calibration .npz).
    """
    input_hash = _input_hash(req)
    if input_hash is None:
        return None
    return _digest(_key_parts(req, input_hash))


def artifact_meta(path: str | Path) -> dict[str, Any] | None:
    """The meta.json of a cached artefact (sparsity reached, calibration used, versions…), or None for a
    file that is not a cache entry, such as a user's model used in place."""
    path = Path(path)
    try:
        entry = path.resolve().parent
        root = (cache_dir() / "artifacts").resolve()
    except OSError:
        return None
    if entry.parent != root:
        return None
    meta = cache.read_meta(entry.name)
    if meta is None or meta.get("file") != path.name:
        return None
    return meta


def build(req: ArtifactRequest) -> Path:
    """Produce the artefact if it is not cached (TensorFlow imported here) and return its path.

    Safe to call from several processes at once: one converts, the others wait and reuse its result.
    """
    reason = unsupported_reason(req)
    if reason is not None:
        raise ArtifactError(reason)
    ref = req.model
    if ref.path is not None:
        _check_user_file(ref)
    if _is_passthrough(req):
        return Path(ref.path)
    if req.precision == "int8":  # a missing calibration file fails now, before any dependency is built
        calibration_identity(ref, req.calibration)
    found = lookup(req)
    if found is not None:
        return found

    convert_to = _converter(req)
    key = artifact_key(req)
    assert key is not None  # what it derives from exists by now
    what = f"{req.format} {req.precision}" + ("" if req.compression == "none" else f" {req.compression}")

    def produce(out: Path) -> dict[str, Any]:
        if _needs_tensorflow(req):
            import_tf()  # outside the timing: build_seconds should measure the conversion, not the import
        log.info("building %s of %s", what, ref.describe())
        progress.step(f"building {what}")
        started = time.perf_counter()
        try:
            extra = convert_to(out) or {}
        except ArtifactError:
            raise
        except Exception as exc:
            message = f"{ref.describe()}: building {what} failed: {type(exc).__name__}: {exc}"
            raise ArtifactError(_shorten(message)) from exc
        seconds = time.perf_counter() - started
        log.info("built %s of %s in %.1f s", what, ref.describe(), seconds)
        return {
            "request": request_to_json(req),
            "source_key": _input_hash(req),
            "versions": _request_versions(req),
            "options": _request_options(req),
            "build_seconds": round(seconds, 3),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            **_pruning_meta(req),
            **extra,
        }

    return cache.store(key, MODEL_FILES[req.format], produce)


def request_to_json(req: ArtifactRequest) -> dict[str, Any]:
    """JSON for the build subprocess and for meta.json; fields at their defaults are left out."""
    model: dict[str, Any] = {}
    if req.model.zoo is not None:
        model["zoo"] = req.model.zoo
    if req.model.path is not None:
        model["path"] = req.model.path
    if req.model.input_shape is not None:
        model["input_shape"] = list(req.model.input_shape)
    data: dict[str, Any] = {"model": model, "format": req.format, "precision": req.precision}
    if req.compression != "none":
        data["compression"] = req.compression
    if req.batch is not None:
        data["batch"] = req.batch
    if req.inputs:
        data["inputs"] = req.inputs
    default = Calibration()
    calibration = {
        name: getattr(req.calibration, name)
        for name in ("samples", "source")
        if getattr(req.calibration, name) != getattr(default, name)
    }
    if calibration:
        data["calibration"] = calibration
    return data


def request_from_json(data: Any) -> ArtifactRequest:
    """Inverse of request_to_json; malformed input raises ArtifactError naming what is wrong."""
    try:
        model = data["model"]
        shape = model.get("input_shape")
        ref = ModelRef(
            zoo=model.get("zoo"), path=model.get("path"), input_shape=None if shape is None else tuple(shape)
        )
        precision = str(data.get("precision", "fp32"))
        compression = str(data.get("compression", "none"))
        settings = data.get("calibration") or {}
        unknown = set(settings) - {"samples", "source"}
        if unknown:
            raise ValueError(f"unknown calibration field(s) {', '.join(sorted(unknown))}")
        calibration = Calibration(
            samples=int(settings.get("samples", Calibration.samples)),
            source=str(settings.get("source", Calibration.source)),
        )
        batch = data.get("batch")
        return ArtifactRequest(
            model=ref, format=str(data["format"]), precision=precision, compression=compression,
            calibration=calibration, batch=None if batch is None else int(batch), inputs=str(data.get("inputs", "")),
        )
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ArtifactError(f"malformed artefact request {data!r}: {type(exc).__name__}: {exc}") from exc


# --- internals -----------------------------------------------------------------------------------------


def _is_passthrough(req: ArtifactRequest) -> bool:
    """A user file already in the requested form is used in place: copying it would only cost disk."""
    source = req.model.source_format()
    return source == req.format and source in FORMATS and req.precision == "fp32" and req.compression == "none"


def _input_hash(req: ArtifactRequest) -> str | None:
    """Hash of what the artefact is made from.

    SavedModel: the zoo recipe, the user's bytes, or (pruned zoo model) the dense SavedModel's bytes.
    fp16 / int8 ONNX: the fp32 ONNX's bytes. Anything else: the bytes of its SavedModel.
    """
    ref = req.model
    source = ref.source_format()
    if req.format == "savedmodel" and source == "zoo":
        if req.compression == "none":
            return _recipe_hash(ref)
        return _built_hash(ArtifactRequest(ref, "savedmodel"))
    if req.format == "onnx" and req.precision != "fp32" and source != "onnx":
        return _built_hash(ArtifactRequest(ref, "onnx", compression=req.compression))
    if req.format != "savedmodel" and source in ("zoo", "keras"):
        return _built_hash(ArtifactRequest(ref, "savedmodel", compression=req.compression))
    try:
        return cache.content_hash(Path(ref.path))
    except OSError as exc:
        raise ArtifactError(f"{ref.path}: cannot read: {exc.strerror or exc}") from exc


def _built_hash(req: ArtifactRequest) -> str | None:
    """The content hash of a cached artefact, or None while it is not built."""
    key = artifact_key(req)
    meta = None if key is None else cache.read_meta(key)
    return None if meta is None else meta["content_sha256"]


def _key_parts(req: ArtifactRequest, input_hash: str) -> dict[str, Any]:
    """What the key hashes. fp32 without compression: exactly the fields keys had before precisions."""
    parts: dict[str, Any] = {
        "input": input_hash,
        "format": req.format,
        "precision": req.precision,
        "versions": _request_versions(req),
        "options": _request_options(req),
    }
    compression = parse_compression(req.compression) if req.compression != "none" else None
    if compression is not None:
        parts["compression"] = prune.compression_recipe(compression)
    if req.precision == "int8":
        parts["calibration"] = calibration_identity(req.model, req.calibration)
    if req.batch is not None:
        parts["batch"] = req.batch
    if req.inputs:
        parts["inputs"] = req.inputs
    return parts


def _request_versions(req: ArtifactRequest) -> dict[str, str]:
    """Versions of the libraries that write this artefact (those of the file it derives from are in its hash)."""
    if req.format == "onnx" and req.precision != "fp32":
        versions = {"onnx": _version("onnx"), "onnxruntime": _version("onnxruntime", "onnxruntime-gpu")}
        if req.precision == "fp16":
            versions["onnxconverter-common"] = _version("onnxconverter-common")
        return versions
    versions = _versions(req.format)
    if req.format == "savedmodel" and req.compression != "none":
        versions["tensorflow-model-optimization"] = _version("tensorflow-model-optimization")
        versions["tf-keras"] = _version("tf-keras", "tf_keras")
    return versions


# Bump when a precision's conversion changes in a way its options below do not show.
QUANTIZATION_RECIPE = 19


def _request_options(req: ArtifactRequest) -> dict[str, Any]:
    if req.precision == "fp32":
        return _options(req.format)
    if req.format == "tflite":
        options: dict[str, Any] = {"ops": "TFLITE_BUILTINS", "optimizations": ["DEFAULT"]}
        if req.precision == "fp16":
            options["supported_types"] = ["float16"]
        if req.precision == "int8":
            options.update(ops="TFLITE_BUILTINS_INT8", representative_dataset=True, io="float32")
    elif req.precision == "fp16":
        options = {"converter": "onnxconverter_common.float16", "keep_io_types": True, "fp32_casts_kept": True,
                   "module": "model_zoo.onnx_precision", "min_cosine": FP16_MIN_COSINE,
                   "clamp": onnx_precision.FP16_MAX, "fragile_ops": sorted(onnx_precision.FP16_FRAGILE_OPS)}
    elif req.precision == "int8_dynamic":
        options = {"quantize_dynamic": {"weight_type": "QInt8"}, "module": "model_zoo.onnx_precision"}
    else:
        options = {
            "quantize_static": onnx_precision.onnx_int8_options(),
            "module": "model_zoo.onnx_precision",
            "calibration_batch": convert.ONNX_CALIBRATION_BATCH,
        }
    return {**options, "recipe": QUANTIZATION_RECIPE}


def _recipe_hash(ref: ModelRef) -> str:
    model = CATALOG[ref.zoo]
    versions = _versions("savedmodel")
    if model.dataset is not None:  # the training split comes from scikit-learn
        versions["scikit-learn"] = _version("scikit-learn")
    return _digest(
        {
            "zoo": model.name,
            "input_shape": list(ref.shape),
            "seed": model.seed,
            "recipe_version": model.recipe_version,
            "versions": versions,
        }
    )


def _versions(fmt: str) -> dict[str, str]:
    """Versions of the libraries that write the format, read from metadata: importing TF takes seconds."""
    versions = {"tensorflow": _version("tensorflow", "tensorflow-cpu", "tf-nightly", "tensorflow-intel")}
    if fmt == "savedmodel":
        versions["keras"] = _version("keras")
    if fmt == "onnx":
        versions["tf2onnx"] = _version("tf2onnx")
        versions["onnx"] = _version("onnx")
    return versions


@functools.cache  # installed versions do not change under a running process
def _version(*distributions: str) -> str:
    for name in distributions:
        try:
            return f"{name}=={metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return "absent"


def _options(fmt: str) -> dict[str, Any]:
    return {"onnx": {"opset": convert.ONNX_OPSET}, "tflite": {"ops": "TFLITE_BUILTINS"}}.get(fmt, {})


def _digest(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _check_user_file(ref: ModelRef) -> None:
    """Fail early, naming the file, instead of deep inside a converter or a backend."""
    path = Path(ref.path)
    source = ref.source_format()
    if not path.exists():
        raise ArtifactError(f"{ref.path}: no such file or directory")
    if source == "savedmodel":
        if not (path / "saved_model.pb").is_file():
            raise ArtifactError(f"{ref.path}: not a TensorFlow SavedModel (no saved_model.pb inside)")
    elif source == "tflite":
        with open(path, "rb") as f:
            if f.read(8)[4:8] != b"TFL3":  # the TFLite flatbuffer file identifier
                raise ArtifactError(
                    f"{ref.path}: not a TFLite model (no TFL3 identifier): corrupt or wrong file"
                )
    elif source == "onnx":
        try:
            onnx.checker.check_model(str(path))
        except Exception as exc:
            raise ArtifactError(_shorten(f"{ref.path}: not a valid ONNX model: {exc}")) from exc


def _needs_tensorflow(req: ArtifactRequest) -> bool:
    """Quantizing an ONNX file and pruning (a subprocess of its own) need no TensorFlow in this process."""
    if req.format == "savedmodel":
        return req.compression == "none"
    return req.format == "tflite" or req.precision == "fp32"


def _converter(req: ArtifactRequest) -> Callable[[Path], dict[str, Any] | None]:
    """The function that writes the artefact (returning extra meta); it first builds what it derives from."""
    ref = req.model
    source = ref.source_format()
    if req.format == "savedmodel":
        if req.compression == "none":
            return lambda out: convert.export_savedmodel(_keras_model(ref), out)
        return _pruner(req)
    if req.format == "onnx" and req.precision != "fp32":
        fp32 = Path(ref.path) if source == "onnx" else build(ArtifactRequest(ref, "onnx", compression=req.compression))
        return lambda out: _quantize_onnx(req, fp32, out)
    if source == "savedmodel":
        savedmodel = Path(ref.path)
    else:
        savedmodel = build(ArtifactRequest(ref, "savedmodel", compression=req.compression))
    if req.format == "onnx":
        return lambda out: convert.savedmodel_to_onnx(savedmodel, out, req.precision)
    return lambda out: _to_tflite(req, savedmodel, out)


def input_layout(req: ArtifactRequest) -> InputLayout:
    """How to make data for the request's model: the scenario's descriptions of a user model's inputs, or the
    zoo's declared shape and value range."""
    if req.inputs:
        return InputLayout.from_json(json.loads(req.inputs))
    if req.model.zoo is not None:
        return InputLayout.from_json(CATALOG[req.model.zoo].layout_json(req.model.shape))
    return InputLayout()


def _to_tflite(req: ArtifactRequest, savedmodel: Path, out: Path) -> dict[str, Any] | None:
    if req.precision != "int8":
        convert.savedmodel_to_tflite(savedmodel, out, req.precision, fixed_batch=req.batch)
        return None
    declared = [replace(s, shape=(req.batch or s.shape[0], *s.shape[1:])) if s.shape else s
                for s in convert.savedmodel_input_specs(savedmodel)]
    # One sample per calibration step, as the TFLite converter expects, unless the file fixes its batch.
    data = calibration_data(req.model, req.calibration, declared, input_layout(req), call_batch=1)
    convert.savedmodel_to_tflite(savedmodel, out, "int8", data.feeds, fixed_batch=req.batch)
    return _calibration_meta(data)


def _quantize_onnx(req: ArtifactRequest, fp32: Path, out: Path) -> dict[str, Any]:
    """fp16 / int8 ONNX from the fp32 file, under one wall-clock budget for the whole conversion (its check and
    calibration data, calibration, the node search and the final check): out of time, the converter keeps the best
    configuration it has found."""
    budget_s = FP16_SEARCH_SECONDS if req.precision == "fp16" else INT8_SEARCH_SECONDS
    deadline = time.monotonic() + budget_s
    progress.budget(budget_s)
    declared, layout = onnx_declared(str(fp32)), input_layout(req)
    try:
        progress.step("making the check data")
        checks = check_feeds(req.model, declared, layout)
    except InputError as error:
        raise ArtifactError(f"{req.model.describe()}: {error}") from None
    if req.precision == "fp16":
        return {"quantization": onnx_precision.onnx_to_fp16(fp32, out, checks, deadline), "budget_s": budget_s}
    confirmations = confirmation_feeds(req.model, declared, layout)
    if req.precision == "int8_dynamic":
        return {"quantization": onnx_precision.onnx_to_int8_dynamic(fp32, out, checks, deadline, confirmations),
                "budget_s": budget_s}
    progress.step(f"making {req.calibration.samples} calibration samples")
    data = calibration_data(req.model, req.calibration, declared, layout, call_batch=convert.ONNX_CALIBRATION_BATCH)
    return {"quantization": onnx_precision.onnx_to_int8(fp32, out, data.feeds, checks, deadline, confirmations),
            "budget_s": budget_s, **_calibration_meta(data)}


def _calibration_meta(data: Any) -> dict[str, Any]:
    return {
        "calibration_source": data.description,
        "calibration_samples": data.samples,
        "calibration_sha256": data.sha256,
    }


def _pruner(req: ArtifactRequest) -> Callable[[Path], dict[str, Any]]:
    """Prune in a subprocess (tfmot needs legacy Keras), from the dense SavedModel's weights for a zoo model."""
    ref = req.model
    compression = parse_compression(req.compression)
    assert compression is not None
    if ref.zoo is not None:
        dense = build(ArtifactRequest(ref, "savedmodel"))
        spec: dict[str, Any] = {"zoo": ref.zoo, "input_shape": list(ref.shape), "dense_savedmodel": str(dense)}
    else:
        spec = {"keras_file": str(Path(ref.path).resolve())}
    spec["compression"] = compression.canonical

    def produce(out: Path) -> dict[str, Any]:
        report = prune.prune_in_subprocess(spec, out)
        return {"sparsity": report.pop("sparsity"), "fine_tuned": report.pop("fine_tuned"), "pruning": report}

    return produce


def _pruning_meta(req: ArtifactRequest) -> dict[str, Any]:
    """A pruned model's TFLite / ONNX files carry its sparsity in their own meta.json, for the results."""
    if req.compression == "none" or req.format == "savedmodel":
        return {}
    key = artifact_key(ArtifactRequest(req.model, "savedmodel", compression=req.compression))
    meta = (cache.read_meta(key) if key else None) or {}
    return {name: meta[name] for name in ("sparsity", "fine_tuned", "pruning") if name in meta}


def _keras_model(ref: ModelRef) -> Any:
    if ref.zoo is not None:
        return construct_keras_model(ref.zoo, ref.shape)
    return convert.load_keras_file(Path(ref.path))


def _shorten(message: str) -> str:
    """Converter errors can run to pages of MLIR dumps; keep the start (the cause) and the end (the op)."""
    if len(message) <= _MAX_MESSAGE:
        return message
    return message[: _MAX_MESSAGE - 800] + "\n…\n" + message[-700:]
