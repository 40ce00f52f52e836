"""Writes gpu_probe.tflite: the tiny model tflite_gpu compiles to learn whether a GPU accelerator starts here.

One 3x3 convolution and a ReLU on an 8x8x1 input, fixed batch 1 (about 1 kB). Committed, so availability needs
no TensorFlow; rerun this script (`python backends/data/make_gpu_probe.py`) only to change it.
"""

from __future__ import annotations

from pathlib import Path

if __name__ == "__main__":
    from model_zoo.tf_env import import_tf

    tf = import_tf()
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1), batch_size=1), keras.layers.Conv2D(4, 3, activation="relu")])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    out = Path(__file__).with_name("gpu_probe.tflite")
    out.write_bytes(converter.convert())
    print(f"{out}: {out.stat().st_size} bytes")
