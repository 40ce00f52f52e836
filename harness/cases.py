"""A case: one (model, backend, precision, batch size, mode) measurement, and the model it names.

Plain dataclasses that travel as JSON to the worker process, which must start fast (no pydantic, no
TensorFlow there).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ModelSpec:
    """What a scenario said about a model: a zoo name with options, or a user's file (absolute path)."""

    zoo: str | None = None
    path: str | None = None
    input_shape: tuple[int, ...] | None = None

    @classmethod
    def from_entry(cls, entry: Any, base_dir: Path) -> ModelSpec:
        """Relative paths are relative to the scenario file, so a scenario and its models travel together."""
        path = None
        if entry.path is not None:
            path = str((base_dir / Path(entry.path).expanduser()).resolve())
        shape = tuple(entry.input_shape) if entry.input_shape else None
        return cls(zoo=entry.name, path=path, input_shape=shape)

    def to_ref(self) -> Any:
        """The zoo's reference. A user file's input_shape only fills dynamic dimensions at run time; it is not
        part of the artefact's identity."""
        from model_zoo.artifacts import ModelRef

        return ModelRef(zoo=self.zoo, path=self.path, input_shape=self.input_shape if self.zoo else None)

    def input_hints(self) -> dict[str, Any]:
        """Shape, dtype and value range the zoo declares for the model's input (empty for user files)."""
        if self.zoo is None:
            return {"input_shape": self.input_shape}
        from model_zoo.catalog import CATALOG

        entry = CATALOG[self.zoo]
        return {"input_shape": self.input_shape or entry.input_shape, "input_dtype": entry.input_dtype,
                "input_range": entry.input_range, "dataset": entry.dataset}


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
    tags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Case:
        model = data["model"]
        shape = model.get("input_shape")
        spec = ModelSpec(zoo=model.get("zoo"), path=model.get("path"),
                         input_shape=tuple(shape) if shape else None)
        return cls(**{**data, "model": spec})

    @property
    def keywords(self) -> set[str]:
        """Names ``-k`` matches against, besides the id: backend, precision, mode and model."""
        return {self.backend, self.backend_label, self.precision, self.mode, self.model_label,
                f"b{self.batch_size}"}
