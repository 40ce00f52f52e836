"""What the harness asks of the zoo: "give me model M as format F at precision P", answered from a cache.

Importing this module must stay light (no TensorFlow): LiteRT / ONNX Runtime workers and pytest
collection import it. Only `build` imports TensorFlow, lazily; the harness calls it through
`python -m model_zoo.build` so that its own process never does.

Keys are content addresses. A SavedModel's key hashes its source: a zoo model's recipe (name, shape, seed,
recipe version, library versions) or a user file's bytes. A TFLite or ONNX file's key hashes the bytes of
the SavedModel it was converted from, plus format, precision, converter versions and options; so a user
SavedModel byte-identical to a cached one shares its conversions, and a changed converter never serves an
old file.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

# convert is cheap to import: it defers TensorFlow, tf2onnx and onnx to the functions that need them.
from model_zoo import cache, convert
from model_zoo.cache import cache_dir
from model_zoo.catalog import CATALOG
from model_zoo.tf_env import import_tf

__all__ = [
    "FORMATS",
    "MODEL_FILES",
    "PRECISIONS",
    "ArtifactError",
    "ArtifactRequest",
    "ModelRef",
    "artifact_key",
    "build",
    "cache_dir",
    "lookup",
    "request_from_json",
    "request_to_json",
    "unsupported_reason",
]

log = logging.getLogger("accelbench.zoo")

FORMATS = ("savedmodel", "tflite", "onnx")
PRECISIONS = ("fp32",)  # fp16 / int8 slot in here and in model_zoo.convert
MODEL_FILES = {"savedmodel": "savedmodel", "tflite": "model.tflite", "onnx": "model.onnx"}
_SUFFIXES = {".onnx": "onnx", ".tflite": "tflite", ".keras": "keras", ".h5": "keras"}
_NAMES = {"onnx": "ONNX", "tflite": "TFLite", "keras": "Keras", "savedmodel": "a TensorFlow SavedModel"}
_ARTICLES = {"onnx": "an", "tflite": "a", "keras": "a"}
_MAX_MESSAGE = 3000


class ArtifactError(Exception):
    """A model or artefact problem worth showing to the user as is (names the model/file and the cause)."""


@dataclass(frozen=True)
class ModelRef:
    zoo: str | None = None  # a CATALOG name
    path: str | None = None  # a user's .onnx, .tflite, .keras file or SavedModel directory; absolute
    input_shape: tuple[int, ...] | None = None  # zoo models only, per sample; None = the catalog default

    def __post_init__(self) -> None:
        # Refuse malformed references at construction, so every later answer is about a real model.
        if (self.zoo is None) == (self.path is None):
            raise ArtifactError(f"a model reference needs exactly one of zoo or path, got {self!r}")
        if self.zoo is not None and self.zoo not in CATALOG:
            raise ArtifactError(f"unknown zoo model {self.zoo!r}; known: {', '.join(CATALOG)}")
        if self.input_shape is not None:
            if self.path is not None:
                raise ArtifactError(f"{self.path}: input_shape is an option of zoo models only")
            object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))

    @property
    def label(self) -> str:
        return self.zoo if self.zoo is not None else Path(self.path).stem

    @property
    def shape(self) -> tuple[int, ...] | None:
        """The per-sample shape a zoo model is built with (catalog default unless overridden)."""
        if self.zoo is None:
            return None
        return self.input_shape or CATALOG[self.zoo].input_shape

    def source_format(self) -> str:
        """From the suffix; a directory, or a missing path without a suffix, is taken as a SavedModel.

        A missing SavedModel then fails in `build` as "no such file", like a missing .onnx does.
        """
        if self.zoo is not None:
            return "zoo"
        path = Path(self.path)
        if path.suffix.lower() in _SUFFIXES:
            return _SUFFIXES[path.suffix.lower()]
        if path.is_dir() or (not path.suffix and not path.exists()):
            return "savedmodel"
        raise ArtifactError(
            f"{self.path}: accelbench cannot read this kind of file; "
            "expected a .onnx, .tflite or .keras file or a SavedModel directory"
        )

    def describe(self) -> str:
        if self.zoo is None:
            return self.path
        shape = "" if self.input_shape is None else f" at input shape {self.shape}"
        return f"zoo model {self.zoo}{shape}"


@dataclass(frozen=True)
class ArtifactRequest:
    model: ModelRef
    format: str
    precision: str = "fp32"


def unsupported_reason(req: ArtifactRequest) -> str | None:
    """Why the request can never be produced, or None. Cheap: no TensorFlow, no big reads.

    A file type accelbench cannot read is such a reason. A missing or corrupt file is not: that is an
    error `build` raises, so the case fails rather than being skipped.
    """
    try:
        source = req.model.source_format()
    except ArtifactError as exc:
        return str(exc)
    if req.format not in FORMATS:
        return f"unknown artefact format {req.format!r}; expected one of {', '.join(FORMATS)}"
    if source in ("onnx", "tflite") and req.format != source:
        return (
            f"{req.model.path} is {_ARTICLES[source]} {_NAMES[source]} file; "
            f"accelbench cannot convert {_NAMES[source]} to {_NAMES[req.format]}"
        )
    if req.precision not in PRECISIONS:
        return f"precision {req.precision} is not supported yet"
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
    """The cache key, or None while it cannot be known (the SavedModel it derives from is not built yet)."""
    input_hash = _input_hash(req)
    if input_hash is None:
        return None
    return _digest(
        {
            "input": input_hash,
            "format": req.format,
            "precision": req.precision,
            "versions": _versions(req.format),
            "options": _options(req.format),
        }
    )


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
    found = lookup(req)
    if found is not None:
        return found

    convert_to = _converter(req)
    key = artifact_key(req)
    assert key is not None  # the SavedModel it derives from exists by now

    def produce(out: Path) -> dict[str, Any]:
        import_tf()  # outside the timing: build_seconds should measure the conversion, not the import
        log.info("building %s %s of %s", req.format, req.precision, ref.describe())
        started = time.perf_counter()
        try:
            convert_to(out)
        except Exception as exc:
            what = f"{ref.describe()}: building {req.format} {req.precision} failed"
            message = f"{what}: {type(exc).__name__}: {exc}"
            raise ArtifactError(_shorten(message)) from exc
        seconds = time.perf_counter() - started
        log.info("built %s %s of %s in %.1f s", req.format, req.precision, ref.describe(), seconds)
        return {
            "request": request_to_json(req),
            "source_key": _input_hash(req),
            "versions": _versions(req.format),
            "options": _options(req.format),
            "build_seconds": round(seconds, 3),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    return cache.store(key, MODEL_FILES[req.format], produce)


def request_to_json(req: ArtifactRequest) -> dict[str, Any]:
    model: dict[str, Any] = {}
    if req.model.zoo is not None:
        model["zoo"] = req.model.zoo
    if req.model.path is not None:
        model["path"] = req.model.path
    if req.model.input_shape is not None:
        model["input_shape"] = list(req.model.input_shape)
    return {"model": model, "format": req.format, "precision": req.precision}


def request_from_json(data: Any) -> ArtifactRequest:
    """Inverse of request_to_json; malformed input raises ArtifactError naming what is wrong."""
    try:
        model = data["model"]
        shape = model.get("input_shape")
        ref = ModelRef(
            zoo=model.get("zoo"), path=model.get("path"), input_shape=None if shape is None else tuple(shape)
        )
        precision = str(data.get("precision", "fp32"))
        return ArtifactRequest(model=ref, format=str(data["format"]), precision=precision)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ArtifactError(f"malformed artefact request {data!r}: {type(exc).__name__}: {exc}") from exc


# --- internals -----------------------------------------------------------------------------------------


def _is_passthrough(req: ArtifactRequest) -> bool:
    """A user file already in the requested form is used in place: copying it would only cost disk."""
    source = req.model.source_format()
    return source == req.format and source in FORMATS and req.precision == "fp32"


def _input_hash(req: ArtifactRequest) -> str | None:
    """Hash of what the artefact is made from: recipe or user bytes for a SavedModel, else its SavedModel."""
    ref = req.model
    source = ref.source_format()
    if req.format == "savedmodel" and source == "zoo":
        return _recipe_hash(ref)
    if req.format != "savedmodel" and source in ("zoo", "keras"):
        meta = cache.read_meta(artifact_key(ArtifactRequest(ref, "savedmodel")))
        return None if meta is None else meta["content_sha256"]
    try:
        return cache.content_hash(Path(ref.path))
    except OSError as exc:
        raise ArtifactError(f"{ref.path}: cannot read: {exc.strerror or exc}") from exc


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
        import onnx

        try:
            onnx.checker.check_model(str(path))
        except Exception as exc:
            raise ArtifactError(_shorten(f"{ref.path}: not a valid ONNX model: {exc}")) from exc


def _converter(req: ArtifactRequest) -> Callable[[Path], None]:
    """The function that writes the artefact; a derived format first makes sure its SavedModel exists."""
    ref = req.model
    if req.format == "savedmodel":
        return lambda out: convert.export_savedmodel(_keras_model(ref), out)
    from_user = ref.source_format() == "savedmodel"
    savedmodel = Path(ref.path) if from_user else build(ArtifactRequest(ref, "savedmodel"))
    to_format = {"tflite": convert.savedmodel_to_tflite, "onnx": convert.savedmodel_to_onnx}[req.format]
    return lambda out: to_format(savedmodel, out, req.precision)


def _keras_model(ref: ModelRef) -> Any:
    if ref.zoo is not None:
        from model_zoo.builders import build_keras_model

        return build_keras_model(ref.zoo, ref.shape)
    return convert.load_keras_file(Path(ref.path))


def _shorten(message: str) -> str:
    """Converter errors can run to pages of MLIR dumps; keep the start (the cause) and the end (the op)."""
    if len(message) <= _MAX_MESSAGE:
        return message
    return message[: _MAX_MESSAGE - 800] + "\n…\n" + message[-700:]
