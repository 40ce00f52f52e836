"""Run folders under concurrent writers, resumes of the wrong kind, and damaged A/B records (issue 24).

Every writer of a run folder (run, run --resume, ab, ab --resume, the pytest front door) holds the folder's lock for
as long as it lives: a second writer is refused with one line naming the holder, and a writer killed with SIGKILL
leaves nothing in the way of a resume. The races are real processes held mid-case by a worker that waits at a gate
(tests/fault_backend.py's fault "wait"), so no test depends on the machine's speed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from results.store import LOCK_NAME
from tests.conftest import REPO, cli_env, run_cli, write_scenario

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
