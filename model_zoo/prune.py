"""Magnitude pruning with tensorflow-model-optimization, run as `python -m model_zoo.prune` in its own process.

Why a process of its own: tfmot 0.8.1 prunes legacy Keras (`tf_keras`) models only, and picks that Keras
through `TF_USE_LEGACY_KERAS=1`, which must be set before TensorFlow is first imported. The zoo builds its
models with Keras 3 in the builder process, where TensorFlow is long imported; so the builder sends this
module a JSON spec on stdin and gets back a pruned SavedModel plus a JSON report (a file named in the spec).

Where the weights come from, so that the pruned model derives from THE SAME dense weights as the unpruned
artefacts:

- zoo models: `model_zoo.builders` builds the same architecture with `tf_keras`, and the variables of the
  cached dense SavedModel (the one every unpruned TFLite / ONNX file was converted from) are loaded into it;
- a user's .keras file: Keras 3 loads it here too, and its graph is replayed layer by layer with the
  equivalent `tf_keras` layers (built-in Keras layers only), each receiving the Keras 3 layer's weights.

Either way the twin's outputs must match the dense model's on probe data before anything is pruned.

Then `prune_low_magnitude` wraps the layers that can be pruned (Conv / Dense / Embedding / attention
kernels: tfmot's registry; for m:n sparsity only Dense and Conv2D kernels whose input-channel count is a
multiple of n, the dimension the m:n groups run along). A model with a training set (digits_cnn) is
fine-tuned on it with `UpdatePruningStep`; any other model gets the masks applied once to its dense weights,
leaving every kept weight exactly as it was. `strip_pruning` removes the wrappers before export.

Only the compression parsing and the subprocess launcher live at module level: the builder imports this
module, and TensorFlow / tfmot are imported inside `main`.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from model_zoo.builders import construct_architecture
from model_zoo.catalog import CATALOG
from model_zoo.datasets import load_dataset
from model_zoo.errors import ArtifactError
from model_zoo.inputs import InputError, InputLayout, TensorSpec, make_feeds
from model_zoo.requests import Compression, parse_compression
from model_zoo.tf_env import import_tf

log = logging.getLogger("accelbench.zoo")

# Part of the cache key of every pruned artefact: bump it whenever the procedure below changes.
PRUNE_RECIPE = 1
FINE_TUNE_EPOCHS = 10
FINE_TUNE_LEARNING_RATE = 1e-3
FINE_TUNE_BATCH = 32
PROBE_SAMPLES = 16
# The twin must reproduce the dense model (relative to the largest output); float32 kernels may differ
# by summation order only.
TWIN_TOLERANCE = 1e-4
PRUNE_TIMEOUT_S = 3600.0
_ERROR_MARK = "model_zoo.prune: error: "


def compression_recipe(compression: Compression) -> dict[str, Any]:
    """What the cache key must cover: the target and everything in the procedure that shapes the result."""
    return {
        "method": "magnitude",
        "target": list(compression.m_by_n) if compression.m_by_n else compression.fraction,
        "recipe": PRUNE_RECIPE,
        "fine_tune": {
            "epochs": FINE_TUNE_EPOCHS,
            "learning_rate": FINE_TUNE_LEARNING_RATE,
            "batch": FINE_TUNE_BATCH,
        },
    }


def prune_in_subprocess(spec: dict[str, Any], out: Path) -> dict[str, Any]:
    """Run `python -m model_zoo.prune` on `spec`; it writes the pruned SavedModel at `out`; return its report."""
    package_root = str(Path(__file__).resolve().parents[1])
    env = {
        **os.environ,
        "TF_USE_LEGACY_KERAS": "1",
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"),
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
    }
    with tempfile.TemporaryDirectory(prefix="accelbench-prune-") as tmp:
        report = Path(tmp) / "report.json"
        payload = json.dumps({**spec, "out": str(out), "report": str(report)})
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "model_zoo.prune"],
                input=payload,
                capture_output=True,
                text=True,
                env=env,
                timeout=PRUNE_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"pruning did not finish within {PRUNE_TIMEOUT_S:.0f} s") from exc
        if proc.returncode != 0 or not report.is_file():
            lines = proc.stderr.strip().splitlines()
            marked = [line[len(_ERROR_MARK) :] for line in lines if line.startswith(_ERROR_MARK)]
            detail = marked[-1] if marked else "\n".join(lines[-5:])
            raise RuntimeError(f"pruning failed (exit {proc.returncode}): {detail}")
        return json.loads(report.read_text())


# --- the subprocess ------------------------------------------------------------------------------------


def main() -> int:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"  # before TensorFlow's first import, which happens below
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(name)s: %(message)s")
    try:
        spec = json.loads(sys.stdin.read())
        report = prune(spec)
        Path(spec["report"]).write_text(json.dumps(report, indent=2))
    except Exception as exc:
        traceback.print_exc()
        print(f"{_ERROR_MARK}{type(exc).__name__}: {exc}".replace("\n", " "), file=sys.stderr)
        return 1
    return 0


def prune(spec: dict[str, Any]) -> dict[str, Any]:
    """Build the tf_keras twin, check it, prune it, strip it, export it; return the report for meta.json."""
    tf = import_tf()
    import tensorflow_model_optimization as tfmot

    compression = parse_compression(spec["compression"])
    if compression is None:
        raise ValueError("nothing to do: compression is 'none'")
    if "zoo" in spec:
        twin, probe, reference, source = _zoo_twin(spec)
    else:
        twin, probe, reference, source = _keras_file_twin(Path(spec["keras_file"]))
    twin_error = _max_abs_diff(_predict(twin, probe), reference)
    # Relative to the outputs' size: an untrained classifier's softmax is ~1/classes everywhere, and an
    # absolute tolerance would let a wrong weight through there.
    scale = max(float(np.abs(r).max()) for r in reference) or 1.0
    if not twin_error <= TWIN_TOLERANCE * scale:
        raise ValueError(
            f"the tf_keras twin does not reproduce the dense model (max abs error {twin_error:.3g}); "
            "its weights did not transfer, so pruning it would not prune this model"
        )
    dense = {id(w): w.numpy().copy() for w in twin.weights}

    selected = _selector(compression)
    schedule_frequency = 1
    data = _training_data(spec)
    if data is not None:
        schedule_frequency = math.ceil(len(data[0]) / FINE_TUNE_BATCH)  # masks recomputed once per epoch

    class Selected(tfmot.sparsity.keras.PruningPolicy):
        """Wrap only the layers `selected` accepts; leave every other layer (and its weights) untouched."""

        def allow_pruning(self, layer: Any) -> bool:
            return selected(layer)

        def ensure_model_supports_pruning(self, model: Any) -> None:
            return None

    schedule = tfmot.sparsity.keras.ConstantSparsity(
        compression.fraction if compression.fraction is not None else 0.5, begin_step=0, frequency=schedule_frequency
    )
    # prune_low_magnitude wraps the twin's own layer objects: the twin is pruned too, which is fine here
    # because it exists for nothing else (the dense model it mirrors lives on in the cache, untouched).
    pruned = tfmot.sparsity.keras.prune_low_magnitude(
        twin, pruning_schedule=schedule, sparsity_m_by_n=compression.m_by_n, pruning_policy=Selected()
    )
    wrappers = _wrappers(pruned)
    if not wrappers:
        raise ValueError(f"{source} has no layer that {compression.canonical} can prune")

    if data is not None:
        fine_tune = _fine_tune(pruned, data, tfmot, tf)
        masks = (
            "set at the first fine-tuning step, kept while fine-tuning with UpdatePruningStep"
            if compression.m_by_n
            else "recomputed every epoch while fine-tuning with UpdatePruningStep"
        )
    else:
        fine_tune = None
        for wrapper in wrappers:  # one mask update at step 1, then weights *= mask: nothing is trained
            wrapper.pruning_step.assign(1)
            wrapper.pruning_obj.conditional_mask_update()
            wrapper.pruning_obj.weight_mask_op()
        masks = "applied once to the dense weights (no training data, nothing trained)"

    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    pruned_weights = [
        (wrapper.layer.name, weight) for wrapper in wrappers for weight, _mask, _t in wrapper.pruning_vars
    ]
    report = _sparsity_report(stripped, pruned_weights, compression)
    if data is None:
        report["kept_weights_unchanged"] = all(
            bool(np.all((w.numpy() == dense[id(w)]) | (w.numpy() == 0))) for w in stripped.weights if id(w) in dense
        )
    report.update(
        {
            "method": "magnitude pruning, tensorflow-model-optimization",
            "target": compression.canonical.removeprefix("prune:"),
            "weights_from": source,
            "twin_max_abs_error": twin_error,
            "masks": masks,
            "fine_tuned": fine_tune is not None,
            "fine_tune": fine_tune,
            "max_abs_diff_vs_dense": _max_abs_diff(_predict(stripped, probe), reference),
        }
    )
    stripped.export(spec["out"])  # Keras' own export: a serving signature with a dynamic batch dimension
    return report


def _zoo_twin(spec: dict[str, Any]) -> tuple[Any, list[Any], list[Any], str]:
    """The zoo architecture in tf_keras with the cached dense SavedModel's variables loaded into it."""
    import tf_keras

    tf = import_tf()
    name, shape, dense_dir = spec["zoo"], tuple(spec["input_shape"]), spec["dense_savedmodel"]
    twin = construct_architecture(name, shape, tf_keras)
    loaded = tf.saved_model.load(dense_dir)
    # The Keras 3 export tracks the model's variables in the model's order: layer by layer, each layer's
    # own trainable then non-trainable variables, then its sublayers'; tf_keras lists a layer's weights the
    # same way, so walking the twin's layers gives the same sequence. Shapes and, below, outputs confirm it.
    # Keras 3 layers that draw random numbers (Dropout) keep their generator's state as a variable; it is
    # no weight, and tf_keras has no such variable.
    sources = [v for v in loaded.variables if _leaf(v.name) != "seed_generator_state"]
    targets = [w for layer in twin.layers for w in layer.weights]
    if [(_leaf(v.name), tuple(v.shape)) for v in sources] != [(_leaf(w.name), tuple(w.shape)) for w in targets]:
        raise ValueError(
            f"the tf_keras twin of {name} has {len(targets)} weights, the dense SavedModel {len(sources)}, "
            "or their names or shapes differ: the builder and the cached model disagree"
        )
    for target, source in zip(targets, sources, strict=True):
        target.assign(source.numpy())
    probe = _probe(name, twin)
    serve = loaded.signatures["serving_default"]
    _, kwargs = serve.structured_input_signature
    names = sorted(kwargs)
    if len(names) == 1:
        feeds = {names[0]: tf.constant(probe[0])}
    else:
        feeds = {n: tf.constant(x) for n, x in zip([t.name.split(":")[0] for t in twin.inputs], probe, strict=True)}
    outputs = serve(**feeds)
    reference = [outputs[k].numpy() for k in sorted(outputs, key=_output_order)]
    return twin, probe, reference, f"dense SavedModel {dense_dir}"


def _keras_file_twin(path: Path) -> tuple[Any, list[Any], list[Any], str]:
    """A user's Keras 3 model replayed with tf_keras layers: same graph, same layer configs, same weights."""
    import keras
    import tf_keras

    model = keras.saving.load_model(path, compile=False)
    graph = model._functional if isinstance(model, keras.Sequential) else model
    if graph is None or not hasattr(graph, "_run_through_graph"):
        raise ValueError(
            f"{path}: a subclassed Keras model cannot be rebuilt for pruning; save a Sequential or functional model"
        )
    pairs: dict[int, tuple[Any, Any]] = {}

    def legacy(layer: Any) -> Any:
        if id(layer) not in pairs:
            pairs[id(layer)] = (layer, _legacy_layer(layer, path))
        return pairs[id(layer)][1]

    inputs = [tf_keras.Input(batch_shape=tuple(t.shape), dtype=t.dtype, name=t.name) for t in graph.inputs]
    # Keras' own graph walk (the one Functional.call uses), with every layer swapped for its tf_keras twin.
    outputs = graph._run_through_graph(inputs, operation_fn=legacy)
    twin = tf_keras.Model(inputs, outputs, name=f"{model.name}_tf_keras")
    for layer, twin_layer in pairs.values():
        twin_layer.set_weights(layer.get_weights())
    probe = _random_probe(graph.inputs, None, str(path))
    reference = [np.asarray(y) for y in _as_list(model(probe if len(probe) > 1 else probe[0], training=False))]
    return twin, probe, reference, f"Keras file {path}"


def _legacy_layer(layer: Any, path: Path) -> Any:
    """The tf_keras layer of the same class and configuration as a built-in Keras 3 layer."""
    import keras
    import tf_keras

    cls_name = type(layer).__name__
    legacy_cls = getattr(tf_keras.layers, cls_name, None)
    builtin = type(layer).__module__.startswith("keras.src.layers")
    if isinstance(layer, keras.Model) or not builtin or legacy_cls is None:
        raise ValueError(
            f"{path}: layer {layer.name!r} ({cls_name}) has no tf_keras equivalent, so the model cannot be pruned "
            "with tensorflow-model-optimization; only built-in Keras layers (no nested or custom ones) can"
        )
    config = dict(layer.get_config())
    if isinstance(config.get("dtype"), dict):  # a Keras 3 DTypePolicy
        config["dtype"] = config["dtype"].get("config", {}).get("name", "float32")
    # Initializers, regularizers and constraints only shape training, and a user model is never trained here
    # (its weights are copied, then masked); their Keras 3 configs also carry options tf_keras refuses.
    for key in [k for k in config if k.endswith(("_initializer", "_regularizer", "_constraint"))]:
        config.pop(key)
    accepted = set(inspect.signature(legacy_cls.__init__).parameters) | {"name", "dtype", "trainable"}
    dropped = sorted(k for k in config if k not in accepted)
    for key in dropped:  # Keras 3 only options (lora, quantization…); the output check catches any that mattered
        config.pop(key)
    if dropped:
        log.info("%s: tf_keras %s takes no %s; left out", path, cls_name, ", ".join(dropped))
    return legacy_cls.from_config(config)


def _probe(name: str, twin: Any) -> list[Any]:
    """Inputs to compare the twin with the dense model: training data if the model has some, else random."""
    zoo = CATALOG[name]
    if zoo.dataset is not None:
        return [load_dataset(zoo.dataset).x_train[:PROBE_SAMPLES].copy()]
    return _random_probe(twin.inputs, zoo.input_range, f"zoo model {name}")


def _random_probe(inputs: Any, value_range: tuple[float, float] | None, what: str) -> list[np.ndarray]:
    """PROBE_SAMPLES seeded samples per Keras input (batch first), made as every other input is made
    (model_zoo.inputs): the zoo's value range, else floats in [0, 1) and integers in {0, 1}."""
    declared = [TensorSpec(t.name, tuple(t.shape), np.dtype(getattr(t.dtype, "name", t.dtype)).name) for t in inputs]
    try:
        return make_feeds(InputLayout(value_range=value_range).plan(declared, what), PROBE_SAMPLES, seed=0)
    except InputError as error:
        raise ArtifactError(f"{what}: {error}") from None


def _training_data(spec: dict[str, Any]) -> tuple[Any, Any] | None:
    dataset = CATALOG[spec["zoo"]].dataset if "zoo" in spec else None
    if dataset is None:
        return None
    split = load_dataset(dataset)
    return split.x_train, split.y_train


def _fine_tune(pruned: Any, data: tuple[Any, Any], tfmot: Any, tf: Any) -> dict[str, Any]:
    """Train the wrapped model on the training split so that it recovers from the masks; deterministic."""
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()  # this process builds nothing else
    pruned.compile(
        optimizer=tf_keras.optimizers.Adam(FINE_TUNE_LEARNING_RATE),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    x, y = data
    pruned.fit(
        x,
        y,
        epochs=FINE_TUNE_EPOCHS,
        batch_size=FINE_TUNE_BATCH,
        verbose=0,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
    )
    return {
        "split": "train",
        "samples": len(x),
        "epochs": FINE_TUNE_EPOCHS,
        "batch": FINE_TUNE_BATCH,
        "optimizer": f"adam {FINE_TUNE_LEARNING_RATE:g}",
    }


def _selector(compression: Compression) -> Any:
    """Which layers to wrap. Fractions: every layer tfmot knows how to prune that has a kernel to prune.

    m:n: Dense and Conv2D only, and only when the input channels (the axis tfmot's m:n groups run along, the
    matmul's reduction axis that sparse tensor cores exploit) divide into groups of n; a first convolution
    over one input channel has no such group and stays dense.
    """
    import tf_keras
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry

    def has_kernel(layer: Any) -> bool:
        if hasattr(layer, "get_prunable_weights"):
            return True
        if not PruneRegistry.supports(layer):
            return False
        try:
            return bool(PruneRegistry._weight_names(layer))
        except KeyError:  # recurrent layers are listed through their cells
            return True

    def select(layer: Any) -> bool:
        if not has_kernel(layer):
            return False
        if compression.m_by_n is None:
            return True
        n = compression.m_by_n[1]
        kernel = getattr(layer, "kernel", None)
        return (
            type(layer) in (tf_keras.layers.Dense, tf_keras.layers.Conv2D)
            and kernel is not None
            and len(kernel.shape) in (2, 4)
            and kernel.shape[-2] % n == 0
        )

    return select


def _wrappers(model: Any) -> list[Any]:
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import collect_prunable_layers

    return collect_prunable_layers(model)


def _sparsity_report(stripped: Any, pruned: list[tuple[str, Any]], compression: Compression) -> dict[str, Any]:
    layers = []
    zeros = total = 0
    for layer_name, weight in pruned:
        value = weight.numpy()
        layer_zeros = int(np.count_nonzero(value == 0))
        zeros, total = zeros + layer_zeros, total + value.size
        entry = {
            "layer": layer_name,
            "weight": weight.name,
            "shape": list(value.shape),
            "sparsity": layer_zeros / value.size,
        }
        if compression.m_by_n is not None:
            entry["m_by_n_ok"] = m_by_n_ok(value, compression.m_by_n)
        layers.append(entry)
    every = [w.numpy() for w in stripped.weights]
    all_zeros = sum(int(np.count_nonzero(v == 0)) for v in every)
    all_total = sum(v.size for v in every)
    report: dict[str, Any] = {
        "sparsity": {"pruned_kernels": zeros / total, "all_weights": all_zeros / all_total},
        "pruned_layers": layers,
        "pruned_parameters": total,
        "parameters": all_total,
    }
    if compression.m_by_n is not None:
        report["m_by_n_ok"] = all(entry["m_by_n_ok"] for entry in layers)
    return report


def m_by_n_ok(kernel: Any, m_by_n: tuple[int, int]) -> bool:
    """True when every group of n consecutive input-channel weights holds at least m zeros.

    Keras kernels keep input channels on the second-to-last axis (Dense: [in, out]; Conv2D: [h, w, in, out]);
    this is tfmot's m:n layout, and TFLite's and TensorRT's.
    """
    m, n = m_by_n
    moved = np.moveaxis(np.asarray(kernel), -2, -1)  # [..., in]
    rows = moved.reshape(-1, moved.shape[-1])
    whole = rows.shape[1] - rows.shape[1] % n
    groups = rows[:, :whole].reshape(rows.shape[0], -1, n)
    return bool(np.all(np.count_nonzero(groups == 0, axis=-1) >= m))


def _predict(model: Any, inputs: list[Any]) -> list[Any]:
    outputs = model(inputs if len(inputs) > 1 else inputs[0], training=False)
    return [np.asarray(y) for y in _as_list(outputs)]


def _as_list(outputs: Any) -> list[Any]:
    if isinstance(outputs, dict):
        return [outputs[k] for k in sorted(outputs)]
    if isinstance(outputs, list | tuple):
        return list(outputs)
    return [outputs]


def _leaf(name: str) -> str:
    """A variable's own name without its layer path: "block_1_BN/moving_mean:0" -> "moving_mean".

    Layer names differ between the two Kerases (automatic names get per-process suffixes); the leaf names
    do not, and they tell apart same-shaped weights such as a BatchNormalization's gamma and beta.
    """
    leaf = name.rsplit("/", 1)[-1].split(":", 1)[0]
    return _LEAF_ALIASES.get(leaf, leaf)


# Keras 3 calls a DepthwiseConv2D's weight "kernel"; tf_keras calls it "depthwise_kernel".
_LEAF_ALIASES = {"depthwise_kernel": "kernel"}


def _output_order(key: str) -> tuple[int, str]:
    """Keras 3 exports outputs as output_0, output_1, …, output_10: order them by number, not as text."""
    suffix = key.rsplit("_", 1)[-1]
    return (int(suffix) if suffix.isdigit() else 0, key)


def _max_abs_diff(a: list[Any], b: list[Any]) -> float:
    if len(a) != len(b):
        return math.inf
    return max(
        float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))) for x, y in zip(a, b, strict=True)
    )


if __name__ == "__main__":
    sys.exit(main())
