"""The models accelbench can build from code, described as plain data.

Pure data on purpose: the harness imports this in light processes (pytest collection, LiteRT and ONNX
Runtime workers) that must never pay for a TensorFlow import. The builders live in `model_zoo.builders`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ZooModel:
    name: str
    input_shape: tuple[int, ...]  # default per-sample shape, without the batch dimension
    input_dtype: str  # "float32" or "int32"
    input_range: tuple[float, float] | None  # values random inputs must stay in; None = normal floats
    source: str
    dataset: str | None
    task: str
    description: str
    seed: int = 0
    # Part of the cache key: bump it whenever the model's builder changes, so stale artefacts are not reused.
    recipe_version: int = 1
    # Smallest accepted per-sample shape when the shape is a user option; None = the shape is fixed.
    min_input_shape: tuple[int, ...] | None = None

    def layout_json(self, shape: tuple[int, ...] | None = None, data: str | None = None) -> dict[str, Any]:
        """How data is made for this model (model_zoo.inputs.InputLayout's JSON): the one place that says it, for
        the scenario's cases (workers, the reference) and the build process (calibration, checks) alike. Its
        input shape (the catalog's, or ``shape``), value range and ``data`` (noise unless the scenario says)."""
        return {"input_shape": list(shape or self.input_shape), "input_range": self.input_range,
                "data": data or "noise"}

    def shape_problem(self, shape: tuple[int, ...]) -> str | None:
        """Say why a requested input shape cannot be built, before anyone spends time building it."""
        if shape == self.input_shape:
            return None
        if self.min_input_shape is None:
            return f"{self.name} has a fixed input shape {self.input_shape}; {shape} was asked for"
        if len(shape) != len(self.min_input_shape) or any(
            d < m for d, m in zip(shape, self.min_input_shape, strict=True)
        ):
            return (
                f"{self.name} accepts input shapes of rank {len(self.min_input_shape)} no smaller than "
                f"{self.min_input_shape}; {shape} was asked for"
            )
        return None


_IMAGE = (224, 224, 3)
_IMAGE_MIN = (32, 32, 1)  # Keras applications refuse sides under 32 pixels


def _keras_app(name: str, cls: str, description: str) -> ZooModel:
    return ZooModel(
        name=name,
        input_shape=_IMAGE,
        input_dtype="float32",
        input_range=None,
        source=f"keras.applications.{cls}(weights=None), seed 0, BatchNorm statistics from 16 random images",
        dataset=None,
        task="classification",
        description=description,
        min_input_shape=_IMAGE_MIN,
        recipe_version=2,  # 2: BatchNorm statistics re-estimated (recipe 1 answered a constant)
    )


CATALOG: dict[str, ZooModel] = {
    m.name: m
    for m in (
        ZooModel(
            name="digits_cnn",
            input_shape=(8, 8, 1),
            input_dtype="float32",
            input_range=(0.0, 1.0),
            source="two Conv2D blocks + Dense, trained on scikit-learn load_digits (75 % split), seed 0",
            dataset="digits",
            task="classification",
            description="Tiny trained CNN: the one zoo model with a labelled test set, for task accuracy.",
        ),
        _keras_app("mobilenet_v2", "MobileNetV2", "Depthwise-separable mobile CNN, 3.5 M parameters."),
        _keras_app("resnet50", "ResNet50", "Classic residual CNN, 25.6 M parameters: heavy dense convs."),
        _keras_app("efficientnet_b0", "EfficientNetB0", "Compound-scaled CNN with squeeze-excite, 5.3 M."),
        ZooModel(
            name="tiny_transformer",
            input_shape=(64,),
            input_dtype="int32",
            input_range=(0, 1000),
            source="Keras encoder: token + position embedding, 2 blocks (4 heads, d_model 64), seed 0",
            dataset=None,
            task="classification",
            description="Small untrained transformer classifier: attention, LayerNorm, gathers; no convs.",
            min_input_shape=(1,),
        ),
    )
}
