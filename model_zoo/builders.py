"""Code that turns a catalog entry into a Keras model ("construct": in this project "build" means producing an
artefact, model_zoo.build).

Every TensorFlow/Keras import sits inside a function: importing this module must stay free, only calling
it pays. A change to any builder must bump that model's `recipe_version` in the catalog, otherwise the
cache keeps serving artefacts of the old recipe.

The architectures take the Keras module as an argument: Keras 3 (`keras`) constructs the zoo model, and the
pruning subprocess (`model_zoo.prune`) constructs the very same architecture with legacy Keras (`tf_keras`),
which is the only Keras that tensorflow-model-optimization can prune, then loads the zoo model's weights
into it. One definition for both keeps the twin identical by construction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from model_zoo.catalog import CATALOG
from model_zoo.datasets import load_dataset
from model_zoo.tf_env import import_tf

if TYPE_CHECKING:
    import keras

VOCAB = 1000
D_MODEL = 64
HEADS = 4
FFN = 128
BLOCKS = 2
DIGITS_EPOCHS = 15


def construct_keras_model(name: str, input_shape: tuple[int, ...]) -> keras.Model:
    """Build (and for `digits_cnn` train) the model, seeded so that a rebuild gives the same weights."""
    import_tf()
    import keras

    keras.utils.set_random_seed(CATALOG[name].seed)
    model = _ARCHITECTURES[name](input_shape, keras)
    if name in _TRAINERS:
        _TRAINERS[name](model)
    return model


def construct_architecture(name: str, input_shape: tuple[int, ...], keras_module: ModuleType) -> Any:
    """The untrained architecture of a zoo model, in the given Keras (`keras` or `tf_keras`).

    For a twin whose weights are then loaded from the zoo model: the seed is set anyway so that a twin is
    reproducible, but its initial weights do not matter.
    """
    keras_module.utils.set_random_seed(CATALOG[name].seed)
    return _ARCHITECTURES[name](input_shape, keras_module)


def _digits_cnn(input_shape: tuple[int, ...], keras: ModuleType) -> Any:
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ],
        name="digits_cnn",
    )


def _train_digits_cnn(model: keras.Model) -> None:
    data = load_dataset("digits")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    with _op_determinism():
        model.fit(data.x_train, data.y_train, epochs=DIGITS_EPOCHS, batch_size=32, verbose=0)


@contextlib.contextmanager
def _op_determinism() -> Iterator[None]:
    """Deterministic kernels while training, so a rebuild gives the same weights; then the caller's setting.

    Restoring matters when the builder runs inside a longer-lived process (a test session): determinism
    slows some ops and makes others raise. TensorFlow only exposes the switch-off privately; without it, the
    setting simply stays on.
    """
    import tensorflow as tf

    try:
        from tensorflow.python.framework import config as private_config

        restore = not private_config.is_op_determinism_enabled()
    except (ImportError, AttributeError):
        private_config, restore = None, False
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if restore:
            private_config.disable_op_determinism()


BATCHNORM_SAMPLES = 16


def _estimate_batchnorm_statistics(model: keras.Model) -> None:
    """Give an untrained network the BatchNorm statistics of its own activations (data-free BN re-estimation).

    Fresh Keras applications carry moving means of 0 and variances of 1, which match no layer's real
    activations: through 50 layers the signal dies, and MobileNetV2 and EfficientNetB0 then answer exactly
    1/1000 for every class on every input. Every conversion reproduces a constant perfectly, so fidelity and
    top-1 agreement said nothing (cosine 1.0, max error 0 at fp16). One forward pass in training mode with
    momentum 0 sets each layer's statistics to those of its input on seeded random images in the zoo's input
    range, normalised layer by layer as in training; afterwards the outputs differ from input to input.
    """
    batchnorms = [layer for layer in model.layers if "BatchNormalization" in type(layer).__name__]
    momenta = [layer.momentum for layer in batchnorms]
    shape = tuple(model.inputs[0].shape[1:])
    images = np.random.default_rng(0).random((BATCHNORM_SAMPLES, *shape), dtype=np.float32)
    for layer in batchnorms:
        layer.momentum = 0.0
    try:
        model(images, training=True)
    finally:
        for layer, momentum in zip(batchnorms, momenta, strict=True):
            layer.momentum = momentum


def _keras_application(cls: str) -> Callable[[tuple[int, ...], ModuleType], Any]:
    def construct(input_shape: tuple[int, ...], keras: ModuleType) -> Any:
        return getattr(keras.applications, cls)(weights=None, input_shape=input_shape)

    return construct


def _tiny_transformer(input_shape: tuple[int, ...], keras: ModuleType) -> Any:
    layers = keras.layers

    class PositionEmbedding(layers.Layer):
        """A learned (seq_len, d_model) table added to the token embeddings: one ADD, no gather."""

        def build(self, shape: tuple[int | None, ...]) -> None:
            self.table = self.add_weight(shape=tuple(shape[1:]), initializer="uniform", name="table")

        def call(self, x):
            return x + self.table

    tokens = keras.Input(input_shape, dtype="int32", name="tokens")
    x = PositionEmbedding()(layers.Embedding(VOCAB, D_MODEL)(tokens))
    for _ in range(BLOCKS):
        attention = layers.MultiHeadAttention(num_heads=HEADS, key_dim=D_MODEL // HEADS)(x, x)
        x = layers.LayerNormalization(epsilon=1e-6)(x + attention)
        # relu, not Keras' default exact gelu: tf2onnx lowers that to Erfc, which ONNX has no op for.
        ffn = layers.Dense(D_MODEL)(layers.Dense(FFN, activation="relu")(x))
        x = layers.LayerNormalization(epsilon=1e-6)(x + ffn)
    x = layers.GlobalAveragePooling1D()(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(tokens, outputs, name="tiny_transformer")


_ARCHITECTURES: dict[str, Callable[[tuple[int, ...], ModuleType], Any]] = {
    "digits_cnn": _digits_cnn,
    "mobilenet_v2": _keras_application("MobileNetV2"),
    "resnet50": _keras_application("ResNet50"),
    "efficientnet_b0": _keras_application("EfficientNetB0"),
    "tiny_transformer": _tiny_transformer,
}

# Models trained after construction (in Keras 3 only: the pruning twin receives the trained weights).
_TRAINERS: dict[str, Callable[[keras.Model], None]] = {
    "digits_cnn": _train_digits_cnn,
    "mobilenet_v2": _estimate_batchnorm_statistics,
    "resnet50": _estimate_batchnorm_statistics,
    "efficientnet_b0": _estimate_batchnorm_statistics,
}
