"""Representative image inputs: real photographs and document scans that ship inside package wheels.

Why: random noise does not exercise an image model. Shown noise, a real text-orientation classifier never
decides (its probabilities sit between 0.15 and 0.37), an OCR detector answers ~1e-7 everywhere, and static int8
calibrated on noise is calibrated for values that never occur. Real pictures fix all three, and these need no
network: scikit-image's wheel bundles a dozen that load offline (others in `skimage.data` are downloaded on first
use, and are not used here) and scikit-learn ships two more.

How a dozen pictures become a data set: the samples take the pictures in turn (in a shuffled order), each a crop of
35-100 % of the picture's area whose aspect ratio is the input's (jittered by up to ±20 %; for a text-line input,
three times as wide as high or more, a strip one to three lines of text high), a horizontal flip for photographs
(never for text), and is resized to the input's height and width (bilinear, anti-aliased when shrinking). All of it
from the generator the caller passes, so a seed gives the same samples in every process. Pixels are in [0, 1]; the
caller maps them to the input's range, normalisation and channel order (model_zoo.inputs).
"""

from __future__ import annotations

import functools
import math

import numpy as np

# skimage.data members bundled in scikit-image's wheel (0.26: checked offline), greyscale ones made RGB
PHOTOGRAPHS = ("astronaut", "camera", "cat", "chelsea", "coffee", "rocket", "coins", "clock", "hubble_deep_field",
               "immunohistochemistry")
SKLEARN_PHOTOGRAPHS = ("china.jpg", "flower.jpg")  # sklearn.datasets.load_sample_image
DOCUMENTS = ("page", "text")  # a scanned book page, text on a photographed sign
KINDS = ("images", "documents")
MIN_SIDE = 8  # an input smaller than this on a side is no picture
CROP_AREA = (0.35, 1.0)
ASPECT_JITTER = 0.2  # log-uniform, as a fraction
# An input three times as wide as high takes a line of text (an OCR recogniser, a text-direction classifier): its
# crops are 6-16 % of a document's height, one to three lines of the bundled scans, not a squeezed page.
TEXT_LINE_ASPECT = 3
TEXT_LINE_HEIGHT = (0.06, 0.16)


class ImagesUnavailable(RuntimeError):
    """scikit-image is not installed: the message says what to install, or to use data: noise."""


@functools.cache
def pictures(kind: str) -> tuple[np.ndarray, ...]:
    """The pictures of ``kind`` as read-only uint8 arrays of shape (H, W, 3), loaded once per process."""
    try:
        import skimage.data
    except ImportError:
        raise ImagesUnavailable("representative images need scikit-image (pip install scikit-image); or give the "
                                "model data: noise") from None
    names = DOCUMENTS if kind == "documents" else PHOTOGRAPHS
    loaded = [getattr(skimage.data, name)() for name in names]
    if kind != "documents":
        from sklearn.datasets import load_sample_image

        loaded += [load_sample_image(name) for name in SKLEARN_PHOTOGRAPHS]
    result = []
    for picture in loaded:
        rgb = np.repeat(picture[..., None], 3, axis=2) if picture.ndim == 2 else picture[..., :3]
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        rgb.setflags(write=False)
        result.append(rgb)
    return tuple(result)


def picture_order(rng: np.random.Generator, kind: str, samples: int) -> list[int]:
    """Which picture each of ``samples`` samples is cut from: every picture of ``kind`` in turn, in an order the
    generator shuffles, so any set of samples draws on every picture about equally.

    Why not a free choice per sample: with two document scans, 16 samples drawn freely split anywhere from 4/12
    to 12/4, and the int8 check's samples and the guard's differed that way: PP-OCR's recogniser scored 0.985 on
    one set and 0.968 on the other with the same file (the photographed sign is harder than the book page)."""
    count = len(pictures(kind))
    order = rng.permutation(count)
    return [int(order[i % count]) for i in range(samples)]


def draw(rng: np.random.Generator, kind: str, height: int, width: int, channels: int, which: int) -> np.ndarray:
    """One sample: a random crop of picture ``which`` of ``kind`` (see :func:`picture_order`), resized to (height,
    width, channels), float32 in [0, 1]. One channel is the luminance (ITU-R BT.601 weights)."""
    from skimage.transform import resize

    picture = pictures(kind)[which]
    rows, cols = picture.shape[:2]
    aspect = (width / height) * math.exp(rng.uniform(-ASPECT_JITTER, ASPECT_JITTER))
    if kind == "documents" and width >= TEXT_LINE_ASPECT * height:  # a line of text: one to three lines high
        crop_h = round(rng.uniform(*TEXT_LINE_HEIGHT) * rows)
    else:
        area = rng.uniform(*CROP_AREA) * rows * cols
        crop_h = round(min(rows, math.sqrt(area / aspect), cols / aspect))
    crop_w = round(min(cols, crop_h * aspect))
    crop_h, crop_w = max(crop_h, 1), max(crop_w, 1)
    top = int(rng.integers(rows - crop_h + 1))
    left = int(rng.integers(cols - crop_w + 1))
    crop = picture[top:top + crop_h, left:left + crop_w]
    if kind != "documents" and rng.random() < 0.5:
        crop = crop[:, ::-1]
    shrinking = crop_h > height or crop_w > width
    sample = resize(crop, (height, width), order=1, anti_aliasing=shrinking, preserve_range=True) / 255.0
    if channels == 1:
        sample = sample @ np.array([[0.299], [0.587], [0.114]])
    return np.clip(sample, 0.0, 1.0).astype(np.float32)
