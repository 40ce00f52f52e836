"""A case: one (model, backend, precision, batch size, mode) measurement, and the model it names.

Plain dataclasses that travel as JSON to the worker process, which must start fast (no pydantic, no
TensorFlow there).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backends.registry import get_backend
from model_zoo.catalog import CATALOG
from model_zoo.errors import ArtifactError
from model_zoo.inputs import InputLayout
from model_zoo.requests import ArtifactRequest, Calibration, ModelRef, compression_label


@dataclass(frozen=True)
class ModelSpec:
    """What a scenario said about a model: a zoo name with options, or a user's file (absolute path)."""

    zoo: str | None = None
    path: str | None = None
    input_shape: tuple[int, ...] | None = None
    # a user file's inputs by name, as model_zoo.inputs.InputDescription JSON; canonical (sorted) text, so that
    # the spec stays hashable and two equal descriptions compare equal
    inputs: str | None = None
    # what fills the inputs (scenario's model-level data:); None: "auto" for a user's file, noise for the zoo
    data: str | None = None
    # outputs the scenario declares class scores (true) or not (false), as canonical JSON {name: bool}
    class_outputs: str | None = None

    @classmethod
    def from_entry(cls, entry: Any, base_dir: Path) -> ModelSpec:
        """Relative paths are relative to the scenario file, so a scenario and its models travel together."""
        path = None
        if entry.path is not None:
            path = str((base_dir / Path(entry.path).expanduser()).resolve())
        shape = tuple(entry.input_shape) if entry.input_shape else None
        inputs = None
        if getattr(entry, "inputs", None):
            inputs = json.dumps({name: d.to_description() for name, d in entry.inputs.items()}, sort_keys=True)
        declared = {name: out.classes for name, out in (getattr(entry, "outputs", None) or {}).items()
                    if out.classes is not None}
        data = getattr(entry, "data", None)
        if data is not None and data.lower().endswith(".npz"):  # relative to the scenario, like model paths
            data = str((base_dir / Path(data).expanduser()).resolve())
        return cls(zoo=entry.name, path=path, input_shape=shape, inputs=inputs, data=data,
                   class_outputs=json.dumps(declared, sort_keys=True) if declared else None)

    def declared_classes(self) -> dict[str, bool]:
        """The outputs the scenario says hold class scores (true) or not (false)."""
        return json.loads(self.class_outputs) if self.class_outputs else {}

    def to_ref(self) -> ModelRef:
        """The zoo's reference. A user file's input_shape only fills dynamic dimensions at run time; it is not
        part of the artefact's identity."""
        return ModelRef(zoo=self.zoo, path=self.path, input_shape=self.input_shape if self.zoo else None)

    def input_hints(self) -> dict[str, Any]:
        """What makes the model's data (a model_zoo.inputs.InputLayout's JSON): the zoo's declared shape, dtype,
        value range and dataset, or a user file's input descriptions."""
        if self.zoo is None:
            return {"input_shape": self.input_shape, "inputs": json.loads(self.inputs) if self.inputs else None,
                    "data": self.data or "auto"}
        entry = CATALOG[self.zoo]
        return {**entry.layout_json(self.input_shape, self.data), "dataset": entry.dataset}


@dataclass
class Case:
    case_id: str
    scenario: str
    model: ModelSpec
    model_label: str
    backend: str
    backend_label: str
    backend_options: dict[str, Any]
    precision: str
    batch_size: int
    mode: str
    measure: dict[str, Any]
    skip_reason: str | None = None
    compression: str = "none"  # canonical: "none", "prune:0.5", "prune:2:4"
    calibration: dict[str, Any] = field(default_factory=dict)  # {"samples": N, "source": ...} for int8
    accuracy_budget: dict[str, Any] = field(default_factory=dict)  # AccuracyBudget fields that are set
    # the report's speed-up reference for this case: {"backend": label or name, "precision": ...}, or None: the
    # model's first fp32 case that ran (the report finds and names it)
    baseline: dict[str, Any] | None = None
    race: dict[str, Any] | None = None  # the model's race settings (scenario.schema.RaceSpec); None: not raced
    profile: dict[str, Any] | None = None  # {"runs": N} (scenario.schema.ProfileSpec); None: not profiled
    reference_batch: int = 1  # the batch the fp32 reference runs at: 1, or the one a user's file fixes
    budgets: list[dict[str, Any]] = field(default_factory=list)  # performance budgets (scenario.budgets)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Case:
        model = data["model"]
        shape = model.get("input_shape")
        spec = ModelSpec(zoo=model.get("zoo"), path=model.get("path"),
                         input_shape=tuple(shape) if shape else None, inputs=model.get("inputs"),
                         data=model.get("data"), class_outputs=model.get("class_outputs"))
        return cls(**{**data, "model": spec})

    def artifact_request(self) -> ArtifactRequest:
        """What the zoo must produce for this case: its backend's format, at its precision and compression."""
        backend = get_backend(self.backend)
        calibration = Calibration(**self.calibration) if self.calibration else Calibration()
        ref = self.model.to_ref()
        # a user's .tflite is used as it is; everything accelbench converts can carry the case's batch size
        batch = self.batch_size if backend.static_batch and _converted(ref) else None
        # what a user model's converted files were made with: int8 calibration data and fp16 / int8 check data
        # follow the input descriptions, so they are part of those artefacts' identity
        layout = ""
        if self.precision != "fp32" and (self.model.zoo is None or self.model.data):  # a zoo model's data: too
            layout = InputLayout.from_json(self.model.input_hints()).identity()
        return ArtifactRequest(ref, backend.artifact_format, self.precision, self.compression, calibration, batch,
                               layout)

    @property
    def keywords(self) -> set[str]:
        """Names ``-k`` matches against, besides the id: backend, precision, mode and model."""
        return {self.backend, self.backend_label, self.precision, self.mode, self.model_label,
                f"b{self.batch_size}", compression_label(self.compression)}


def _converted(ref: Any) -> bool:
    """Whether accelbench converts this model into its TFLite file (a user's .tflite is used as it is)."""
    try:
        return ref.source_format() != "tflite"
    except ArtifactError:  # an unreadable file type: unsupported_reason explains it
        return False
