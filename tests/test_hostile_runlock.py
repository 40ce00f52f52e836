"""Run folders under concurrent writers, resumes of the wrong kind, and damaged A/B records (issue 24).

Every writer of a run folder (run, run --resume, ab, ab --resume, the pytest front door) holds the folder's lock for
as long as it lives: a second writer is refused with one line naming the holder, and a writer killed with SIGKILL
leaves nothing in the way of a resume. The races are real processes held mid-case by a worker that waits at a gate
(tests/fault_backend.py's fault "wait"), so no test depends on the machine's speed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from results.store import LOCK_NAME
from tests.conftest import REPO, cli_env, run_cli, write_scenario
from tests.test_run_folder_fuzz import assert_names_file_and_field

pytestmark = pytest.mark.e2e

MEASURE = "{warmup_runs: 2, warmup_seconds: 0, min_runs: 20, min_seconds: 0.05, max_seconds: 5, timeout_s: 300}"
CASES = 3


def gated_scenario(folder: Path, model: Path, gate: Path) -> Path:
    """Three cases whose workers each wait at ``gate`` while it is closed (no file ``go`` in it)."""
    gate.mkdir(exist_ok=True)
    return write_scenario(folder, f"""
        name: locked
        models: [{{path: {model}}}]
        backends: [{{name: fault_ort, threads: 1, fault: wait, fault_gate: {gate}}}]
        batch_sizes: [1, 2, 4]
        measure: {MEASURE}
    """)


def open_gate(gate: Path) -> None:
    (gate / "go").touch()


def close_gate(gate: Path) -> None:
    (gate / "go").unlink(missing_ok=True)
    for marker in gate.glob("waiting-*"):
        marker.unlink()


def waiting(gate: Path) -> int:
    """How many workers reached the gate: each is a runner that got as far as measuring a case."""
    return len(list(gate.glob("waiting-*")))


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout_s:g} s for {what}"
        time.sleep(0.05)


def start(*args: str) -> subprocess.Popen[str]:
    """`accelbench ARGS` started, not waited for."""
    script = Path(sys.executable).with_name("accelbench")
    return subprocess.Popen([str(script), *args], cwd=REPO, env=cli_env(), text=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def start_pytest(scenario: Path, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pytest", str(scenario), "-p", "no:cacheprovider", "-q",
                             "--accelbench-out", str(out)], cwd=REPO, env=cli_env(), text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def case_ids(run_dir: Path) -> list[str]:
    return [json.loads(line)["case_id"] for line in (run_dir / "results.jsonl").read_text().splitlines()]


def race(runners: list[subprocess.Popen[str]], gate: Path) -> list[tuple[int, str]]:
    """Let the runners race for one folder: the gate opens once one of them has given up, or once two workers
    wait at it (two runners measuring at once: the fault under test). Returns each one's (status, output)."""
    wait_until(lambda: any(r.poll() is not None for r in runners) or waiting(gate) >= 2,
               "a runner to be refused or two runners to measure")
    open_gate(gate)
    ends = []
    for runner in runners:
        stdout, stderr = runner.communicate(timeout=300)
        ends.append((runner.returncode, stdout + stderr))
    return ends


@pytest.fixture
def model(tmp_path: Path, digits_artifacts: dict[str, Path]) -> Path:
    """A user's .onnx (its fp32 reference is ONNX Runtime, which starts in well under a second)."""
    path = tmp_path / "model.onnx"
    shutil.copy(digits_artifacts["onnxruntime_cpu"], path)
    return path


@pytest.fixture
def half_done(tmp_path: Path, model: Path, test_backends: None) -> tuple[Path, Path, Path]:
    """(scenario, run folder, gate): a run folder with one of its three cases recorded, as a runner killed after
    the first case leaves it, and the gate closed."""
    gate = tmp_path / "gate"
    scenario = gated_scenario(tmp_path, model, gate)
    open_gate(gate)
    run_dir = tmp_path / "run"
    done = run_cli("run", str(scenario), "--out", str(run_dir))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    first = (run_dir / "results.jsonl").read_text().splitlines(keepends=True)[0]
    (run_dir / "results.jsonl").write_text(first)
    close_gate(gate)
    return scenario, run_dir, gate


# -- 1. one writer at a time -------------------------------------------------------------------------------------

def test_two_resumes_at_once_one_runs_the_rest_and_the_other_is_refused_naming_it(
        tmp_path: Path, half_done: tuple[Path, Path, Path]) -> None:
    """Two `run --resume` of one folder started together: both resumed and left five records for three cases. Now
    one completes the run and the other is refused with one line naming the holder; the history takes the run."""
    _, run_dir, gate = half_done
    runners = [start("run", "--resume", str(run_dir)) for _ in range(2)]
    ends = race(runners, gate)
    assert sorted(status for status, _ in ends) == [0, 2], ends
    refused = next(output for status, output in ends if status == 2).strip()
    holder = next(runner for runner, (status, _) in zip(runners, ends, strict=True) if status == 0)
    assert len(refused.splitlines()) == 1 and "Traceback" not in refused, refused
    assert f"{run_dir} is being written by another process, held by pid {holder.pid} " \
           f"(accelbench run --resume {run_dir})" in refused, refused
    ids = case_ids(run_dir)
    assert len(ids) == CASES and len(set(ids)) == CASES, ids
    done = run_cli("history", "add", str(run_dir), "--history", str(tmp_path / "history"))
    assert done.returncode == 0, done.stderr


def test_a_resume_while_the_run_goes_on_is_refused_and_after_kill_9_it_completes_the_run(
        tmp_path: Path, model: Path, test_backends: None) -> None:
    """While a run measures, `--resume` of its folder is refused, naming the run; once the run is killed with
    SIGKILL (no cleanup of any kind), the kernel has dropped its lock and `--resume` completes the folder."""
    gate = tmp_path / "gate"
    scenario = gated_scenario(tmp_path, model, gate)
    run_dir = tmp_path / "run"
    runner = start("run", str(scenario), "--out", str(run_dir))
    try:
        wait_until(lambda: waiting(gate) == 1 or runner.poll() is not None, "the run's first worker")
        assert runner.poll() is None, runner.communicate()
        try:
            done = run_cli("run", "--resume", str(run_dir), timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail("a resume while the run went on was not refused: it measured beside the run")
        message = done.stderr.strip()
        assert done.returncode == 2 and len(message.splitlines()) == 1, done.stdout[-2000:] + done.stderr[-2000:]
        assert f"held by pid {runner.pid} (accelbench run {scenario} --out {run_dir})" in message, message
        assert waiting(gate) == 1  # the refused resume measured nothing
    finally:
        os.kill(runner.pid, signal.SIGKILL)
        runner.communicate(timeout=60)
    assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == runner.pid  # left behind, and harmless
    open_gate(gate)
    done = run_cli("run", "--resume", str(run_dir))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"0 of {CASES} cases recorded, {CASES} to run" in done.stderr
    assert len(set(case_ids(run_dir))) == CASES == len(case_ids(run_dir))


def test_two_new_runs_given_one_folder_leave_one_winner(tmp_path: Path, model: Path, test_backends: None) -> None:
    """`accelbench run --out DIR` and `pytest scenario.yaml --accelbench-out DIR` started together: one writes the
    folder, the other is refused with one line (held, or no longer empty), and the folder holds one run."""
    gate = tmp_path / "gate"
    scenario = gated_scenario(tmp_path, model, gate)
    run_dir = tmp_path / "run"
    runners = [start("run", str(scenario), "--out", str(run_dir)), start_pytest(scenario, run_dir)]
    ends = race(runners, gate)
    assert sorted(status for status, _ in ends) == [0, 2], ends
    refused = next(output for status, output in ends if status == 2)
    lines = [line for line in refused.splitlines() if str(run_dir) in line]
    assert len(lines) == 1 and "Traceback" not in refused, refused
    assert "held by pid" in lines[0] or "is not empty" in lines[0], lines
    ids = case_ids(run_dir)
    assert len(ids) == CASES and len(set(ids)) == CASES, ids


def test_readers_ignore_the_lock_and_its_file(tmp_path: Path, half_done: tuple[Path, Path, Path]) -> None:
    """While a resume holds the folder, the report, the history and compare read it as they would any folder; a
    folder that holds nothing but a lock file (a run killed before it wrote anything) takes a new run."""
    scenario, run_dir, gate = half_done
    earlier = tmp_path / "earlier"
    shutil.copytree(run_dir, earlier)
    runner = start("run", "--resume", str(run_dir))
    try:
        wait_until(lambda: waiting(gate) == 1 or runner.poll() is not None, "the resume's first worker")
        assert runner.poll() is None, runner.communicate()
        assert run_cli("report", str(run_dir)).returncode == 0
        assert run_cli("history", "add", str(run_dir), "--history", str(tmp_path / "history")).returncode == 0
        assert run_cli("compare", str(earlier), str(run_dir), "--no-noise-floor").returncode == 0
    finally:
        open_gate(gate)
        runner.communicate(timeout=300)
    assert runner.returncode == 0
    only_lock = tmp_path / "only-lock"
    only_lock.mkdir()
    (only_lock / LOCK_NAME).write_text('{"pid": 1, "command": "accelbench run killed.yaml"}')
    done = run_cli("run", str(scenario), "--out", str(only_lock), "-k", "b1")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_a_lock_file_that_is_not_a_file_is_refused_not_waited_on(tmp_path: Path, kind: str) -> None:
    from results.store import RunFolderProblem, RunStore

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "env.json").write_text(json.dumps({"env_id": "e"}))
    if kind == "fifo":
        os.mkfifo(folder / LOCK_NAME)
    else:
        (folder / LOCK_NAME).symlink_to("/dev/zero")
    with pytest.raises(RunFolderProblem) as caught:
        RunStore(folder).reopen({"env_id": "e"})
    assert str(caught.value).startswith(f"{folder / LOCK_NAME}: ") and "\n" not in str(caught.value)


# -- 2. the history takes one record per case -----------------------------------------------------------------------

FIXTURE_RUN = REPO / "tests" / "data" / "run_0684769"


def test_history_add_refuses_a_case_recorded_twice(tmp_path: Path) -> None:
    """Five records for three cases (two writers at once, or an edit) entered the history as they were."""
    folder = tmp_path / "run"
    shutil.copytree(FIXTURE_RUN, folder)
    lines = (folder / "results.jsonl").read_text().splitlines(keepends=True)
    (folder / "results.jsonl").write_text("".join([*lines, lines[1]]))
    twice = json.loads(lines[1])["case_id"]
    done = run_cli("history", "add", str(folder), "--history", str(tmp_path / "history"), cwd=tmp_path)
    message = done.stderr.strip()
    assert done.returncode == 2 and len(message.splitlines()) == 1 and "Traceback" not in message, done.stderr
    assert f"{folder / 'results.jsonl'}: case {twice!r}: case_id: recorded twice" in message, message
    assert not list((tmp_path / "history").glob("*.parquet"))


# -- 3. resuming an A/B folder: by `ab --resume`, never by `run --resume` -------------------------------------------

AB = "{max_seconds: 10, min_rounds: 2, round_seconds: 0.1, slice_ms: 10, fresh: session}"


@pytest.fixture(scope="module")
def ab_folder(tmp_path_factory: pytest.TempPathFactory, digits_artifacts: dict[str, Path]) -> tuple[Path, Path, Path]:
    """(scenario, A/B folder, gate): a real `accelbench ab` of three cases, its workers waiting at the gate while it
    is closed (open here). Tests copy the folder."""
    from tests.fault_backend import REGISTRATION

    folder = tmp_path_factory.mktemp("ab")
    model = folder / "model.onnx"
    shutil.copy(digits_artifacts["onnxruntime_cpu"], model)
    gate = folder / "gate"
    gate.mkdir()
    open_gate(gate)
    scenario = write_scenario(folder, f"""
        name: abresume
        models: [{{path: {model}}}]
        backends: [{{name: fault_ort, threads: 1, fault: wait, fault_gate: {gate}}}]
        batch_sizes: [1, 2, 4]
        measure: {{warmup_runs: 2, warmup_seconds: 0, timeout_s: 300}}
        ab: {AB}
    """)
    run_dir = folder / "ab"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ACCELBENCH_BACKENDS", REGISTRATION)
        done = run_cli("ab", str(scenario), "--out", str(run_dir))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert len((run_dir / "ab.jsonl").read_text().splitlines()) == CASES
    return scenario, run_dir, gate


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    message = done.stderr.strip()
    assert done.returncode == 2 and len(message.splitlines()) == 1 and "Traceback" not in message, \
        done.stdout[-2000:] + done.stderr[-2000:]
    return message


def test_run_resume_refuses_an_ab_folder_and_ab_resume_a_run_folder(
        tmp_path: Path, ab_folder: tuple[Path, Path, Path], test_backends: None) -> None:
    """`run --resume` on a folder `accelbench ab` wrote ran plain cases into it ("0 of 3 cases recorded")."""
    _, original, _ = ab_folder
    folder = tmp_path / "ab"
    shutil.copytree(original, folder)
    before = (folder / "ab.jsonl").read_bytes()
    message = one_line(run_cli("run", "--resume", str(folder)))
    assert f"{folder} holds A/B comparisons (accelbench ab wrote it)" in message and \
           f"accelbench ab --resume {folder}" in message, message
    assert not (folder / "results.jsonl").exists() and (folder / "ab.jsonl").read_bytes() == before

    plain = tmp_path / "plain"
    shutil.copytree(FIXTURE_RUN, plain)
    message = one_line(run_cli("ab", "--resume", str(plain)))
    assert f"{plain} is a run folder (accelbench run wrote it)" in message and \
           f"accelbench run --resume {plain}" in message, message
    assert not (plain / "ab.jsonl").exists()


def test_ab_resume_keeps_what_was_compared_cuts_a_torn_tail_and_refuses_a_second_writer(
        tmp_path: Path, ab_folder: tuple[Path, Path, Path], test_backends: None) -> None:
    """An A/B killed after its first comparison (and mid-write of the second): `ab --resume` compares the other two
    with the folder's sides and settings, the first kept byte for byte and counted in the table; a second `ab
    --resume` meanwhile is refused with one line naming the first."""
    _, original, gate = ab_folder
    folder = tmp_path / "ab"
    shutil.copytree(original, folder)
    lines = (folder / "ab.jsonl").read_text().splitlines(keepends=True)
    (folder / "ab.jsonl").write_text(lines[0] + lines[1][:100])
    close_gate(gate)
    runner = start("ab", "--resume", str(folder))
    try:
        wait_until(lambda: waiting(gate) >= 1 or runner.poll() is not None, "the resumed comparison's workers")
        assert runner.poll() is None, runner.communicate()
        try:
            done = run_cli("ab", "--resume", str(folder), timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail("a second `ab --resume` was not refused: it compared beside the first")
        message = one_line(done)
        assert f"held by pid {runner.pid} (accelbench ab --resume {folder})" in message, message
    finally:
        open_gate(gate)
        stdout, stderr = runner.communicate(timeout=300)
    assert runner.returncode == 0, stdout[-2000:] + stderr[-2000:]
    assert f"1 of {CASES} comparisons recorded, {CASES - 1} to run; cut a partly written record (100 bytes)" in stderr
    after = (folder / "ab.jsonl").read_text().splitlines(keepends=True)
    assert after[0] == lines[0] and len(after) == CASES
    ids = [json.loads(line)["case_id"] for line in after]
    assert len(set(ids)) == CASES
    assert all(case_id in stdout for case_id in ids)  # the table shows the kept comparison too
    settings = {json.dumps(json.loads(line)["settings"], sort_keys=True) for line in after}
    assert len(settings) == 1  # one comparison: the resumed cases ran with the folder's settings

    done = run_cli("ab", "--resume", str(folder))  # nothing left: the verdicts as they stand, nothing run
    assert done.returncode == 0 and f"{CASES} of {CASES} comparisons recorded, 0 to run" in done.stderr, done.stderr
    assert (folder / "ab.jsonl").read_text().splitlines(keepends=True) == after


def test_ab_resume_refuses_other_sides_settings_or_scenario(
        tmp_path: Path, ab_folder: tuple[Path, Path, Path], test_backends: None) -> None:
    """Sides and settings given again must be the folder's, and the scenario file the one it started with: the
    comparisons of one folder are one comparison."""
    scenario, original, _ = ab_folder
    folder = tmp_path / "ab"
    shutil.copytree(original, folder)
    (folder / "ab.jsonl").write_text((folder / "ab.jsonl").read_text().splitlines(keepends=True)[0])
    before = (folder / "ab.jsonl").read_bytes()
    message = one_line(run_cli("ab", "--resume", str(folder), "--threshold", "10%"))
    assert message.endswith(f"--threshold 0.1 is not the threshold {folder} was compared with (0.05): give it as "
                            "it was, or leave it out"), message
    message = one_line(run_cli("ab", "--resume", str(folder), "--new", "threads=2"))
    assert f"--new threads=2 is not the new side {folder} was compared with (as the scenario says)" in message
    edited = write_scenario(tmp_path, scenario.read_text() + "# edited\n", "edited.yaml")
    message = one_line(run_cli("ab", str(edited), "--resume", str(folder)))
    assert f"{edited} changed since the run in {folder} started" in message, message
    message = one_line(run_cli("ab", "--resume", str(folder), "--out", str(tmp_path / "elsewhere")))
    assert "drop --out" in message
    info = json.loads((folder / "scenario.json").read_text())
    info["ab"]["settings"]["threshold"] = "five"
    (folder / "scenario.json").write_text(json.dumps(info))
    message = one_line(run_cli("ab", "--resume", str(folder)))
    assert message.startswith(f"error: {folder / 'scenario.json'}: ab.settings: "), message
    assert (folder / "ab.jsonl").read_bytes() == before


# -- 4. ab.jsonl's figures checked as results.jsonl's are -----------------------------------------------------------

AB_FIXTURE = REPO / "tests" / "data" / "ab_run"  # a real `accelbench ab` of three cases (onnxruntime_cpu, digits)


def ab_copy(folder: Path, edit: Callable[[dict], None] | None = None, line: int = 0) -> tuple[Path, str]:
    """A copy of the A/B fixture with record ``line`` edited; (the folder, that record's case id)."""
    shutil.copytree(AB_FIXTURE, folder)
    records = [json.loads(text) for text in (folder / "ab.jsonl").read_text().splitlines()]
    if edit:
        edit(records[line])
    (folder / "ab.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    return folder, records[line]["case_id"]


def _set(path: str, value: object) -> Callable[[dict], None]:
    def edit(record: dict) -> None:
        *parents, last = path.split(".")
        holder: Any = record
        for part in parents:
            holder = holder[int(part)] if isinstance(holder, list) else holder[part]
        holder[int(last) if isinstance(holder, list) else last] = value
    return edit


@pytest.mark.parametrize(("field", "value", "says"), [
    ("ratio", float("nan"), "nan is not a positive finite number"),
    ("ratio", float("inf"), "inf is not a positive finite number"),
    ("ratio", -1.0, "-1.0 is not a positive finite number"),
    ("ci_low", float("-inf"), "-inf is not a finite number of 0 or more"),
    ("ci_high", float("nan"), "nan is not a positive number"),
    ("p_value", 2.0, "2.0 is not a probability between 0 and 1"),
    ("mde", -0.5, "-0.5 is not a number of 0 or more"),
    ("new.median_ms", float("nan"), "nan is not a positive finite number"),
    ("rounds.0.log_ratio", float("inf"), "inf is not a finite number"),
    ("rounds.1.pairs.0.base_ms", -0.013, "-0.013 is not a positive finite number"),
])
def test_a_damaged_ab_figure_is_one_line_naming_file_case_and_field(
        tmp_path: Path, field: str, value: float, says: str) -> None:
    """The report printed `nan`, `inf` and `-1.000` for edited ratios; every reader now refuses them."""
    folder, case = ab_copy(tmp_path / "ab", _set(field, value), line=1)
    expected = f"{folder / 'ab.jsonl'}: case {case!r}: {field}: {says}"
    message = one_line(run_cli("report", str(folder)))
    assert message == f"error: {expected}", message
    assert not (folder / "report.html").exists()
    from results.store import RunFolderProblem, RunStore

    with pytest.raises(RunFolderProblem, match="^" + re.escape(expected) + "$"):
        RunStore(folder).ab_records()


def test_infinite_interval_ends_written_null_still_read(tmp_path: Path) -> None:
    """An interval without an upper end and an MDE of no finite effect are written null: they read as infinite and
    the report shows them."""
    def edit(record: dict) -> None:
        record["ci_high"] = record["mde"] = None
    folder, case = ab_copy(tmp_path / "ab", edit)
    from results.runs import load_run

    record = next(r for r in load_run(folder).ab_records if r.case_id == case)
    assert record.ci_high == record.mde == float("inf")
    assert run_cli("report", str(folder)).returncode == 0 and (folder / "report.html").is_file()


# -- 5. the run-folder fuzz, for ab.jsonl ---------------------------------------------------------------------------

AB_MUTATIONS = 1_500


def test_mutated_ab_records_read_or_fail_with_file_case_and_field(tmp_path: Path) -> None:
    """Thousands of mutated A/B records (and env.json files) through every reader of ab.jsonl: each reads, and then
    the console's table, the report's page, --json's strict JSON and a resume's reading cope with it, or it is one
    line naming the file, the case and the field; never a traceback. Seeded: a failure names its mutation."""
    import io
    import random

    from rich.console import Console

    from harness.console import ab_table
    from reporting.html import build_page
    from results.ab_record import AbRecord
    from results.runs import RunFolderError, load_run
    from results.store import RunFolderProblem, RunStore
    from tests.test_run_folder_fuzz import mutate

    rng = random.Random(20261206)
    records = [json.loads(line) for line in (AB_FIXTURE / "ab.jsonl").read_text().splitlines()]
    env = json.loads((AB_FIXTURE / "env.json").read_text())
    folder = tmp_path / "ab"
    shutil.copytree(AB_FIXTURE, folder)
    refused, read = 0, 0
    for index in range(AB_MUTATIONS):
        chosen, written_env = list(records), env
        if index % 5 == 4:
            written_env = mutate(env, rng)
        else:
            position = rng.randrange(len(chosen))
            chosen[position] = mutate(chosen[position], rng)
        (folder / "env.json").write_text(json.dumps(written_env))
        (folder / "ab.jsonl").write_text("".join(json.dumps(record) + "\n" for record in chosen))
        try:
            run = load_run(folder)
        except RunFolderError as error:
            assert_names_file_and_field(error, folder, ("ab.jsonl", "env.json"))
            if str(error).startswith(str(folder / "ab.jsonl")):
                with pytest.raises(RunFolderProblem) as caught:  # a resume's reader says the same
                    RunStore(folder).ab_records()
                assert str(caught.value) == str(error)
            refused += 1
            continue
        read += 1
        try:
            Console(file=io.StringIO(), width=200).print(ab_table(run.ab_records))
            for record in run.ab_records:
                line = json.dumps(record.to_json(), allow_nan=False)  # --json and ab.jsonl stay strict JSON
                AbRecord.read(json.loads(line), "again")  # what was read writes back readable
            if index % 25 == 0:
                build_page([run])
        except Exception as error:  # pragma: no cover - the failure message is the point
            pytest.fail(f"mutation {index}: {type(error).__name__}: {error}")
    assert refused and read, (refused, read)
