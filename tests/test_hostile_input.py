"""Hostile and broken input, probed as an attacker and a careless user would: each of these lost a user's files,
hung, ate memory or ended in a traceback before; each now ends in one line that names the file (and the line or
the field) and loses nothing.

The probes that hung or swelled the process run in a child with a wall-clock limit and, for memory, an
address-space limit: a regression fails the test, it never takes the test session down with it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import FAST_MEASURE, REPO, cli_env, nested_savedmodel, run_cli, write_scenario

FIXTURE_RUN = REPO / "tests" / "data" / "run_0684769"


def run_limited(code: str, timeout_s: float = 60, extra_address_space_mb: int | None = None,
                cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter that is killed after `timeout_s`; with `extra_address_space_mb` the child may
    map only that much beyond what its imports took (the limit is set from inside, once imports are done, by the
    `limit_memory()` the code calls)."""
    prelude = (
        "import resource\n"
        "def limit_memory():\n"
        "    size = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()\n"
        f"    extra = {extra_address_space_mb or 0} * 2**20\n"
        "    if extra:\n"
        "        resource.setrlimit(resource.RLIMIT_AS, (size + extra, size + extra))\n"
    )
    try:
        return subprocess.run([sys.executable, "-c", prelude + code], cwd=cwd, env=cli_env(), capture_output=True,
                              text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the probe did not end within {timeout_s} s (it hung): {code[:200]!r}")


def load_error(scenario: Path, timeout_s: float = 60) -> str:
    """The one-line error of loading `scenario`, from a child that may neither hang nor swell."""
    done = run_limited(
        "from scenario.load import ScenarioError, load_scenario\n"
        "limit_memory()\n"
        f"try:\n    load_scenario({str(scenario)!r})\nexcept ScenarioError as error:\n    print(error)\n"
        "else:\n    print('LOADED')\n",
        timeout_s=timeout_s, extra_address_space_mb=1024)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


# -- 1. --out naming a folder that holds files ----------------------------------------------------------------

def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*")
            if p.is_file()}


def test_out_naming_a_folder_with_files_is_refused_and_nothing_in_it_changes(tmp_path: Path) -> None:
    users = tmp_path / "mine"
    users.mkdir()
    (users / "notes.txt").write_text("my notes")
    (users / "report.html").write_text("<p>my page</p>")
    earlier = tmp_path / "earlier"  # an earlier run folder: its records must not get a second run's beside them
    shutil.copytree(FIXTURE_RUN, earlier)
    for folder in (users, earlier):
        before = _snapshot(folder)
        done = run_cli("run", "scenarios/smoke.yaml", "--out", str(folder), cwd=REPO, timeout=120)
        assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
        message = done.stderr.strip()
        assert len(message.splitlines()) == 1 and f"{folder} is not empty" in message and "--resume" in message
        assert "Traceback" not in done.stderr and _snapshot(folder) == before


def test_the_pytest_front_door_refuses_a_folder_with_files_too(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "env.json").write_text('{"mine": true}')
    done = subprocess.run([sys.executable, "-m", "pytest", "scenarios/smoke.yaml", "-p", "no:cacheprovider", "-q",
                           "--accelbench-out", str(tmp_path / "out"), "-k", "digits and onnxruntime and b1"],
                          cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "is not empty" in done.stdout + done.stderr, done.stdout[-2000:]
    assert json.loads((tmp_path / "out" / "env.json").read_text()) == {"mine": True}


def test_an_empty_existing_folder_takes_a_run(tmp_path: Path) -> None:
    from results.store import RunStore

    (tmp_path / "empty").mkdir()
    RunStore(tmp_path / "empty").open({"env_id": "e"}, {})
    assert (tmp_path / "empty" / "env.json").is_file()


# -- 2, 3. special files where a model, a scenario or data should be -------------------------------------------

SPECIAL_MODEL = """
name: special
models: [{{path: {name}, input_shape: [4]}}]
backends: [onnxruntime_cpu]
"""


def _special_files(folder: Path) -> dict[str, Path]:
    """A FIFO, a character device (/dev/zero, which never ends) and, as root, a device node of our own."""
    os.mkfifo(folder / "pipe.onnx")
    (folder / "zero.onnx").symlink_to("/dev/zero")
    found = {"fifo": folder / "pipe.onnx", "device": folder / "zero.onnx"}
    if os.geteuid() == 0:
        os.mknod(folder / "node.onnx", 0o600 | 0o020000, os.makedev(1, 5))  # S_IFCHR: /dev/zero's numbers
        found["device node"] = folder / "node.onnx"
    return found


def test_fifos_and_devices_named_as_models_are_refused_at_load_time(tmp_path: Path) -> None:
    for kind, path in _special_files(tmp_path).items():
        scenario = write_scenario(tmp_path, SPECIAL_MODEL.format(name=path.name), f"{kind.replace(' ', '_')}.yaml")
        message = load_error(scenario)
        assert message == f"{scenario}:2: models[0].path: {path} is not a regular file", (kind, message)


def test_a_calibration_source_that_is_a_fifo_is_refused_at_its_line(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "inputs.npz")
    scenario = write_scenario(tmp_path, """
        name: calibrated
        models: [digits_cnn]
        backends: [onnxruntime_cpu]
        precisions: [int8]
        calibration: {source: inputs.npz}
    """)
    assert load_error(scenario) == (f"{scenario}:5: calibration.source: {tmp_path / 'inputs.npz'} is not a "
                                    "regular file")


def test_a_savedmodel_folder_with_a_fifo_inside_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "model" / "variables"
    folder.mkdir(parents=True)
    (tmp_path / "model" / "saved_model.pb").write_bytes(b"")
    os.mkfifo(folder / "variables.data-00000-of-00001")
    scenario = write_scenario(tmp_path, SPECIAL_MODEL.format(name="model").replace("onnxruntime_cpu", "tflite_cpu"))
    assert load_error(scenario).endswith(f"{folder / 'variables.data-00000-of-00001'} is not a regular file")


def test_a_fifo_behind_a_symlinked_savedmodel_folder_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.mkfifo(elsewhere / "variables.data-00000-of-00001")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "saved_model.pb").write_bytes(b"")
    (tmp_path / "model" / "variables").symlink_to(elsewhere)
    scenario = write_scenario(tmp_path, SPECIAL_MODEL.format(name="model").replace("onnxruntime_cpu", "tflite_cpu"))
    assert load_error(scenario).endswith("variables/variables.data-00000-of-00001 is not a regular file")


def test_a_model_over_the_size_limit_is_refused_unless_the_limit_is_raised(tmp_path: Path) -> None:
    big = tmp_path / "big.onnx"
    with open(big, "wb") as handle:  # sparse: 9 GiB on paper, nothing on disk
        handle.truncate(9 * 2**30)
    scenario = write_scenario(tmp_path, SPECIAL_MODEL.format(name="big.onnx"))
    assert load_error(scenario) == (f"{scenario}:2: models[0].path: {big} is 9.0 GiB, over the 8 GiB limit on a "
                                    "model (ACCELBENCH_MAX_MODEL_GIB=<GiB> raises it)")
    from scenario.checks import MAX_MODEL_ENV, max_model_bytes

    os.environ[MAX_MODEL_ENV] = "10"
    try:
        assert max_model_bytes() == 10 * 2**30
    finally:
        del os.environ[MAX_MODEL_ENV]


def test_a_scenario_that_is_a_fifo_or_a_device_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.yaml")
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    for name in ("pipe.yaml", "zero.yaml"):
        assert load_error(tmp_path / name) == f"{tmp_path / name}: not a regular file; a scenario is a YAML file"


def test_model_sizes_never_read_a_special_file_and_read_big_ones_a_chunk_at_a_time(tmp_path: Path) -> None:
    """The engine's size figures (raw and gzip) for a path that became a FIFO or a device after the scenario was
    checked, and for a large file under an address-space limit smaller than the file."""
    special = _special_files(tmp_path)
    big = tmp_path / "big.tflite"
    big.write_bytes(os.urandom(2**20) * 300)  # 300 MB, incompressible in 1 MB blocks
    done = run_limited(
        "from harness.engine import file_sizes\n"
        "limit_memory()\n"
        f"print([file_sizes(p) for p in {[str(p) for p in special.values()]!r}])\n"
        f"print(file_sizes({str(big)!r})[0])\n",
        timeout_s=120, extra_address_space_mb=200)
    assert done.returncode == 0, done.stderr[-2000:]
    first, second = done.stdout.splitlines()
    assert first == str([(0, 0)] * len(special)) and int(second) == 300 * 2**20


# -- 4. markup in a label ---------------------------------------------------------------------------------------

def test_brackets_in_labels_are_printed_as_written(tmp_path: Path, digits_artifacts: dict[str, Path]) -> None:
    scenario = write_scenario(tmp_path, f"""
        name: brackets
        models: [{{name: digits_cnn, label: 'dig[/]its'}}]
        backends: [{{name: onnxruntime_cpu, threads: 1, label: 'ort[int8]'}}]
        measure: {FAST_MEASURE}
    """)
    done = run_cli("run", str(scenario), "--out", str(tmp_path / "run"), timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "[1/1] dig[/]its-fp32-b1-ort[int8] passed" in done.stderr and "Traceback" not in done.stderr
    assert "dig[/]its-fp32-b1-ort[int8]" in done.stdout


# -- 5. an alias bomb --------------------------------------------------------------------------------------------

def test_a_one_kilobyte_alias_bomb_is_refused_at_its_line_in_seconds(tmp_path: Path) -> None:
    lines = ["name: bomb", "a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    lines += ["models: [digits_cnn]", "backends: [onnxruntime_cpu]"]
    scenario = tmp_path / "bomb.yaml"
    scenario.write_text("\n".join(lines) + "\n")
    assert scenario.stat().st_size < 1024
    started = time.perf_counter()
    message = load_error(scenario, timeout_s=60)
    assert message == f"{scenario}:7: invalid YAML: the aliases here expand to more than 100,000 values"
    assert time.perf_counter() - started < 30


def test_the_duplicate_key_check_walks_each_node_once() -> None:
    """However many aliases point at a node: on the bomb's graph (composed without the loader's limit), walking
    every alias took minutes and gigabytes (so the probe runs in a limited child)."""
    text = "a0: &a0 {x: 1, y: 2, x: 3}\n" + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n"
                                                       for i in range(1, 10))
    done = run_limited(
        "import time, yaml\n"
        "from scenario.yaml_lines import duplicate_keys\n"
        "limit_memory()\n"
        f"root = yaml.compose({text!r}, Loader=yaml.SafeLoader)\n"
        "started = time.perf_counter()\n"
        "print(duplicate_keys(root), round(time.perf_counter() - started, 3))\n",
        timeout_s=60, extra_address_space_mb=512)
    assert done.returncode == 0, done.stderr[-2000:]
    found, seconds = done.stdout.rsplit(" ", 1)
    assert found == "[(1, \"duplicate key 'x'\")]" and float(seconds) < 1.0


# -- 6. malformed records and env.json in run folders and the history --------------------------------------------

def _edited_run(tmp_path: Path, name: str, edit_record: Any = None, edit_env: Any = None) -> Path:
    folder = tmp_path / name
    shutil.copytree(FIXTURE_RUN, folder)
    records = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    if edit_record:
        edit_record(records[0])
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    env = json.loads((folder / "env.json").read_text())
    if edit_env:
        edit_env(env)
    (folder / "env.json").write_text(json.dumps(env))
    return folder


CASE = "digits_cnn-fp32-b1-tflite_cpu"


@pytest.mark.parametrize(("value", "says"), [("fast", "latency_ms.p50: Input should be a valid number"),
                                             (float("nan"), "latency_ms.p50: nan is not a finite number"),
                                             (float("inf"), "latency_ms.p50: inf is not a finite number")],
                         ids=["text", "nan", "inf"])
def test_a_damaged_latency_is_one_line_naming_file_case_and_field(tmp_path: Path, value: Any, says: str) -> None:
    def edit(record: dict[str, Any]) -> None:
        record["latency_ms"]["p50"] = value

    good = _edited_run(tmp_path, "good")
    bad = _edited_run(tmp_path, "bad", edit_record=edit)
    expected = f"{bad / 'results.jsonl'}: case '{CASE}': {says}"
    for command in (("compare", str(good), str(bad)), ("history", "add", str(bad), "--history",
                                                       str(tmp_path / "history")), ("report", str(bad))):
        done = run_cli(*command, cwd=tmp_path, timeout=120)
        assert done.returncode == 2, (command, done.stdout[-1000:], done.stderr[-1000:])
        assert expected in done.stderr and "Traceback" not in done.stderr, (command, done.stderr[-1000:])
    assert not list((tmp_path / "history").glob("*.parquet"))  # nothing non-finite entered the history


def test_damage_the_types_allow_is_read_without_a_traceback(tmp_path: Path) -> None:
    """Fields that may be null, a start no clock can show, and figures too large for the history's columns."""
    from results.runs import load_run, machine_label
    from tracking.compare import compare_runs

    def null_fields(env: dict[str, Any]) -> None:
        env["libraries"] = None
        env["machine"]["gpu"] = {"devices": [{"name": None}]}
        del env["collected_at"]

    folder = _edited_run(tmp_path, "nulls", edit_env=null_fields)
    lines = (folder / "results.jsonl").read_text().splitlines()
    records = [{**json.loads(line), "started_at": 1e300} for line in lines]
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    run = load_run(folder)
    assert run.started is None and "? (driver None" in machine_label(run.machine)
    records = {r.case_id: r for r in run.records}
    assert compare_runs(records, records, run.env, {**run.env, "libraries": {"x": "1"}})[0].reason.startswith(
        "library versions differ")

    def huge_sample(record: dict[str, Any]) -> None:
        record["samples_ns"][0] = 10**30

    bad = _edited_run(tmp_path, "huge", edit_record=huge_sample)
    done = run_cli("history", "add", str(bad), "--history", str(tmp_path / "history"), cwd=tmp_path, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{bad / 'results.jsonl'}: case '{CASE}': samples_ns.0: Input should be less than" in done.stderr


def test_resuming_a_damaged_run_folder_is_one_line(tmp_path: Path) -> None:
    from sysinfo.envinfo import collect_env

    def damaged(record: dict[str, Any]) -> None:
        record["latency_ms"]["p50"] = float("nan")

    def this_machine(env: dict[str, Any]) -> None:  # the fixture was written on another VM: resume would refuse it
        env.clear()
        env.update(collect_env())

    folder = _edited_run(tmp_path, "run", edit_record=damaged, edit_env=this_machine)
    done = run_cli("run", "--resume", str(folder), str(FIXTURE_RUN / "fixture.yaml"), cwd=tmp_path, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "latency_ms.p50: nan is not a finite number" in done.stderr


def test_an_env_json_field_of_the_wrong_kind_is_one_line_naming_it(tmp_path: Path) -> None:
    def edit(env: dict[str, Any]) -> None:
        env["machine"] = "a laptop"

    bad = _edited_run(tmp_path, "bad", edit_env=edit)
    done = run_cli("report", str(bad), cwd=tmp_path, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert f"{bad / 'env.json'}: machine: Input should be a valid dictionary" in done.stderr


def test_fifos_in_a_run_folder_or_a_history_are_named_not_read(tmp_path: Path) -> None:
    for name in ("results.jsonl", "env.json"):
        folder = tmp_path / name.replace(".", "_")
        shutil.copytree(FIXTURE_RUN, folder)
        (folder / name).unlink()
        os.mkfifo(folder / name)
        done = run_cli("report", str(folder), cwd=tmp_path, timeout=120)
        assert done.returncode == 2 and f"{folder / name}: not a regular file" in done.stderr, done.stderr[-2000:]
    history = tmp_path / "history"
    history.mkdir()
    os.mkfifo(history / "20270101-x.parquet")
    done = run_limited(
        "from pathlib import Path\n"
        "from results.history import read_history\n"
        f"frame, problems = read_history(Path({str(history)!r}))\n"
        "print(len(frame), problems)\n", timeout_s=60)
    assert done.returncode == 0 and "20270101-x.parquet: not a regular file, skipped" in done.stdout, done.stderr


# -- 7. a calibration archive that expands to gigabytes ------------------------------------------------------------

def _deflate_bomb(path: Path, rows: int, row_values: int) -> None:
    """An .npz whose one float32 array of zeros is rows × row_values: tiny on disk, large in memory."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive, \
            archive.open("x.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False,
                                                      "shape": (rows, row_values)})
        zeros = bytes(row_values * 4)
        for _ in range(rows):
            member.write(zeros)


def test_a_calibration_archive_is_read_only_as_far_as_the_samples_used(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.npz"
    _deflate_bomb(bomb, rows=2_000, row_values=100_000)  # 800 MB of zeros in under 1 MB
    assert bomb.stat().st_size < 2**20
    done = run_limited(
        "from model_zoo.calibration import calibration_data\n"
        "from model_zoo.inputs import TensorSpec, InputLayout\n"
        "from model_zoo.requests import Calibration, ModelRef\n"
        "limit_memory()\n"
        f"data = calibration_data(ModelRef(path={str(tmp_path / 'm.onnx')!r}), Calibration(samples=20, "
        f"source={str(bomb)!r}), [TensorSpec('x', (None, 100000), 'float32')], InputLayout.from_json({{}}), 4)\n"
        "print(sum(len(feed['x']) for feed in data.feeds))\n",
        timeout_s=120, extra_address_space_mb=400)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-1] == "20"


def test_an_archive_that_would_expand_past_the_limit_or_holds_objects_is_refused(tmp_path: Path) -> None:
    from model_zoo.errors import ArtifactError
    from model_zoo.npz_inputs import NpzArchive

    huge = tmp_path / "huge.npz"
    with zipfile.ZipFile(huge, "w") as archive, archive.open("x.npy", "w") as member:
        np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": (2**20, 2**20)})
    with pytest.raises(ArtifactError, match=r"huge.npz: its arrays expand to 4096.0 GiB, over the 4 GiB limit"):
        NpzArchive(huge)
    negative = tmp_path / "negative.npz"
    with zipfile.ZipFile(negative, "w") as archive, archive.open("x.npy", "w") as member:
        np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": (-1, 4)})
    with pytest.raises(ArtifactError, match=r"negative.npz: not a readable .npz archive: .*negative dimension"):
        NpzArchive(negative)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ArtifactError, match="holds Python objects"):
        NpzArchive(pickled)


def test_the_lazy_reader_gives_numpys_arrays(tmp_path: Path) -> None:
    from model_zoo.npz_inputs import NpzArchive

    arrays = {"c": np.arange(24, dtype=np.float32).reshape(6, 4), "f": np.asfortranarray(np.arange(12).reshape(3, 4)),
              "scalar": np.array(16000)}
    np.savez_compressed(tmp_path / "a.npz", **arrays)
    archive = NpzArchive(tmp_path / "a.npz")
    for name, array in arrays.items():
        assert np.array_equal(archive.read(name), array) and archive.read(name).dtype == array.dtype
    assert np.array_equal(archive.read("c", leading=2), arrays["c"][:2])
    assert np.array_equal(archive.read("f", leading=1), arrays["f"])  # Fortran order: read whole


# -- 8. tooltips of passed cases -----------------------------------------------------------------------------------

def test_tooltips_of_passed_cases_carry_no_nan(tmp_path: Path) -> None:
    from reporting.html import write_report

    page = write_report([FIXTURE_RUN], tmp_path / "report.html").read_text()
    assert 'title="digits_cnn-fp32-b1-tflite_cpu"' in page  # passed: its id alone
    assert ": nan" not in page


# -- case counts and timeouts ---------------------------------------------------------------------------------------

MANY = """
name: many
models: [digits_cnn]
backends: [onnxruntime_cpu, tflite_cpu]
precisions: [fp32, fp16, int8_dynamic, int8]
batch_sizes: [{batches}]
measure: {{warmup_seconds: 0, min_seconds: 1}}
race: false
"""


def test_more_than_two_thousand_cases_run_only_when_confirmed(tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path, MANY.format(batches=", ".join(map(str, range(1, 301)))))  # 2,400 cases
    done = run_cli("run", str(scenario), "--out", str(tmp_path / "run"), timeout=300)
    assert done.returncode == 2 and not (tmp_path / "run").exists(), done.stderr[-2000:]
    assert f"{scenario}: 2,400 cases, at least 2.7 h of measuring" in done.stderr and "--yes" in done.stderr
    pytest_run = [sys.executable, "-m", "pytest", str(scenario), "-p", "no:cacheprovider", "--collect-only", "-q"]
    refused = subprocess.run(pytest_run, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert refused.returncode == 4 and "2,400 cases" in refused.stdout + refused.stderr, refused.stdout[-2000:]
    confirmed = subprocess.run([*pytest_run, "--accelbench-yes"], cwd=REPO, env=cli_env(), capture_output=True,
                               text=True, timeout=300)
    assert confirmed.returncode == 0 and "2400 tests collected" in confirmed.stdout, confirmed.stdout[-2000:]


def test_a_scenario_past_a_hundred_thousand_cases_is_refused_without_expanding(tmp_path: Path) -> None:
    from scenario.expand import TooManyCases
    from scenario.load import expand, load_scenario

    scenario = write_scenario(tmp_path, MANY.format(batches=", ".join(map(str, range(1, 20_001)))))
    started = time.perf_counter()
    with pytest.raises(TooManyCases, match=r"expands into 160,000 cases, over the 100,000 a scenario may hold"):
        expand(load_scenario(scenario))
    assert time.perf_counter() - started < 30


def test_a_timeout_over_a_day_is_refused_at_its_line(tmp_path: Path) -> None:
    from tests.conftest import assert_scenario_error

    scenario = write_scenario(tmp_path, """
        name: long
        models: [digits_cnn]
        backends: [onnxruntime_cpu]
        measure: {timeout_s: 90000}
    """)
    assert_scenario_error(scenario, 4, ["measure.timeout_s", "less than or equal to 86400"])


def test_a_savedmodel_nested_deeper_than_python_recurses_or_linking_to_the_root_is_one_line(
        deep_tmp_path: Path, digits_artifacts: dict[str, Path]) -> None:
    """os.walk recurses on Python 3.11: a SavedModel folder 1,200 levels deep was a RecursionError traceback at load
    time, and one holding a link to / walked the whole disk. The walk is a stack bounded at 10,000 entries."""
    deep = nested_savedmodel(digits_artifacts["tensorflow"], deep_tmp_path / "deep")
    rooted = deep_tmp_path / "rooted"
    shutil.copytree(digits_artifacts["tensorflow"], rooted)
    (rooted / "everything").symlink_to("/")
    for model, expected in ((deep, "LOADED"), (rooted, "holds more than 10,000 files and folders: not a model")):
        scenario = write_scenario(deep_tmp_path, f"""
            name: walk
            models: [{{path: {model}}}]
            backends: [onnxruntime_cpu]
        """, name=f"{model.name}.yaml")
        message = load_error(scenario)
        assert expected in message and "\n" not in message, message


def test_an_env_json_of_a_gigabyte_is_refused_without_reading_it(tmp_path: Path) -> None:
    """env.json was read whole by the run folder's reader and by resume: a 1 GiB sparse file put in its place cost
    a gigabyte (and more to parse). Both read it as a bounded regular file."""
    folder = tmp_path / "run"
    shutil.copytree(FIXTURE_RUN, folder)
    with open(folder / "env.json", "wb") as handle:
        handle.truncate(2**30)
    done = run_limited(
        "from pathlib import Path\nfrom results.runs import RunFolderError, load_run\n"
        "from results.store import RunFolderProblem, RunStore\nlimit_memory()\n"
        f"folder = Path({str(folder)!r})\n"
        "try:\n    load_run(folder)\nexcept RunFolderError as error:\n    print(error)\n"
        "try:\n    RunStore(folder)._reopen({})\nexcept RunFolderProblem as error:\n    print(error)\n",
        extra_address_space_mb=256)
    assert done.returncode == 0, done.stderr[-2000:]
    reader, resume = done.stdout.strip().splitlines()
    assert reader == f"{folder / 'env.json'}: 1024 MiB, more than accelbench ever writes there (16 MiB)"
    assert resume.startswith(f"{folder}: not a run folder to resume (") and "1024 MiB" in resume
