"""`accelbench freeze`, its manifest (artifacts.json) and the `artifacts=` side that reads it, probed as an attacker
and a careless user would (issue 24): a run folder's records and a manifest are files anyone can edit, so neither is
an authority on what may be copied or run. Each probe copied a tree of private keys, filled a disk, hung, ate memory,
claimed to have frozen what it had not, or ended in a traceback; each now ends in one line per problem.

The probes that hung or swelled run in a child with a wall-clock limit and, for memory, an address-space limit
(tests.test_hostile_input.run_limited): a regression fails the test, it never takes the session down with it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import REPO, cli_env, nested_savedmodel, run_cli
from tests.test_hostile_input import run_limited
from tests.test_run_folder_fuzz import JUNK, mutate

FIXTURE_RUN = REPO / "tests" / "data" / "run_0684769"
CASES = ("digits_cnn-fp32-b1-tflite_cpu", "digits_cnn-int8-b1-tflite_cpu", "digits_cnn-fp32-b1-onnxruntime_cpu",
         "digits_cnn-int8-b1-onnxruntime_cpu")  # the fixture's measured cases


def make_run(folder: Path, artifacts: dict[str, str | None]) -> Path:
    """A run folder as `accelbench run` writes it (the committed fixture's), whose measured cases ran the given
    model files: exactly what an edited results.jsonl looks like to freeze."""
    shutil.copytree(FIXTURE_RUN, folder)
    records = [json.loads(line) for line in (FIXTURE_RUN / "results.jsonl").read_text().splitlines()]
    kept = []
    for record in records:
        if record["status"] != "passed":
            kept.append(record)
        elif record["case_id"] in artifacts:
            kept.append({**record, "artifact": artifacts[record["case_id"]]})
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    return folder


def freeze(run: Path, dest: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    try:
        return run_cli("freeze", str(run), str(dest), timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"accelbench freeze did not end within {timeout} s")


def assert_one_line_each(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = stderr.strip().splitlines()
    assert lines, "no message at all"
    return lines


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


@pytest.fixture
def frozen(tmp_path: Path, digits_artifacts: dict[str, Path]) -> Path:
    """A real freeze of a run whose cases ran the zoo's .tflite, SavedModel and .onnx (two cases share the .onnx):
    its DEST folder."""
    run = make_run(tmp_path / "run", {CASES[0]: str(digits_artifacts["tflite_cpu"]),
                                      CASES[1]: str(digits_artifacts["tensorflow"]),
                                      CASES[2]: str(digits_artifacts["onnxruntime_cpu"]),
                                      CASES[3]: str(digits_artifacts["onnxruntime_cpu"])})
    dest = tmp_path / "last-good"
    done = freeze(run, dest)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "froze 4 case(s), 3 model(s)" in done.stdout.replace("\n", " "), done.stdout
    return dest


# -- 1. freeze trusts each record's artifact field -----------------------------------------------------------

def test_freeze_refuses_a_record_naming_a_tree_of_private_keys(tmp_path: Path,
                                                               digits_artifacts: dict[str, Path]) -> None:
    """A record edited to name /etc/ssl copied the whole tree, private keys included, into DEST. A folder outside
    the cache must be a SavedModel, as a scenario's model path must; nothing else of the run is frozen then."""
    ssl = tmp_path / "ssl"
    (ssl / "private").mkdir(parents=True)
    (ssl / "private" / "server.key").write_text("-----BEGIN PRIVATE KEY-----\n")
    (ssl / "openssl.cnf").write_text("[req]\n")
    run = make_run(tmp_path / "run", {CASES[0]: str(ssl), CASES[2]: str(digits_artifacts["onnxruntime_cpu"])})
    dest = tmp_path / "dest"
    done = freeze(run, dest)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    lines = assert_one_line_each(done.stderr)
    [refused] = [line for line in lines if CASES[0] in line]
    assert str(ssl) in refused and "not a TensorFlow SavedModel" in refused
    assert "nothing was frozen" in lines[-1] and "froze" not in done.stdout
    assert not any(p.name == "server.key" for p in files_under(tmp_path / "dest")) and not dest.exists()


def test_freeze_refuses_a_savedmodel_with_links_out_of_its_folder_without_following_them(
        tmp_path: Path, digits_artifacts: dict[str, Path]) -> None:
    """Two symlinks to the folder's parent produced 152,942 folders and 897 MB in 40 s; a link out of the model's
    own folder is refused, however it is reached, and never followed."""
    model = tmp_path / "models" / "loop"
    shutil.copytree(digits_artifacts["tensorflow"], model)
    (model / "up").symlink_to("..")
    (model / "again").symlink_to(model.parent)
    leaky = tmp_path / "models" / "leaky"
    shutil.copytree(digits_artifacts["tensorflow"], leaky)
    secret = tmp_path / "secret.key"
    secret.write_text("key")
    (leaky / "variables" / "stolen.key").symlink_to(secret)
    run = make_run(tmp_path / "run", {CASES[0]: str(model), CASES[1]: str(leaky)})
    dest = tmp_path / "dest"
    done = freeze(run, dest, timeout=30)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    lines = assert_one_line_each(done.stderr)
    [loop] = [line for line in lines if CASES[0] in line]
    [leak] = [line for line in lines if CASES[1] in line]
    assert "links out of the model's folder" in loop and str(model) in loop
    assert "links out of the model's folder" in leak and "stolen.key" in leak
    assert not dest.exists() and len(list(tmp_path.rglob("*"))) < 100


def test_freeze_bounds_a_savedmodel_whose_inner_links_multiply_its_folders(deep_tmp_path: Path,
                                                                          digits_artifacts: dict[str, Path]) -> None:
    """Links that stay inside the folder are followed, but 24 levels of two links each to the next level reach
    2**24 paths: the walk stops at 10,000 entries. A real folder nested deeper than Python recurses is walked."""
    tmp_path = deep_tmp_path
    model = tmp_path / "diamond"
    shutil.copytree(digits_artifacts["tensorflow"], model)
    for level in range(24):
        (model / f"l{level}").mkdir()
        if level:
            for name in ("a", "b"):
                (model / f"l{level - 1}" / name).symlink_to(model / f"l{level}")
    deep = nested_savedmodel(digits_artifacts["tensorflow"], tmp_path / "deep")
    run = make_run(tmp_path / "run", {CASES[0]: str(model), CASES[1]: str(deep)})
    done = freeze(run, tmp_path / "dest", timeout=60)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    lines = assert_one_line_each(done.stderr)
    assert any(CASES[0] in line and "more than 10,000 files and folders" in line for line in lines), lines
    assert not any(CASES[1] in line for line in lines), lines  # deep is a SavedModel like any other
    done = freeze(make_run(tmp_path / "run2", {CASES[1]: str(deep)}), tmp_path / "dest2", timeout=60)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    answers = side_answers(tmp_path / "dest2" / "artifacts.json", [CASES[1]])
    assert answers[CASES[1]][1] is None, answers


def test_freeze_refuses_a_fifo_and_a_device_instead_of_claiming_them(tmp_path: Path,
                                                                     digits_artifacts: dict[str, Path]) -> None:
    """A FIFO entry printed "froze 1 model file(s)" with nothing copied."""
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    device = tmp_path / "zero.tflite"
    device.symlink_to("/dev/zero")
    run = make_run(tmp_path / "run", {CASES[0]: str(fifo), CASES[1]: str(device),
                                      CASES[2]: str(digits_artifacts["onnxruntime_cpu"])})
    done = freeze(run, tmp_path / "dest", timeout=30)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    lines = assert_one_line_each(done.stderr)
    [for_fifo] = [line for line in lines if CASES[0] in line]
    [for_device] = [line for line in lines if CASES[1] in line]
    assert str(fifo) in for_fifo and "not a regular file" in for_fifo
    assert "zero.tflite" in for_device and "not a regular file" in for_device
    assert "froze" not in done.stdout and not (tmp_path / "dest").exists()


def test_freeze_refuses_a_file_of_a_kind_no_scenario_could_name(tmp_path: Path) -> None:
    """Outside the cache, a model file passes the scenario loader's checks or is not copied: /etc/passwd is no
    model, whatever the record says."""
    run = make_run(tmp_path / "run", {CASES[0]: "/etc/passwd", CASES[1]: "relative/model.onnx"})
    done = freeze(run, tmp_path / "dest")
    assert done.returncode == 2, done.stderr[-2000:]
    lines = assert_one_line_each(done.stderr)
    assert any(CASES[0] in line and "/etc/passwd" in line and "cannot read this kind of file" in line
               for line in lines), lines
    assert any(CASES[1] in line and "relative/model.onnx" in line and "absolute" in line for line in lines), lines
    assert not (tmp_path / "dest").exists()


def test_freezing_a_run_whose_model_files_are_all_gone_is_an_error(tmp_path: Path) -> None:
    """"froze 0 case(s)" with exit status 0 told the nightly workflow that tonight was kept."""
    gone = tmp_path / "gone"
    run = make_run(tmp_path / "run", {CASES[0]: str(gone / "model.tflite"), CASES[2]: str(gone / "model.onnx")})
    done = freeze(run, tmp_path / "dest")
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    lines = assert_one_line_each(done.stderr)
    assert any(CASES[0] in line and str(gone / "model.tflite") in line and "no such model file" in line
               for line in lines), lines
    assert "froze" not in done.stdout and not (tmp_path / "dest").exists()
    nothing = make_run(tmp_path / "nothing", {})  # no case was measured at all
    done = freeze(nothing, tmp_path / "dest")
    assert done.returncode == 2 and "no measured case" in done.stderr, done.stderr[-2000:]
    assert len(assert_one_line_each(done.stderr)) == 1


def test_freeze_copies_an_onnx_files_external_data_and_refuses_data_outside_its_folder(
        tmp_path: Path, digits_artifacts: dict[str, Path]) -> None:
    """A user's .onnx with its weights in model.onnx.data is frozen with them, each with its sha256; a location
    that leaves the model's folder ("../secret.data" or a link out) is refused."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors

    proto = onnx.load(digits_artifacts["onnxruntime_cpu"])
    user = tmp_path / "user"
    user.mkdir()
    onnx.save_model(proto, user / "model.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data", size_threshold=0)
    (user / "model.onnx.bak").write_text("not a sidecar: an old copy nobody asked for")
    escaping = tmp_path / "escaping" / "inner"
    escaping.mkdir(parents=True)
    shutil.copy(user / "model.onnx.data", escaping.parent / "secret.data")
    outward = onnx.load(user / "model.onnx", load_external_data=False)  # onnx.save refuses to write such a path
    for tensor in _get_all_tensors(outward):
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../secret.data"
    onnx.save_model(outward, escaping / "model.onnx")
    run = make_run(tmp_path / "run", {CASES[2]: str(user / "model.onnx")})
    dest = tmp_path / "dest"
    done = freeze(run, dest)
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = json.loads((dest / "artifacts.json").read_text())
    model = manifest["cases"][CASES[2]]
    files = manifest["models"][model]
    assert sorted(Path(name).name for name in files) == ["model.onnx", "model.onnx.data"]
    for name, facts in files.items():
        assert facts["sha256"] == hashlib.sha256((dest / name).read_bytes()).hexdigest()
    assert not any(p.name == "model.onnx.bak" for p in files_under(dest))
    run = make_run(tmp_path / "run2", {CASES[2]: str(escaping / "model.onnx")})
    done = freeze(run, tmp_path / "dest2")
    assert done.returncode == 2
    [line] = [line for line in assert_one_line_each(done.stderr) if CASES[2] in line]
    assert "../secret.data" in line and "outside the model's folder" in line


# -- 4. freeze into a file ------------------------------------------------------------------------------------

def test_freeze_into_a_file_is_one_line(tmp_path: Path) -> None:
    target = tmp_path / "dest"
    target.write_text("mine")
    done = freeze(make_run(tmp_path / "run", {}), target)
    assert done.returncode == 2
    [line] = assert_one_line_each(done.stderr)
    assert str(target) in line and "not a folder" in line and target.read_text() == "mine"


# -- 2. a sha256 per file, checked before use ---------------------------------------------------------------

def side_answers(manifest: Path, case_ids: list[str] | tuple[str, ...], timeout_s: float = 60,
                 memory_mb: int = 512) -> dict[str, Any]:
    """What an ``artifacts=manifest`` side says, from a child that may neither hang nor swell: {"side": the
    SideError} or {case id: [model path, why not]}."""
    done = run_limited(
        "import json, sys\nfrom pathlib import Path\nfrom scenario.sides import SideError, side_from_mapping\n"
        "limit_memory()\n"
        f"try:\n    side = side_from_mapping('base', {{'artifacts': {str(manifest)!r}}}, Path('.'))\n"
        "except SideError as error:\n    print(json.dumps({'side': str(error)}))\n    sys.exit(0)\n"
        f"print(json.dumps({{case: side.artifact_for(case) for case in {list(case_ids)!r}}}))\n",
        timeout_s=timeout_s, extra_address_space_mb=memory_mb)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_a_frozen_manifest_has_a_sha256_per_file_and_the_side_runs_its_files(frozen: Path) -> None:
    manifest = json.loads((frozen / "artifacts.json").read_text())
    assert manifest["format"] == 2 and sorted(manifest["cases"]) == sorted(CASES)
    assert manifest["cases"][CASES[2]] == manifest["cases"][CASES[3]]  # one copy of a file two cases ran
    savedmodel = manifest["models"][manifest["cases"][CASES[1]]]
    assert any(name.endswith("saved_model.pb") for name in savedmodel) and len(savedmodel) >= 3
    for files in manifest["models"].values():
        for name, facts in files.items():
            data = (frozen / name).read_bytes()
            assert facts == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    answers = side_answers(frozen / "artifacts.json", CASES)
    for case in CASES:
        path, why = answers[case]
        assert why is None and path == str((frozen / manifest["cases"][case]).resolve())


def test_a_file_changed_since_freeze_is_refused_by_the_side(frozen: Path) -> None:
    manifest = json.loads((frozen / "artifacts.json").read_text())
    onnx_file = frozen / manifest["cases"][CASES[2]]
    data = bytearray(onnx_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx_file.write_bytes(bytes(data))
    savedmodel = frozen / manifest["cases"][CASES[1]]
    (savedmodel / "variables" / "planted.txt").write_text("added after the freeze")
    tflite = frozen / manifest["cases"][CASES[0]]
    tflite.unlink()
    os.mkfifo(tflite)  # a FIFO in the frozen file's place: refused before anything opens it
    answers = side_answers(frozen / "artifacts.json", CASES)
    path, why = answers[CASES[2]]
    assert path is None and why == f"{onnx_file} changed since freeze"
    path, why = answers[CASES[1]]
    assert path is None and "planted.txt" in why and "changed since freeze" in why
    path, why = answers[CASES[0]]
    assert path is None and str(tflite) in why and "not a regular file" in why
    assert not any("base side" in str(answer[1]) for answer in answers.values())  # compare() says the side
    scenario = frozen / "scenario.yaml"  # through `accelbench ab`: the case is refused, no worker starts
    scenario.write_text("name: changed\nmodels: [digits_cnn]\nbackends: [{name: onnxruntime_cpu, threads: 1}]\n")
    done = run_cli("ab", str(scenario), "--base", f"artifacts={frozen / 'artifacts.json'}", "--out",
                   str(frozen / "ab"), timeout=120)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    [record] = [json.loads(line) for line in (frozen / "ab" / "ab.jsonl").read_text().splitlines()]
    assert record["case_id"] == CASES[2] and record["status"] == "refused"
    assert record["reason"] == f"not compared: base side: {onnx_file} changed since freeze"


def test_a_checksummed_manifest_is_no_authority_on_the_model_files_checks(frozen: Path, tmp_path: Path) -> None:
    """A format-2 manifest's own list of files skipped the checks every model path gets: a file over the size limit
    was used, and an ONNX file naming external data the manifest did not list (a FIFO) was handed to a worker,
    which blocked on it until its timeout."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    manifest_path = frozen / "artifacts.json"
    manifest = json.loads(manifest_path.read_text())
    onnx_name = manifest["cases"][CASES[2]]
    done = run_limited(  # the size limit, applied to a checksummed manifest as to an older one
        "import json\nfrom pathlib import Path\nfrom scenario.sides import side_from_mapping\nlimit_memory()\n"
        f"side = side_from_mapping('base', {{'artifacts': {str(manifest_path)!r}}}, Path('.'))\n"
        f"print(json.dumps(side.artifact_for({CASES[2]!r})))\n", extra_address_space_mb=512)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)[1] is None
    small = {**os.environ, "ACCELBENCH_MAX_MODEL_GIB": "0.00001"}
    done = subprocess.run([sys.executable, "-c",
                           "import json\nfrom pathlib import Path\nfrom scenario.sides import side_from_mapping\n"
                           f"side = side_from_mapping('base', {{'artifacts': {str(manifest_path)!r}}}, Path('.'))\n"
                           f"print(json.dumps(side.artifact_for({CASES[2]!r})))\n"],
                          cwd=REPO, env={**cli_env(), **small}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    path, why = json.loads(done.stdout)
    assert path is None and "GiB limit on a model (ACCELBENCH_MAX_MODEL_GIB" in why, why

    # an ONNX model whose weights live in a sidecar the manifest does not list, and that sidecar a FIFO
    weights = numpy_helper.from_array(np.ones(4, np.float32), "w")
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    target = frozen / onnx_name
    onnx.save_model(model, str(target), save_as_external_data=True, all_tensors_to_one_file=True, location="w.bin",
                    size_threshold=0)
    (target.parent / "w.bin").unlink()
    os.mkfifo(target.parent / "w.bin")
    facts = {"bytes": target.stat().st_size, "sha256": hashlib.sha256(target.read_bytes()).hexdigest()}
    manifest["models"][onnx_name] = {onnx_name: facts}
    manifest_path.write_text(json.dumps(manifest))
    path, why = side_answers(manifest_path, [CASES[2]], timeout_s=30)[CASES[2]]
    assert path is None and "w.bin" in why and ("not a regular file" in why or "did not hold" in why), why


def test_a_file_edited_in_place_with_its_mtime_set_back_is_caught_in_the_same_process(frozen: Path) -> None:
    """The checksum cache was keyed by size, mtime and inode: an edit in place of the same size, its mtime set back
    (touch -r), kept the old checksum within one process (a pytest session, a long ab)."""
    manifest = json.loads((frozen / "artifacts.json").read_text())
    target = frozen / manifest["cases"][CASES[2]]
    done = run_limited(
        "import json, os\nfrom pathlib import Path\nfrom scenario.sides import side_from_mapping\n"
        f"side = side_from_mapping('base', {{'artifacts': {str(frozen / 'artifacts.json')!r}}}, Path('.'))\n"
        f"first = side.artifact_for({CASES[2]!r})\n"
        f"target = Path({str(target)!r}); info = target.stat(); data = bytearray(target.read_bytes())\n"
        "data[len(data) // 2] ^= 0xFF\ntarget.write_bytes(bytes(data))\n"
        "os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))\n"
        f"print(json.dumps([first, side.artifact_for({CASES[2]!r})]))\n")
    assert done.returncode == 0, done.stderr[-2000:]
    first, second = json.loads(done.stdout)
    assert first[1] is None and second == [None, f"{target} changed since freeze"], (first, second)


def test_a_manifest_written_before_checksums_is_still_read(tmp_path: Path,
                                                           digits_artifacts: dict[str, Path]) -> None:
    """An older freeze (case id -> path, no checksums) keeps working: the nightly's cached last good state was
    written so, and refusing it would keep the gate from ever moving. Its files get the model-file checks."""
    shutil.copy(digits_artifacts["onnxruntime_cpu"], tmp_path / "model.onnx")
    os.mkfifo(tmp_path / "fifo.onnx")
    (tmp_path / "artifacts.json").write_text(json.dumps({CASES[2]: "model.onnx", CASES[3]: "fifo.onnx"}))
    answers = side_answers(tmp_path / "artifacts.json", [CASES[2], CASES[3], CASES[0]])
    assert answers[CASES[2]] == [str(tmp_path / "model.onnx"), None]
    path, why = answers[CASES[3]]
    assert path is None and "fifo.onnx is not a regular file" in why
    path, why = answers[CASES[0]]
    assert path is None and why == f"{tmp_path / 'artifacts.json'} has no model file for this case"


# -- 3. manifests are regular files of bounded size --------------------------------------------------------

def test_a_manifest_that_is_a_device_a_fifo_or_huge_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """`--base artifacts=/dev/zero` read the manifest whole (8.4 GB in 10 s); a FIFO manifest hung forever."""
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as handle:  # sparse: 4 GiB of nothing on disk
        handle.truncate(4 << 30)
    for manifest, expected in (("/dev/zero", "not a regular file"), (fifo, "not a regular file"),
                               (huge, "over the")):
        answer = side_answers(Path(manifest), [CASES[0]], timeout_s=20, memory_mb=256)
        assert list(answer) == ["side"], answer
        assert answer["side"].startswith(f"base side: artifacts: {manifest}: ") and expected in answer["side"]
        assert "\n" not in answer["side"]


def test_a_manifest_entry_with_a_name_too_long_is_one_line(tmp_path: Path) -> None:
    """A 300-character case id or file name ended in OSError: [Errno 36] File name too long."""
    long_id = "c" * 300
    (tmp_path / "artifacts.json").write_text(json.dumps({long_id: "x" * 300 + ".onnx",
                                                         CASES[0]: "d" * 300 + "/model.tflite"}))
    answers = side_answers(tmp_path / "artifacts.json", [long_id, CASES[0]])
    assert list(answers) == ["side"] and "\n" not in answers["side"], answers
    assert "a name longer than the file system allows" in answers["side"], answers


def test_an_older_manifest_may_not_reach_out_of_its_folder(tmp_path: Path, digits_artifacts: dict[str, Path]) -> None:
    """A manifest written before checksums (case id -> path) was read as it stood: "../model.onnx", an absolute path
    or a link out of its folder ran a file the freeze never held. Freeze wrote them relative, inside its folder."""
    shutil.copy(digits_artifacts["onnxruntime_cpu"], tmp_path / "outside.onnx")
    frozen = tmp_path / "frozen"
    frozen.mkdir()
    (frozen / "link.onnx").symlink_to(tmp_path / "outside.onnx")
    for entry, says in (("../outside.onnx", "not a path inside the manifest's folder"),
                        (str(tmp_path / "outside.onnx"), "not a path inside the manifest's folder")):
        (frozen / "artifacts.json").write_text(json.dumps({CASES[2]: entry}))
        answers = side_answers(frozen / "artifacts.json", [CASES[2]])
        assert list(answers) == ["side"] and says in answers["side"], answers
    (frozen / "artifacts.json").write_text(json.dumps({CASES[2]: "link.onnx"}))
    path, why = side_answers(frozen / "artifacts.json", [CASES[2]])[CASES[2]]
    assert path is None and why.startswith(f"{frozen / 'link.onnx'} links out of the manifest's folder (to "), why


def test_ab_with_a_manifest_that_is_a_device_is_one_line(tmp_path: Path, scenario_file) -> None:
    scenario = scenario_file("""
        name: devices
        models: [digits_cnn]
        backends: [{name: onnxruntime_cpu, threads: 1}]
    """)
    done = run_limited(
        "import sys\nfrom harness.cli import main\nlimit_memory()\n"
        f"sys.exit(main(['ab', {str(scenario)!r}, '--base', 'artifacts=/dev/zero', '--out', "
        f"{str(tmp_path / 'out')!r}]))\n", timeout_s=60, extra_address_space_mb=1024)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    [line] = done.stderr.strip().splitlines()
    assert "base side: artifacts: /dev/zero:" in line and "not a regular file" in line


# -- 6. the run-folder fuzz, for artifacts.json -------------------------------------------------------------

def _byte_mutations(text: str, rng: random.Random) -> bytes:
    data = bytearray(text.encode())
    kind = rng.choice(["flip", "truncate", "insert", "nest", "bom", "latin1"])
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == "truncate":
        del data[rng.randrange(len(data)):]
    elif kind == "insert":
        at = rng.randrange(len(data))
        data[at:at] = rng.choice([b"NaN", b"Infinity", b"-1e999", b"\x00", b"\xff\xfe", b'"\\ud800"', b"{}", b","])
    elif kind == "nest":  # deeper than the parser recurses
        return b"[" * 100_000 + b"]" * 100_000 if rng.random() < 0.5 else b'{"a":' * 50_000 + b"1" + b"}" * 50_000
    elif kind == "bom":
        data[0:0] = b"\xef\xbb\xbf"
    else:
        return text.encode("utf-16")
    return bytes(data)


def _json_mutations(manifest: dict[str, Any], rng: random.Random) -> Any:
    kind = rng.choice(["structure", "structure", "path", "huge", "types"])
    if kind == "structure":
        return mutate(manifest, rng)
    if kind == "types":
        return rng.choice([*JUNK, [manifest], {"format": 2}, {"format": 2, "cases": {}, "models": []},
                           {"format": 3, "cases": {}, "models": {}}, {"format": float("nan")}])
    changed = json.loads(json.dumps(manifest))
    case = rng.choice(list(changed["cases"]))
    model = changed["cases"][case]
    if kind == "huge":
        huge = rng.choice(["x" * 300, "y" * 5_000_000, "é" * 400, "\x00" * 10])
        target = rng.choice(["case", "path", "file", "sha"])
        if target == "case":
            changed["cases"][huge] = model
        elif target == "path":
            changed["cases"][case] = huge
        elif target == "file":
            changed["models"][model][huge] = next(iter(changed["models"][model].values()))
        else:
            next(iter(changed["models"][model].values()))["sha256"] = huge
        return changed
    bad = rng.choice(["/etc/passwd", "/dev/zero", "../../../../etc/passwd", "~nosuchuser/x.onnx", "", ".", "/",
                      "models", "models/../../x.onnx", "\x00.onnx", "a" * 300 + "/b.onnx", "artifacts.json"])
    if rng.random() < 0.5:
        changed["cases"][case] = bad
        changed["models"][bad] = changed["models"].pop(model) if rng.random() < 0.5 else {}
    else:
        files = changed["models"][model]
        files[bad] = files.pop(rng.choice(list(files)))
    return changed


MUTATIONS = 400


def test_mutated_manifests_are_read_or_refused_in_one_line(frozen: Path) -> None:
    """A real frozen manifest mutated many ways (bytes flipped, truncated, wrong types, huge strings, nested junk,
    NaN, paths out of the folder) and given to the ``artifacts=`` side: it reads, and each case gets its file or
    one line; or the side is refused in one line. Never a traceback."""
    text = (frozen / "artifacts.json").read_text()
    manifest = json.loads(text)
    rng = random.Random(20261224)
    paths = []
    for index in range(MUTATIONS):
        path = frozen / f"mutated-{index}.json"  # beside the models, so that relative paths resolve
        if index % 3 == 0:
            path.write_bytes(_byte_mutations(text, rng))
        else:
            path.write_text(json.dumps(_json_mutations(manifest, rng)))
        paths.append(str(path))
    done = run_limited(
        "import json\nfrom pathlib import Path\nfrom scenario.sides import SideError, side_from_mapping\n"
        f"CASES = {[*CASES, 'x' * 300, 'no-such-case']!r}\nlimit_memory()\nout = []\n"
        f"for path in {paths!r}:\n"
        "    try:\n"
        "        side = side_from_mapping('base', {'artifacts': path}, Path('.'))\n"
        "    except SideError as error:\n"
        "        out.append(['refused', str(error)])\n"
        "        continue\n"
        "    out.append(['read', [side.artifact_for(case) for case in CASES]])\n"
        "print(json.dumps(out))\n", timeout_s=240, extra_address_space_mb=1024)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    results = json.loads(done.stdout)
    refused = read = 0
    for path, (outcome, answer) in zip(paths, results, strict=True):
        if outcome == "refused":
            refused += 1
            assert answer.startswith(f"base side: artifacts: {path}: ") and "\n" not in answer, answer
            continue
        read += 1
        for model, why in answer:
            assert (model is None) != (why is None), answer
            if why is not None:
                assert "\n" not in why and why.strip() == why and not why.endswith(":"), why
            else:  # a file it hands out is one the freeze wrote, unchanged
                assert Path(model).resolve().is_relative_to(frozen.resolve()), model
    assert refused > MUTATIONS / 4 and read > 10, (refused, read)  # both outcomes reached


# -- 5. regression_detection --from-results with nothing to judge -------------------------------------------

def _ab_folder(folder: Path, records: list[Any]) -> Path:
    folder.mkdir()
    shutil.copy(FIXTURE_RUN / "env.json", folder / "env.json")
    (folder / "ab.jsonl").write_text("".join(json.dumps(r.to_json()) + "\n" for r in records))
    return folder


def test_regression_benchmark_from_results_with_nothing_to_judge_is_one_line(tmp_path: Path) -> None:
    """A folder whose only comparison was "broken", or where every comparison had 2 rounds, ended in
    StatisticsError: no median for empty data."""
    from results.ab_record import AbRecord, AbRound, SideInfo, SlicePair

    def record(slowdown: float, **fields: Any) -> AbRecord:
        return AbRecord(case_id="c", scenario="s", model="m", backend="slowed_tflite", backend_label="tflite",
                        precision="fp32", batch_size=1, method="lockstep", threshold=0.05, min_effect=0.025,
                        alpha=0.01, confidence=0.95, base=SideInfo(name="base", spec={"options": {"slowdown": 0}},
                                                                   description="-"),
                        new=SideInfo(name="new", spec={"options": {"slowdown": slowdown}}, description="-"),
                        settings={"max_seconds": 60}, wall_s=3.0, **fields)

    rounds = [AbRound(index=i, log_ratio=0.01 * i, pairs=[SlicePair(at_s=i, base_ms=1.0, new_ms=1.01)])
              for i in range(2)]
    broken = _ab_folder(tmp_path / "broken", [record(0.05, status="compared", verdict="broken")])
    short = _ab_folder(tmp_path / "short", [
        record(0.0, status="compared", verdict="cannot tell", ratio=1.0, ci_low=0.9, ci_high=1.1, rounds=rounds),
        record(0.05, status="compared", verdict="cannot tell", ratio=1.05, ci_low=0.9, ci_high=1.2, rounds=rounds)])
    script = REPO / "benchmarks" / "regression_detection.py"
    for folder, expected in ((broken, "nothing to judge"), (short, "cannot tell")):
        done = subprocess.run([sys.executable, str(script), "--from-results", str(folder)], capture_output=True,
                              text=True, env=cli_env(), timeout=120, cwd=REPO)
        assert "Traceback" not in done.stderr and "StatisticsError" not in done.stderr, done.stderr[-3000:]
        if expected == "nothing to judge":
            assert done.returncode != 0
            [line] = done.stderr.strip().splitlines()
            assert str(folder) in line and expected in line
        else:  # two rounds are a judgement ("cannot tell"), only a shape test needs three
            assert done.returncode == 0, done.stderr[-3000:]
            assert "A/A called slower 0.0%" in done.stdout


def test_a_refused_freeze_of_many_cases_says_it_in_a_screenful_and_an_ab_folder_is_named(tmp_path: Path) -> None:
    """A run of thousands of cases whose cache was cleared printed a line for every one; freezing an A/B folder said
    "no measured case"."""
    run = tmp_path / "run"
    shutil.copytree(FIXTURE_RUN, run)
    record = next(json.loads(line) for line in (FIXTURE_RUN / "results.jsonl").read_text().splitlines()
                  if json.loads(line)["status"] == "passed")
    (run / "results.jsonl").write_text("".join(
        json.dumps({**record, "case_id": f"case-{index}", "artifact": str(tmp_path / f"gone-{index}.onnx")}) + "\n"
        for index in range(50)))
    done = freeze(run, tmp_path / "dest")
    lines = assert_one_line_each(done.stderr)
    assert done.returncode == 2 and len(lines) == 21, lines
    assert lines[18].startswith("error: cannot freeze case case-18: ") and "gone-18.onnx" in lines[18]
    assert lines[19] == "error: and 31 more case(s) like these"
    assert lines[20].startswith("error: nothing was frozen: 50 of the 50 measured case(s)")
    done = freeze(REPO / "tests" / "data" / "ab_run", tmp_path / "dest")
    assert done.returncode == 2 and assert_one_line_each(done.stderr) == [
        f"error: {REPO / 'tests' / 'data' / 'ab_run'} holds A/B comparisons (accelbench ab wrote it): freeze keeps "
        "the model files of a run (accelbench run), whose records name them"]
