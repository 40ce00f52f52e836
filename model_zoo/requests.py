"""What the zoo is asked for: a model reference, calibration settings, an artefact request, and the formats and
precisions there are. One small module, imported by the builders, the calibration code and the harness alike,
so that none of them needs another's internals (and `artifacts` and `calibration` no longer import each other).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from model_zoo.catalog import CATALOG
from model_zoo.errors import ArtifactError

FORMATS = ("savedmodel", "tflite", "onnx")
PRECISIONS = ("fp32", "fp16", "int8_dynamic", "int8")
SOURCE_SUFFIXES = {".onnx": "onnx", ".tflite": "tflite", ".keras": "keras", ".h5": "keras"}


@dataclass(frozen=True)
class Compression:
    """A parsed compression setting: a fraction of weights to zero, or an m:n pattern (m zeros in every n)."""

    fraction: float | None = None
    m_by_n: tuple[int, int] | None = None

    @property
    def canonical(self) -> str:
        if self.m_by_n is not None:
            return f"prune:{self.m_by_n[0]}:{self.m_by_n[1]}"
        return f"prune:{self.fraction!r}"


def compression_label(compression: str) -> str:
    """The id fragment of a compression: "prune:0.75" → "prune75", "prune:2:4" → "prune2of4", "none" → "dense"."""
    if compression == "none":
        return "dense"
    parts = compression.split(":")[1:]
    if len(parts) == 2:
        return f"prune{parts[0]}of{parts[1]}"
    return f"prune{float(parts[0]) * 100:g}"


def parse_compression(text: str) -> Compression | None:
    """None for "none"; a Compression for "prune:F" (0 < F < 1) or "prune:M:N" (0 < M < N); else ValueError."""
    if text == "none":
        return None
    expected = "expected 'none', 'prune:F' with a fraction 0 < F < 1, or 'prune:2:4'"
    if not isinstance(text, str) or not text.startswith("prune:"):
        raise ValueError(f"unknown compression {text!r}; {expected}")
    parts = text.split(":")[1:]
    try:
        if len(parts) == 1:
            fraction = float(parts[0])
            if not 0.0 < fraction < 1.0:  # also refuses nan
                raise ValueError
            return Compression(fraction=fraction)
        if len(parts) == 2:
            m, n = int(parts[0]), int(parts[1])
            if not 0 < m < n:
                raise ValueError
            return Compression(m_by_n=(m, n))
    except ValueError:
        pass
    raise ValueError(f"unknown compression {text!r}; {expected}")


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
        if path.suffix.lower() in SOURCE_SUFFIXES:
            return SOURCE_SUFFIXES[path.suffix.lower()]
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
class Calibration:
    """Where full-integer (int8) quantization takes its activation ranges from; see `model_zoo.calibration`.

    source: "dataset" (the model's training split; random for models without one), "random", or an absolute
    path to a .npz file with one array per model input (by input name, or in input order).
    """

    samples: int = 200
    source: str = "dataset"


@dataclass(frozen=True)
class ArtifactRequest:
    """Model M as format F at precision P, optionally pruned.

    format: "savedmodel" | "tflite" | "onnx". precision: "fp32" | "fp16" | "int8_dynamic" | "int8".
    compression: "none" | "prune:F" (zero a fraction F of the prunable weights, 0 < F < 1) | "prune:2:4".
    calibration matters for precision "int8" only, and is reset to its default for any other precision, so
    that requests for the same artefact compare (and serialise) equal. A fraction is written canonically
    ("prune:.5" becomes "prune:0.5") for the same reason.
    """

    model: ModelRef
    format: str
    precision: str = "fp32"
    compression: str = "none"
    calibration: Calibration = field(default_factory=Calibration)
    # A .tflite with this batch size baked in (None: a dynamic batch). GPU accelerators and most delegates need
    # static shapes, and a dynamic batch leaves computed shapes (Flatten) that they refuse.
    batch: int | None = None
    # A user model's input descriptions (model_zoo.inputs.InputLayout.identity()): calibration and the converters'
    # own fidelity checks make data from them, so they belong to fp16 / int8 artefacts' identity. "" for none.
    inputs: str = ""

    def __post_init__(self) -> None:
        if self.precision != "int8" and self.calibration != Calibration():
            object.__setattr__(self, "calibration", Calibration())
        try:
            parsed = parse_compression(self.compression)
        except ValueError:  # unsupported_reason explains it
            return
        if parsed is not None:
            object.__setattr__(self, "compression", parsed.canonical)
