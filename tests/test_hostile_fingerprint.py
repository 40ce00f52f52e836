"""Hostile input, round 2 (issue 24): fingerprints that hold across VMs of one type, a run folder from a machine
that differs in every field, reasons that stay on one line, inputs too big to generate, and a long plain list
that is not an alias bomb.

The committed fixture tests/data/run_0684769 was written on another VM: these tests never assume that this machine
matches it. Where a test needs "this machine", it writes this machine's collect_env() into a copy of the folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.conftest import FAST_MEASURE, REPO, by_id, expand_file, run_cases, run_cli, write_scenario
from tests.test_hostile_input import load_error, run_limited

FIXTURE_RUN = REPO / "tests" / "data" / "run_0684769"
FIXTURE_SCENARIO = FIXTURE_RUN / "fixture.yaml"


def memory_class_gib(gib: float) -> float | None:
    from sysinfo.envinfo import memory_class_gib as of

    return of(gib)


def this_machine() -> dict[str, Any]:
    from sysinfo.envinfo import collect_env

    return collect_env()


def same_type_other_vm(env: dict[str, Any]) -> dict[str, Any]:
    """``env`` as another VM of the same type reports it: another kernel build, host name, memory total (a tenth
    of a GiB off), physical core count and affinity, another interpreter path, commit and time."""
    machine = dict(env["machine"])
    _, with_, libc = str(machine.get("os")).partition("-with-")  # the C library stays: software that matters
    machine["os"] = f"Linux-6.18.44-fc-v1272-x86_64{with_}{libc}"
    # a tenth of a GiB off, on whichever side stays in this machine's class (a class is a nominal size)
    below = round(machine["memory_gb"] - 0.1, 1)
    machine["memory_gb"] = below if memory_class_gib(below) == memory_class_gib(machine["memory_gb"]) \
        else round(machine["memory_gb"] + 0.1, 1)
    machine["cpu_physical"] = max(1, (machine.get("cpu_physical") or 2) - 1)
    machine["cpu_affinity"] = 1
    return {**env, "machine": machine, "hostname": "runner-7f3a", "python_executable": "/opt/elsewhere/bin/python",
            "git": {"id": "f" * 40, "branch": "other", "dirty": True}, "collected_at": "2030-01-01T00:00:00+00:00",
            "env_id": "000000000000", "machine_id": "000000000000"}


def different_in_every_field(env: dict[str, Any]) -> dict[str, Any]:
    """An env.json none of whose fields is this machine's: CPU, counts, memory, OS, architecture, Python, libraries,
    GPUs, git, host name, paths, ids and time."""
    libraries = {name: f"{version}.post9" for name, version in env["libraries"].items()}
    libraries["tensorrt"] = "10.99.0"
    return {
        "env_id": "deadbeef0001", "machine_id": "deadbeef0002", "collected_at": "2031-02-03T04:05:06+00:00",
        "hostname": "gpu-box-42",
        "machine": {"cpu_model": "Imaginary Silicon X9000", "cpu_logical": 384, "cpu_physical": 192,
                    "cpu_affinity": 7, "memory_gb": 1511.8, "os": "Linux-5.4.0-1-aws-aarch64-with-glibc2.17",
                    "arch": "aarch64", "python": "3.13.99",
                    "gpu": {"driver_version": "999.1", "cuda_driver_version": "14.2",
                            "devices": [{"name": "NVIDIA Z900", "memory_mb": 196608}] * 2}},
        "libraries": libraries, "python_executable": "/nowhere/venv/bin/python3",
        "git": {"id": "0123456789" * 4, "branch": "feature/x", "time": "2031-02-01T00:00:00+00:00",
                "author_time": "2031-02-01T00:00:00+00:00", "dirty": True},
    }


def copy_fixture(tmp_path: Path, name: str, env: dict[str, Any]) -> Path:
    folder = tmp_path / name
    shutil.copytree(FIXTURE_RUN, folder)
    (folder / "env.json").write_text(json.dumps(env))
    return folder


def one_line(done: Any) -> str:
    message = done.stderr.strip()
    assert done.returncode == 2 and len(message.splitlines()) == 1 and "Traceback" not in done.stderr, (
        done.returncode, done.stdout[-1500:], done.stderr[-1500:])
    return message


# -- 1. fingerprints stable across VMs of one type ---------------------------------------------------------------

def test_two_vms_of_one_type_are_one_machine_and_one_fingerprint() -> None:
    from sysinfo.envinfo import env_differences, env_id, machine_id, memory_class_gib

    here = this_machine()
    there = same_type_other_vm(here)
    assert machine_id(there["machine"]) == machine_id(here["machine"]) == here["machine_id"]
    assert env_id(there) == env_id(here) == here["env_id"]
    assert env_differences(there, here) == []
    assert memory_class_gib(23.5) == memory_class_gib(23.6) == 24
    # nominal sizes between powers of two (28, 56, 112 GiB VM types) stay whole, and classes still differ
    assert memory_class_gib(27.4) == memory_class_gib(27.8) == 28 and memory_class_gib(55.2) == 56
    assert memory_class_gib(7.7) == 8 and memory_class_gib(15.6) == 16 and memory_class_gib(31.3) == 32
    # the two VMs, as their env.json files read: one machine
    fixture = json.loads((FIXTURE_RUN / "env.json").read_text())
    twin = {**fixture["machine"], "os": "Linux-6.18.44-fc-v1272-x86_64-with-glibc2.36", "memory_gb": 23.6}
    assert machine_id(twin) == machine_id(fixture["machine"])


def test_hardware_and_the_software_that_matters_still_tell_machines_apart() -> None:
    from sysinfo.envinfo import env_differences, env_id, machine_id

    here = this_machine()
    machine = here["machine"]  # each change derived from this machine's own values: true on any machine
    for change in ({"cpu_model": f"Other than {machine['cpu_model']}"}, {"cpu_logical": machine["cpu_logical"] + 1},
                   {"arch": "x86_64" if machine["arch"] == "aarch64" else "aarch64"},
                   {"memory_gb": machine["memory_gb"] * 4},
                   {"gpu": {"devices": [{"name": "Imaginary GPU 7", "memory_mb": 81559}]}}):
        other = {**here["machine"], **change}
        assert machine_id(other) != machine_id(here["machine"]), change
    upgraded = {**here, "libraries": {**here["libraries"], "numpy": "0.0.1"}}
    assert machine_id(upgraded["machine"]) == here["machine_id"] and env_id(upgraded) != here["env_id"]
    assert env_differences(upgraded, here) == [f"numpy 0.0.1 there, {here['libraries']['numpy']} here"]
    driver = {**here["machine"], "gpu": {"driver_version": "580", "devices": [{"name": "G", "memory_mb": 1024}]}}
    newer = {**driver, "gpu": {**driver["gpu"], "driver_version": "581"}}
    assert machine_id(driver) == machine_id(newer)  # a driver upgrade: same card, other software
    assert env_differences({"machine": driver}, {"machine": newer}) == ["GPU driver 580 there, 581 here"]


def test_resume_on_another_vm_of_the_same_type_goes_on(tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path, "run", same_type_other_vm(this_machine()))
    done = run_cli("run", "--resume", str(folder), str(FIXTURE_SCENARIO), cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "6 of 6 cases recorded, 0 to run" in done.stderr


@pytest.mark.parametrize("change", ["library", "cpu", "every field"])
def test_resume_on_another_machine_or_software_is_one_line_naming_what_differs(tmp_path: Path, change: str) -> None:
    here = this_machine()
    if change == "library":
        env = {**here, "libraries": {**here["libraries"], "numpy": "0.0.1"}}
        says = [f"numpy 0.0.1 there, {here['libraries']['numpy']} here"]
    elif change == "cpu":
        env = {**here, "machine": {**here["machine"], "cpu_model": "Imaginary Silicon X9000"}}
        says = [f"CPU Imaginary Silicon X9000 there, {here['machine']['cpu_model']} here"]
    else:
        env = different_in_every_field(here)
        says = ["CPU Imaginary Silicon X9000 there", "logical CPUs 384 there", "and "]
    folder = copy_fixture(tmp_path, "run", env)
    before = (folder / "results.jsonl").read_bytes()
    message = one_line(run_cli("run", "--resume", str(folder), str(FIXTURE_SCENARIO), cwd=tmp_path, timeout=300))
    assert message.startswith(f"error: {folder} was measured on another machine or software (")
    assert "fingerprint" not in message and message.endswith("start a new run instead of mixing the two")
    for fragment in says:
        assert fragment in message, message
    assert (folder / "results.jsonl").read_bytes() == before  # nothing measured is lost


def test_every_reader_takes_a_run_from_a_machine_that_differs_in_every_field(tmp_path: Path) -> None:
    """load_run, the HTML report, history add and list, trend and compare all read it; only resume refuses."""
    from reporting.html import write_report
    from results.history import read_history
    from results.runs import load_run
    from sysinfo.envinfo import machine_id

    here = this_machine()
    foreign_env = different_in_every_field(here)
    assert not {k for k, v in foreign_env["machine"].items() if here["machine"].get(k) == v}
    assert not {k for k, v in foreign_env.items() if k != "machine" and here.get(k) == v}
    foreign = copy_fixture(tmp_path, "foreign", foreign_env)
    mine = copy_fixture(tmp_path, "mine", {**here, "collected_at": "2031-02-04T00:00:00+00:00"})

    run = load_run(foreign)
    assert run.machine_id == machine_id(foreign_env["machine"]) != load_run(mine).machine_id
    assert len(run.records) == 6
    page = write_report([foreign, mine], tmp_path / "both.html").read_text()
    assert "Imaginary Silicon X9000" in page and "2 machines" in page

    history = tmp_path / "history"
    for command in (("report", str(foreign)), ("history", "add", str(foreign), "--history", str(history)),
                    ("history", "add", str(mine), "--history", str(history)), ("history", "list", "--history",
                                                                             str(history)),
                    ("trend", "--history", str(history), "-o", str(tmp_path / "trend.html"))):
        done = run_cli(*command, cwd=tmp_path, timeout=300)
        assert done.returncode == 0 and "Traceback" not in done.stderr, (command, done.stdout[-1500:],
                                                                          done.stderr[-1500:])
    listed = run_cli("history", "list", "--history", str(history), cwd=tmp_path).stdout
    assert "Imaginary" in listed and str(here["machine"]["cpu_model"]).split()[0] in listed
    frame, problems = read_history(history, ["machine_id"])
    assert not problems and set(frame["machine_id"]) == {run.machine_id, here["machine_id"]}

    done = run_cli("compare", str(foreign), str(mine), "--history", str(history), cwd=tmp_path, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout[-2000:] + done.stderr[-2000:]
    assert "measured on different machines (CPU Imaginary Silicon X9000 base" in " ".join(done.stdout.split())
    done = run_cli("compare", str(foreign), str(mine), "--any-machine", "--history", str(history), cwd=tmp_path)
    assert done.returncode == 0 and "software differs" in " ".join(done.stdout.split()), done.stdout[-2000:]
    done = run_cli("compare", "@latest", str(mine), "--history", str(history), cwd=tmp_path, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout[-2000:] + done.stderr[-2000:]
    assert "no earlier run" in " ".join(done.stdout.split())  # the foreign run is never this machine's @latest


def test_runs_written_before_machines_were_identified_as_now_join_todays(tmp_path: Path) -> None:
    """An env.json (and a history) holding the old ids, which hashed the exact memory and the kernel build: the
    run is still this machine's, in the report, in compare and in the history's noise floor."""
    from results.history import case_medians, read_history
    from results.runs import load_run

    here = this_machine()
    old = {**same_type_other_vm(here), "machine_id": "0af2e03cf7e9", "env_id": "c782ae55b770"}
    folder = copy_fixture(tmp_path, "old", old)
    assert load_run(folder).machine_id == here["machine_id"]
    history = tmp_path / "history"
    done = run_cli("history", "add", str(folder), "--history", str(history), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    frame, _ = read_history(history, ["machine_id"])
    assert set(frame["machine_id"]) == {here["machine_id"]}
    assert case_medians(history, here["machine_id"])  # the noise floor finds its runs
    again = run_cli("history", "add", str(folder), "--history", str(history), cwd=tmp_path)
    assert again.returncode == 0 and len(list(history.glob("*.parquet"))) == 1  # adding twice changes nothing


# -- 2. a reason is one line whatever the library says -----------------------------------------------------------

LIBRARY_MESSAGE = "pthread_create failed, error code: 11\n   Resource temporarily   unavailable\n"


def test_a_reason_is_one_line_in_every_record() -> None:
    from results.ab_record import AbRecord
    from results.record import Record

    record = Record(case_id="c", backend="onnxruntime_cpu", precision="fp32", batch_size=1, status="failed",
                    reason=LIBRARY_MESSAGE)
    assert record.reason == "pthread_create failed, error code: 11 Resource temporarily unavailable"
    record.reason = "prepare:\r\n  " + LIBRARY_MESSAGE  # set later: checked too
    assert record.reason == "prepare: pthread_create failed, error code: 11 Resource temporarily unavailable"
    assert Record.read({**record.to_json(), "reason": "a\n\nb "}).reason == "a b"
    side = {"name": "base", "spec": {}, "description": "x"}
    ab = AbRecord.read({"case_id": "c", "scenario": "s", "model": "m", "backend": "b", "backend_label": "b",
                        "precision": "fp32", "batch_size": 1, "method": "lockstep", "status": "failed",
                        "reason": LIBRARY_MESSAGE, "base": side, "new": {**side, "name": "new"}, "threshold": 0.05,
                        "min_effect": 0.025, "alpha": 0.01, "confidence": 0.95}, "ab.jsonl")
    assert ab.reason == "pthread_create failed, error code: 11 Resource temporarily unavailable"


def tiny_onnx(path: Path, dims: list[Any]) -> Path:
    """y = relu(x), x float32 of ``dims`` (a str is a dynamic dimension)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "tiny", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, path)
    return path


def test_a_case_whose_library_fails_with_a_wrapped_message_records_one_line(tmp_path: Path) -> None:
    from scenario.skips import cached_availability
    from tests.fault_backend import REGISTRATION

    tiny_onnx(tmp_path / "tiny.onnx", ["batch", 8])
    scenario = write_scenario(tmp_path, f"""
        name: lines
        models: [{{path: tiny.onnx, label: tiny}}]
        backends: [{{name: fault_ort, fault: raise_lines, fault_at: prepare, label: wraps}}]
        measure: {FAST_MEASURE}
    """)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ACCELBENCH_BACKENDS", REGISTRATION)
        cached_availability.cache_clear()
        records = by_id(run_cases(tmp_path / "run", expand_file(scenario)))
    cached_availability.cache_clear()
    [record] = records.values()
    assert record["status"] == "failed"
    assert "pthread_create failed, error code: 11 Resource temporarily unavailable" in record["reason"]
    assert "\n" not in record["reason"] and "  " not in record["reason"] and record["reason"] == record[
        "reason"].strip()
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "run").rglob("*.log"))
    assert "Resource temporarily   unavailable" in logs  # the whole text stays in the worker's log


# -- 3. inputs too big to generate -------------------------------------------------------------------------------

HUGE = "{x: {shape: [30000, 30000, 3]}}"  # 2.7e9 values: 10 GiB of float32 per sample


def test_an_input_too_big_to_generate_is_refused_at_its_line_before_anything_starts(tmp_path: Path) -> None:
    tiny_onnx(tmp_path / "dynamic.onnx", ["batch", "h", "w", "c"])
    scenario = write_scenario(tmp_path, f"""
        name: huge
        models:
          - path: dynamic.onnx
            inputs: {HUGE}
        backends: [onnxruntime_cpu]
    """)
    message = load_error(scenario)
    assert message == (f"{scenario}:4: models[0].inputs.x.shape: input 'x' at batch 1 is 10.1 GiB of float32 "
                       "[1, 30000, 30000, 3], over the 2 GiB limit on one call's data (ACCELBENCH_MAX_FEED_GIB=<GiB> "
                       "raises it)"), message
    done = run_cli("run", str(scenario), "--out", str(tmp_path / "out"), cwd=tmp_path, timeout=120)
    assert one_line(done) and "inputs.x.shape" in done.stderr and not (tmp_path / "out").exists()


def test_a_file_that_fixes_a_huge_shape_is_refused_at_the_models_line(tmp_path: Path) -> None:
    tiny_onnx(tmp_path / "fixed.onnx", [1, 30000, 30000, 3])
    scenario = write_scenario(tmp_path, """
        name: fixed
        models:
          - {path: fixed.onnx}
        backends: [onnxruntime_cpu]
    """)
    message = load_error(scenario)
    assert message.startswith(f"{scenario}:3: models[0].path: input 'x' at batch 1 is 10.1 GiB of float32 "
                              "[1, 30000, 30000, 3], over the 2 GiB limit"), message


def test_a_batch_that_makes_an_input_too_big_is_refused_at_the_batch_sizes(tmp_path: Path) -> None:
    tiny_onnx(tmp_path / "dynamic.onnx", ["batch", 1000, 1000, 3])  # 11.4 MiB a sample: fine alone
    scenario = write_scenario(tmp_path, """
        name: batches
        models:
          - {path: dynamic.onnx, label: small}
          - {path: dynamic.onnx, label: big, batch_sizes: [1, 256]}
        backends: [onnxruntime_cpu]
        batch_sizes: [1, 200]
    """)
    message = load_error(scenario)
    lines = message.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"{scenario}:4: models[1].batch_sizes: input 'x' at batch 256 is 2.9 GiB"), lines
    assert lines[1].startswith(f"{scenario}:6: batch_sizes: input 'x' at batch 200 is 2.2 GiB"), lines


def test_the_feed_limit_is_raised_by_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scenario.load import load_scenario

    tiny_onnx(tmp_path / "dynamic.onnx", ["batch", "h", "w", "c"])
    scenario = write_scenario(tmp_path, f"""
        name: raised
        models: [{{path: dynamic.onnx, inputs: {HUGE}}}]
        backends: [onnxruntime_cpu]
    """)
    for value in ("inf", "11"):
        monkeypatch.setenv("ACCELBENCH_MAX_FEED_GIB", value)
        assert load_scenario(scenario).scenario.models[0].inputs is not None
    for value in ("0", "-3", "nan", "lots"):  # a mistake keeps the default, never "no limit"
        monkeypatch.setenv("ACCELBENCH_MAX_FEED_GIB", value)
        assert "over the 2 GiB limit" in load_error_in_process(scenario)


def load_error_in_process(scenario: Path) -> str:
    from scenario.load import ScenarioError, load_scenario

    with pytest.raises(ScenarioError) as caught:
        load_scenario(scenario)
    return str(caught.value)


def test_a_zoo_model_asked_for_a_huge_shape_is_refused_at_its_line(tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path, """
        name: zoo
        models:
          - {name: mobilenet_v2, input_shape: [30000, 30000, 3]}
        backends: [onnxruntime_cpu]
    """)
    message = load_error(scenario)
    assert message.startswith(f"{scenario}:3: models[0].input_shape: input 'input' at batch 1 is 10.1 GiB"), message


def test_a_worker_given_a_huge_description_refuses_before_making_data() -> None:
    """Any front door (an ab side's model=, an edited case) reaches make_feeds and make_samples: they say so
    instead of allocating."""
    done = run_limited(
        "from model_zoo.inputs import InputError, InputPlan, make_feeds, make_samples\n"
        "limit_memory()\n"
        "plan = InputPlan('x', 'float32', 0, (30000, 30000, 3), 0.0, 1.0)\n"
        "for make in (lambda: make_feeds([plan], 1, 0), lambda: make_samples([plan], 16, 0)):\n"
        "    try:\n        make()\n    except InputError as error:\n        print(error)\n",
        timeout_s=60, extra_address_space_mb=256)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and all("input 'x' at batch 1 is 10.1 GiB of float32" in line for line in lines), lines


@pytest.mark.parametrize(("dtype", "values"), [("float32", 96 * 2**20), ("int8", 256 * 2**20), ("bool", 256 * 2**20)])
def test_inputs_are_generated_in_their_own_dtype(dtype: str, values: int) -> None:
    """384 MiB of float32 took 768 MiB of float64 on the way, 256 MiB of int8 2 GiB of int64: under an address-space
    limit of the input's size plus 160 MiB, generating it must succeed."""
    size_mb = values * np.dtype(dtype).itemsize // 2**20
    done = run_limited(
        "import numpy as np\n"
        "from model_zoo.inputs import InputPlan, make_feeds\n"
        "limit_memory()\n"
        f"plan = InputPlan('x', {dtype!r}, 0, ({values},), 0.0, {2.0 if dtype == 'int8' else 1.0})\n"
        "[data] = make_feeds([plan], 1, 0)\n"
        "print(data.dtype, data.shape)\n",
        timeout_s=120, extra_address_space_mb=size_mb + 160)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [dtype, "(1,", f"{values})"]


def test_generating_a_chunk_at_a_time_draws_the_same_data() -> None:
    """Calibration and fidelity data made before keep their values: each value takes the generator's next number."""
    from model_zoo.inputs import GENERATE_CHUNK, InputPlan

    shape = (3, GENERATE_CHUNK + 17)
    for dtype in ("float32", "float16", "float64"):
        plan = InputPlan("x", dtype, 0, shape[1:], -2.0, 5.0)
        got = plan.generate(np.random.default_rng(7), 3)
        expected = np.random.default_rng(7).uniform(-2.0, 5.0, size=(3, *shape[1:])).astype(dtype)
        assert got.dtype == np.dtype(dtype) and np.array_equal(got, expected)
    small = InputPlan("ids", "int32", 0, (4, 5), 0, 100)
    expected = np.random.default_rng(1).integers(0, 100, size=(2, 4, 5)).astype("int32")
    assert np.array_equal(small.generate(np.random.default_rng(1), 2), expected)


# -- 4. a long plain list is too many values, not an alias bomb --------------------------------------------------

def test_a_long_plain_list_is_refused_as_too_many_values_not_as_aliases(tmp_path: Path) -> None:
    scenario = tmp_path / "long.yaml"
    scenario.write_text("name: long\nmodels: [digits_cnn]\nbackends: [onnxruntime_cpu]\n"
                        f"batch_sizes: [{', '.join(['1'] * 100_001)}]\n")
    message = load_error(scenario)
    assert message == (f"{scenario}:4: invalid YAML: too many values in the file: more than 100,000 in what starts "
                       "here (a scenario holds a few thousand: split it)"), message
    assert "alias" not in message
    # an alias-built list of the same size is still blamed on its aliases
    aliased = tmp_path / "aliased.yaml"
    aliased.write_text("name: aliased\nten: &t [" + ", ".join(["1"] * 10) + "]\nhundred: &h [" + ", ".join(
        ["*t"] * 10) + "]\nmodels: [digits_cnn]\nbackends: [onnxruntime_cpu]\nbatch_sizes: [" + ", ".join(
        ["*h"] * 1001) + "]\n")
    assert load_error(aliased) == f"{aliased}:6: invalid YAML: the aliases here expand to more than 100,000 values"


def test_a_sample_set_is_bounded_like_one_feed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fidelity reference and calibration hold every sample at once: 16 samples of an input just under the
    per-feed limit were 16 times the limit. Fewer samples are drawn where they would pass it, and the arrays say
    how many; small inputs keep every sample, with the same data as before."""
    from model_zoo.inputs import InputPlan, make_samples

    monkeypatch.setenv("ACCELBENCH_MAX_FEED_GIB", str(4 / 1024))  # 4 MiB
    big = InputPlan("x", "float32", 0, (600, 600), 0.0, 1.0)  # 1.44 MB a sample: two fit
    small = InputPlan("y", "int8", 0, (3,), 0.0, 5.0)
    arrays = make_samples([big, small], 16, seed=3)
    assert [a.shape for a in arrays] == [(2, 1, 600, 600), (2, 1, 3)]
    assert arrays[0].dtype == np.float32 and arrays[1].dtype == np.int8
    full = make_samples([small], 16, seed=3)
    rng = np.random.default_rng(3)
    assert full[0].shape == (16, 1, 3)
    assert np.array_equal(full[0], np.stack([small.generate(rng, 1) for _ in range(16)]))


def test_one_calls_data_is_bounded_across_its_inputs_and_any_size_is_said_in_one_line() -> None:
    """Ten inputs of 1.9 GiB each passed a limit checked input by input (19 GiB a call); a described shape whose
    size passes 1e308 bytes was an OverflowError traceback where the message divided it as a float."""
    from model_zoo.inputs import InputPlan, feed_problem, oversized_input

    inputs = [InputPlan(f"x{i}", "float32", 0, (int(1.9 * 2**28),), 0.0, 1.0) for i in range(10)]
    assert feed_problem(inputs[:1], 1) is None
    problem = feed_problem(inputs, 1)
    assert problem is not None and "with the other inputs 19.0 GiB, over the 2 GiB limit on one call's data" in problem
    assert oversized_input(inputs, 1) is inputs[0]
    huge = InputPlan("x", "float32", 0, (2**62,) * 19, 0.0, 1.0)
    problem = feed_problem([huge], 1)
    assert problem is not None and "more than 1,000,000,000 GiB" in problem and "\n" not in problem
    assert len(problem) < 400
