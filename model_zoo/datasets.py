"""Labelled data sets for task accuracy, from data that ships inside scikit-learn (no download, no TF).

The split is fixed (seeded, stratified) because two parties must agree on it without talking: the builder
that trains `digits_cnn` on `x_train`, and the accuracy check that later scores every backend on `x_test`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

DATASETS = ("digits",)


@dataclass(frozen=True)
class LabelledSplit:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_dataset(name: str) -> LabelledSplit:
    """Return the named split; arrays are read-only because the result is shared between callers."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return _digits()


@cache
def _digits() -> LabelledSplit:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # Pixels are 0..16 integers; NHWC float32 in [0, 1] is what every backend takes without a cast.
    x = (digits.images / 16.0).astype(np.float32)[..., np.newaxis]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    split = LabelledSplit(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    for array in (split.x_train, split.y_train, split.x_test, split.y_test):
        array.setflags(write=False)
    return split
