"""model_zoo: catalog, datasets, real conversions, the artefact cache and `python -m model_zoo.build`.

Everything runs for real (TensorFlow, LiteRT, ONNX Runtime); the expensive builds happen once per session.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from ai_edge_litert.interpreter import Interpreter

from model_zoo import cache
from model_zoo.artifacts import (
    ArtifactError,
    ArtifactRequest,
    ModelRef,
    artifact_key,
    build,
    cache_dir,
    lookup,
    request_from_json,
    request_to_json,
    unsupported_reason,
)
from model_zoo.catalog import CATALOG
from model_zoo.datasets import _digits, load_dataset
from tests.model_runners import run_onnx, run_savedmodel, run_tflite

REPO = Path(__file__).resolve().parents[1]
DIGITS = ModelRef(zoo="digits_cnn")
FORMATS = ("savedmodel", "tflite", "onnx")


# --- helpers ---------------------------------------------------------------------------------------------


def assert_dynamic_batch(tflite: Path, onnx_file: Path) -> None:
    assert Interpreter(model_path=str(tflite)).get_input_details()[0]["shape_signature"][0] == -1
    first_dim = onnx.load(str(onnx_file)).graph.input[0].type.tensor_type.shape.dim[0]
    assert first_dim.dim_param and not first_dim.HasField("dim_value")


def build_cli(requests: object, cache_root: Path) -> subprocess.Popen:
    """Start `python -m model_zoo.build` with its whole stdin ready, so that two can run side by side."""
    cache_root.mkdir(parents=True, exist_ok=True)
    stdin = cache_root.parent / f"requests-{os.urandom(4).hex()}.json"
    stdin.write_text(json.dumps(requests))
    env = {**os.environ, "ACCELBENCH_CACHE_DIR": str(cache_root), "PYTHONPATH": str(REPO)}
    with open(stdin) as f:
        return subprocess.Popen(
            [sys.executable, "-m", "model_zoo.build"],
            stdin=f,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )


# --- fixtures --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("zoo-cache")


@pytest.fixture
def zoo_cache(cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ACCELBENCH_CACHE_DIR", str(cache_root))
    return cache_root


@pytest.fixture(scope="session")
def digits_artifacts(cache_root: Path) -> dict[str, Path]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ACCELBENCH_CACHE_DIR", str(cache_root))
        return {fmt: build(ArtifactRequest(DIGITS, fmt)) for fmt in FORMATS}


# --- catalog and datasets (no TensorFlow) ------------------------------------------------------------------


def test_catalog_lists_the_five_models_with_their_inputs() -> None:
    assert set(CATALOG) == {"digits_cnn", "mobilenet_v2", "resnet50", "efficientnet_b0", "tiny_transformer"}
    assert CATALOG["digits_cnn"].input_shape == (8, 8, 1)
    assert CATALOG["digits_cnn"].dataset == "digits"
    for name in ("mobilenet_v2", "resnet50", "efficientnet_b0"):
        assert CATALOG[name].input_shape == (224, 224, 3)
        assert CATALOG[name].input_dtype == "float32"
    transformer = CATALOG["tiny_transformer"]
    assert (transformer.input_shape, transformer.input_dtype, transformer.input_range) == (
        (64,),
        "int32",
        (0, 1000),
    )
    assert all(m.task == "classification" and m.source and m.description for m in CATALOG.values())


def test_light_modules_do_not_import_tensorflow() -> None:
    code = (
        "import sys, model_zoo.artifacts, model_zoo.catalog, model_zoo.datasets, model_zoo.build\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx')]\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_digits_split_is_deterministic_and_disjoint() -> None:
    split = load_dataset("digits")
    again = _digits.__wrapped__()  # a fresh computation, not the memoised object
    for name in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(split, name), getattr(again, name))
    assert split.x_train.shape[1:] == (8, 8, 1) and split.x_train.dtype == np.float32
    assert len(split.x_train) + len(split.x_test) == 1797 and len(split.x_test) == 450
    assert split.x_train.min() >= 0.0 and split.x_train.max() <= 1.0
    train_rows = {row.tobytes() for row in split.x_train}
    assert not any(row.tobytes() in train_rows for row in split.x_test)  # load_digits has no duplicate rows
    assert set(np.unique(split.y_test)) == set(range(10))
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("imagenet")


def test_request_json_round_trip() -> None:
    req = ArtifactRequest(ModelRef(zoo="mobilenet_v2", input_shape=(96, 96, 3)), "onnx", "fp16")
    assert request_from_json(json.loads(json.dumps(request_to_json(req)))) == req
    assert request_from_json({"model": {"path": "/abs/x.onnx"}, "format": "onnx"}).precision == "fp32"
    for bad in (
        {"format": "onnx"},
        {"model": {}, "format": "onnx"},
        {"model": {"zoo": "nope"}, "format": "onnx"},
    ):
        with pytest.raises(ArtifactError):
            request_from_json(bad)


def test_equal_requests_hash_alike_and_different_ones_do_not() -> None:
    """The artefact broker (harness.artifacts) keeps its answers by the request itself: requests for one artefact,
    however they were written (a list for a shape, "prune:.5", calibration on a precision that has none, a JSON
    round trip), must be one dict key, and requests for different artefacts must be different keys."""
    from model_zoo.requests import Calibration, parse_compression

    shape = ModelRef(zoo="mobilenet_v2", input_shape=(96, 96, 3))
    written_otherwise = ModelRef(zoo="mobilenet_v2", input_shape=[96, 96, 3])  # type: ignore[arg-type]
    fp16 = ArtifactRequest(shape, "tflite", "fp16", "prune:0.5")
    same_pairs = [
        (shape, written_otherwise),
        (Calibration(samples=50, source="random"), Calibration(samples=50, source="random")),
        (parse_compression("prune:2:4"), parse_compression("prune:2:4")),
        (fp16, ArtifactRequest(written_otherwise, "tflite", "fp16", "prune:.5", Calibration(samples=50))),
        (fp16, request_from_json(json.loads(json.dumps(request_to_json(fp16))))),
    ]
    for one, other in same_pairs:
        assert one == other and hash(one) == hash(other) and len({one, other}) == 1, (one, other)
    int8 = ArtifactRequest(shape, "tflite", "int8")
    different = [fp16, int8, ArtifactRequest(shape, "tflite", "int8", calibration=Calibration(samples=50)),
                 ArtifactRequest(shape, "tflite", "int8", batch=4), ArtifactRequest(shape, "onnx", "int8"),
                 ArtifactRequest(DIGITS, "tflite", "int8"), ArtifactRequest(shape, "tflite", "int8", inputs="x")]
    answers = {request: index for index, request in enumerate(different)}
    assert len(answers) == len(different)
    assert answers[ArtifactRequest(ModelRef(zoo="mobilenet_v2", input_shape=[96, 96, 3]), "tflite", "int8")] == 1


def test_cache_dir_follows_the_environment(zoo_cache: Path) -> None:
    assert cache_dir() == zoo_cache


# --- zoo builds ------------------------------------------------------------------------------------------


def test_digits_artifacts_match_the_savedmodel_at_any_batch(digits_artifacts: dict[str, Path]) -> None:
    x = load_dataset("digits").x_test[:3].copy()
    assert_dynamic_batch(digits_artifacts["tflite"], digits_artifacts["onnx"])
    for batch in (x[:1], x):
        reference = run_savedmodel(digits_artifacts["savedmodel"], batch)
        assert reference.shape == (len(batch), 10)
        np.testing.assert_allclose(
            run_tflite(digits_artifacts["tflite"], batch), reference, rtol=0, atol=1e-4
        )
        np.testing.assert_allclose(run_onnx(digits_artifacts["onnx"], batch), reference, rtol=0, atol=1e-4)


def test_digits_cnn_is_accurate_on_the_held_out_split(digits_artifacts: dict[str, Path]) -> None:
    data = load_dataset("digits")
    predictions = run_tflite(digits_artifacts["tflite"], data.x_test.copy()).argmax(axis=1)
    assert (predictions == data.y_test).mean() > 0.95


def test_second_build_reuses_the_cache(digits_artifacts: dict[str, Path], zoo_cache: Path) -> None:
    before = {}
    for fmt, path in digits_artifacts.items():
        meta = path.parent / "meta.json"
        before[fmt] = (meta.read_text(), meta.stat().st_mtime_ns, path.stat().st_mtime_ns)
        assert json.loads(meta.read_text())["request"] == request_to_json(ArtifactRequest(DIGITS, fmt))
    for fmt, path in digits_artifacts.items():
        req = ArtifactRequest(DIGITS, fmt)
        assert lookup(req) == path
        assert build(req) == path
        meta = path.parent / "meta.json"
        assert (meta.read_text(), meta.stat().st_mtime_ns, path.stat().st_mtime_ns) == before[fmt]
    assert not list((zoo_cache / "artifacts").glob(".tmp-*"))


def test_keys_are_stable_and_differ_by_format_and_precision(
    digits_artifacts: dict[str, Path], zoo_cache: Path
) -> None:
    keys = {
        (fmt, precision): artifact_key(ArtifactRequest(DIGITS, fmt, precision))
        for fmt in FORMATS
        for precision in ("fp32", "fp16", "int8")
    }
    assert None not in keys.values() and len(set(keys.values())) == len(keys)
    assert artifact_key(ArtifactRequest(DIGITS, "tflite")) == keys[("tflite", "fp32")]
    assert digits_artifacts["tflite"].parent.name == keys[("tflite", "fp32")]
    other_shape = ArtifactRequest(ModelRef(zoo="mobilenet_v2", input_shape=(32, 32, 3)), "savedmodel")
    assert artifact_key(other_shape) != artifact_key(
        ArtifactRequest(ModelRef(zoo="mobilenet_v2"), "savedmodel")
    )


def test_tiny_transformer_converts_to_builtin_tflite_and_onnx(zoo_cache: Path) -> None:
    ref = ModelRef(zoo="tiny_transformer")
    paths = {fmt: build(ArtifactRequest(ref, fmt)) for fmt in FORMATS}
    assert_dynamic_batch(paths["tflite"], paths["onnx"])
    interpreter = Interpreter(model_path=str(paths["tflite"]))
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), ops  # builtin ops only
    tokens = np.random.default_rng(0).integers(0, 1000, size=(2, 64)).astype(np.int32)
    reference = run_savedmodel(paths["savedmodel"], tokens)
    np.testing.assert_allclose(run_tflite(paths["tflite"], tokens), reference, rtol=0, atol=1e-4)
    np.testing.assert_allclose(run_onnx(paths["onnx"], tokens), reference, rtol=0, atol=1e-4)


def test_zoo_input_shape_option(zoo_cache: Path) -> None:
    small = ArtifactRequest(ModelRef(zoo="mobilenet_v2", input_shape=(32, 32, 3)), "tflite")
    assert unsupported_reason(small) is None
    interpreter = Interpreter(model_path=str(build(small)))
    assert list(interpreter.get_input_details()[0]["shape_signature"]) == [-1, 32, 32, 3]
    # an untrained application answers differently for different inputs (its BatchNorm statistics are its own)
    images = np.random.default_rng(4).random((8, 32, 32, 3), dtype=np.float32)
    probabilities = run_tflite(build(small), images)
    assert np.ptp(probabilities, axis=0).max() > 1e-5 and len(set(probabilities.argmax(axis=1))) > 1
    assert "no smaller than" in unsupported_reason(
        ArtifactRequest(ModelRef(zoo="resnet50", input_shape=(16, 16, 3)), "onnx")
    )
    assert "fixed input shape" in unsupported_reason(
        ArtifactRequest(ModelRef(zoo="digits_cnn", input_shape=(16, 16, 1)), "onnx")
    )


# --- user files ------------------------------------------------------------------------------------------


def test_user_file_reasons_and_errors(digits_artifacts: dict[str, Path], tmp_path: Path) -> None:
    onnx_ref = ModelRef(path="models/x.onnx")
    assert unsupported_reason(ArtifactRequest(onnx_ref, "tflite")) == (
        "models/x.onnx is an ONNX file; accelbench cannot convert ONNX to TFLite"
    )
    assert "cannot convert TFLite to ONNX" in unsupported_reason(
        ArtifactRequest(ModelRef(path="/m/y.tflite"), "onnx")
    )
    assert unsupported_reason(ArtifactRequest(onnx_ref, "onnx", "fp16")) is None  # a user .onnx quantizes
    assert unsupported_reason(ArtifactRequest(onnx_ref, "onnx")) is None
    assert onnx_ref.label == "x" and DIGITS.label == "digits_cnn"

    corrupt = tmp_path / "garbage.onnx"
    corrupt.write_bytes(os.urandom(4096))
    with pytest.raises(ArtifactError, match=re.escape("garbage.onnx")):
        build(ArtifactRequest(ModelRef(path=str(corrupt)), "onnx"))
    bad_tflite = tmp_path / "garbage.tflite"
    bad_tflite.write_bytes(b"\0" * 64)
    with pytest.raises(ArtifactError, match=re.escape("garbage.tflite")):
        build(ArtifactRequest(ModelRef(path=str(bad_tflite)), "tflite"))
    missing = ArtifactRequest(ModelRef(path=str(tmp_path / "missing.keras")), "onnx")
    assert lookup(missing) is None
    with pytest.raises(ArtifactError, match=re.escape("missing.keras: no such file")):
        build(missing)
    with pytest.raises(ArtifactError, match="not a TensorFlow SavedModel"):
        build(ArtifactRequest(ModelRef(path=str(tmp_path)), "tflite"))
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\0")
    weights_ref = ModelRef(path=str(weights))
    with pytest.raises(ArtifactError, match=re.escape("expected a .onnx")):
        weights_ref.source_format()
    assert "cannot read this kind of file" in unsupported_reason(ArtifactRequest(weights_ref, "onnx"))
    missing_dir = ArtifactRequest(ModelRef(path=str(tmp_path / "no_such_savedmodel")), "tflite")
    assert unsupported_reason(missing_dir) is None and lookup(missing_dir) is None
    with pytest.raises(ArtifactError, match="no_such_savedmodel: no such file"):
        build(missing_dir)
    with pytest.raises(ArtifactError, match="exactly one"):
        ModelRef(zoo="digits_cnn", path="/x.onnx")

    # A user file already in the requested form is used in place, not copied.
    own = tmp_path / "mine.onnx"
    shutil.copy(digits_artifacts["onnx"], own)
    req = ArtifactRequest(ModelRef(path=str(own)), "onnx")
    assert lookup(req) == own and build(req) == own


def test_user_savedmodel_shares_the_zoo_conversion(
    digits_artifacts: dict[str, Path], zoo_cache: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "my_savedmodel"
    shutil.copytree(digits_artifacts["savedmodel"], copy)
    ref = ModelRef(path=str(copy))
    assert ref.source_format() == "savedmodel" and ref.label == "my_savedmodel"
    assert lookup(ArtifactRequest(ref, "savedmodel")) == copy
    # Same bytes, same key: the TFLite converted from the zoo's SavedModel is found without converting.
    assert lookup(ArtifactRequest(ref, "tflite")) == digits_artifacts["tflite"]


# Keras 3.15's own model.save trips this NumPy 2 deprecation; nothing in accelbench to fix.
@pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)
def test_user_keras_file_converts_to_onnx(zoo_cache: Path, tmp_path: Path) -> None:
    import keras

    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(3)]
    )
    model_file = tmp_path / "small.keras"
    model.save(model_file)
    req = ArtifactRequest(ModelRef(path=str(model_file)), "onnx")
    assert lookup(req) is None
    path = build(req)
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(path, x), model(x).numpy(), rtol=0, atol=1e-5)
    assert lookup(req) == path


# --- cache mechanics and the build entry point -----------------------------------------------------------


def test_a_crashed_build_leaves_nothing_lookup_would_return(zoo_cache: Path) -> None:
    key = "f" * 64

    def crash(out: Path) -> dict:
        out.write_bytes(b"half a model")
        raise RuntimeError("converter died")

    with pytest.raises(RuntimeError, match="converter died"):
        cache.store(key, "model.onnx", crash)
    assert cache.find(key, "model.onnx") is None
    # A builder killed outright leaves its temporary directory; it is invisible and swept by the next one.
    (zoo_cache / "artifacts" / f".tmp-{key}-killed").mkdir()
    (zoo_cache / "artifacts" / f".tmp-{key}-killed" / "model.onnx").write_bytes(b"half")
    assert cache.find(key, "model.onnx") is None

    def whole(out: Path) -> dict:
        out.write_bytes(b"whole")
        return {}

    path = cache.store(key, "model.onnx", whole)
    assert path.read_bytes() == b"whole" and cache.find(key, "model.onnx") == path
    assert not list((zoo_cache / "artifacts").glob(f".tmp-{key}-*"))


def test_build_cli_from_two_processes_at_once(tmp_path: Path) -> None:
    requests = [
        {"model": {"zoo": "digits_cnn"}, "format": "tflite", "precision": "fp32"},
        {"model": {"path": "/abs/x.onnx"}, "format": "tflite"},
        {"model": {"path": str(tmp_path / "gone.onnx")}, "format": "onnx"},
    ]
    procs = [build_cli(requests, tmp_path / "cache") for _ in range(2)]
    outputs = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        outputs.append((json.loads(stdout.strip().splitlines()[-1]), stderr))
    (first, _), (second, _) = outputs
    assert first == second
    tflite = Path(first[0]["path"])
    assert first[1] == {"error": "/abs/x.onnx is an ONNX file; accelbench cannot convert ONNX to TFLite"}
    assert "gone.onnx: no such file" in first[2]["error"]
    # One SavedModel and one TFLite entry, built by exactly one of the two processes, nothing half-written.
    entries = sorted(p.name for p in (tmp_path / "cache" / "artifacts").iterdir())
    assert len(entries) == 2 and tflite.parent.name in entries
    assert sum("built tflite" in stderr for _, stderr in outputs) == 1
    assert sum("built savedmodel" in stderr for _, stderr in outputs) == 1
    x = load_dataset("digits").x_test[:4].copy()
    assert run_tflite(tflite, x).shape == (4, 10)


def test_build_cli_rejects_malformed_input(tmp_path: Path) -> None:
    proc = build_cli({"not": "a list"}, tmp_path / "cache")
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "expected a JSON list" in json.loads(stdout.strip().splitlines()[-1])["error"]


def test_fixed_batch_tflite_for_static_shape_accelerators(zoo_cache: Path) -> None:
    """GPU accelerators need static shapes: the zoo can bake a batch size into a .tflite, as its own artefact."""
    digits = ModelRef(zoo="digits_cnn")
    dynamic, fixed = ArtifactRequest(digits, "tflite"), ArtifactRequest(digits, "tflite", batch=4)
    build(dynamic)  # keys of converted files exist once the SavedModel they derive from is built
    keys = {artifact_key(fixed), artifact_key(dynamic), artifact_key(ArtifactRequest(digits, "tflite", batch=2))}
    assert len(keys) == 3 and None not in keys
    assert request_from_json(request_to_json(fixed)) == fixed and "batch" not in request_to_json(dynamic)
    assert "only for .tflite files" in unsupported_reason(ArtifactRequest(digits, "onnx", batch=4))
    assert "given as is" in unsupported_reason(ArtifactRequest(ModelRef(path="m.tflite"), "tflite", batch=4))
    interpreter = Interpreter(model_path=str(build(fixed)))
    assert list(interpreter.get_input_details()[0]["shape_signature"]) == [4, 8, 8, 1]
    interpreter.allocate_tensors()
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "SHAPE" not in ops and "RESHAPE" in ops  # the Flatten's shape is a constant now
    x = np.random.default_rng(1).random((4, 8, 8, 1), dtype=np.float32)
    np.testing.assert_allclose(run_tflite(build(fixed), x), run_tflite(build(dynamic), x), rtol=0, atol=1e-6)
