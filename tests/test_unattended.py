"""Unattended runs survive faults: a runner killed by SIGKILL loses no finished case and `--resume` completes
the run; a torn record is cut, never read; a full or read-only results folder is one clear error, before any case
runs when it can be known then, and otherwise with what was recorded kept.

Real processes and real file systems: the disk-full and read-only cases mount small tmpfs file systems (root)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from results.store import MIN_FREE_MB, read_records
from tests.conftest import REPO, cli_env, run_cli, write_scenario

pytestmark = pytest.mark.e2e

# six cases of about a second each: time enough to kill the runner between two of them
SCENARIO = """
    name: unattended
    models: [digits_cnn]
    backends: [{name: tflite_cpu, threads: 1}, {name: onnxruntime_cpu, threads: 1}]
    batch_sizes: [1, 2, 4]
    measure: {warmup_runs: 2, warmup_seconds: 0, min_runs: 20, min_seconds: 0.6, max_seconds: 5, timeout_s: 60}
    race: false  # kills and resumes of cases; a resumed run's races: tests/test_race.py
"""


def start_cli(*args: str) -> subprocess.Popen[str]:
    script = Path(sys.executable).with_name("accelbench")
    return subprocess.Popen([str(script), *args], cwd=REPO, env=cli_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_records(results: Path, count: int, process: subprocess.Popen[str], timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while len(read_records(results)) < count:
        assert process.poll() is None, f"the run ended early: {process.communicate()}"
        assert time.monotonic() < deadline, "no records in time"
        time.sleep(0.05)


def workers_of(run_dir: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "harness.worker" in cmdline and str(run_dir) in cmdline:
            found.append(process)
    return found


def test_sigkill_loses_no_finished_case_and_resume_runs_only_the_rest(tmp_path: Path, digits_artifacts) -> None:
    scenario = write_scenario(tmp_path, SCENARIO)
    run_dir = tmp_path / "run"
    runner = start_cli("run", str(scenario), "--out", str(run_dir), "--history", str(tmp_path / "history"))
    wait_for_records(run_dir / "results.jsonl", 2, runner)
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait(timeout=30)
    deadline = time.monotonic() + 10
    while workers_of(run_dir) and time.monotonic() < deadline:  # the kernel kills them with their parent
        time.sleep(0.1)
    assert workers_of(run_dir) == [], "a worker outlived the killed runner"

    lines = (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    finished = [json.loads(line)["case_id"] for line in lines if line.endswith("\n")]
    assert 2 <= len(finished) < 6
    with open(run_dir / "results.jsonl", "a", encoding="utf-8") as handle:  # a record torn by the kill
        handle.write('{"case_id": "digits_cnn-fp32-b4-onnxruntime_cpu", "status": "pas')
    assert [r.case_id for r in read_records(run_dir / "results.jsonl")] == finished  # readers skip it

    done = run_cli("run", "--resume", str(run_dir))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"{len(finished)} of 6 cases recorded, {6 - len(finished)} to run" in done.stderr
    assert "history: " in done.stdout and (tmp_path / "history").is_dir()  # --history of the first part
    assert "cut a partly written record" in done.stderr
    after = (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    assert after[:len(finished)] == lines[:len(finished)]  # what was recorded stays, byte for byte
    ids = [json.loads(line)["case_id"] for line in after]
    assert len(ids) == 6 and len(set(ids)) == 6 and ids[:len(finished)] == finished
    assert {json.loads(line)["status"] for line in after} == {"passed"}
    assert (run_dir / "report.html").is_file()


def test_resume_refuses_a_changed_scenario_or_another_machine(tmp_path: Path, digits_artifacts) -> None:
    scenario = write_scenario(tmp_path, SCENARIO.replace("[1, 2, 4]", "[1]").replace(", {name: onnxrun", "]#"))
    run_dir = tmp_path / "run"
    assert run_cli("run", str(scenario), "--out", str(run_dir)).returncode == 0

    done = run_cli("run", "--resume", str(run_dir))
    assert done.returncode == 0 and "1 of 1 cases recorded, 0 to run" in done.stderr

    scenario.write_text(scenario.read_text() + "\n# edited\n")
    done = run_cli("run", "--resume", str(run_dir))
    assert done.returncode == 2 and "changed since the run" in done.stderr and "Traceback" not in done.stderr

    scenario.write_text(scenario.read_text().replace("\n# edited\n", ""))
    env = json.loads((run_dir / "env.json").read_text())
    # the fingerprint's facts, not its hash, decide (a hash from an earlier version differs on the same machine)
    (run_dir / "env.json").write_text(json.dumps({**env, "env_id": "0123456789ab",
                                                  "libraries": {**env["libraries"], "numpy": "0.0.1"}}))
    done = run_cli("run", "--resume", str(run_dir))
    assert done.returncode == 2 and "another machine or software" in done.stderr and str(run_dir) in done.stderr
    assert f"numpy 0.0.1 there, {env['libraries']['numpy']} here" in done.stderr


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator[callable]:
    """mount_tmpfs(size_mb, read_only=False) -> a fresh small file system, unmounted afterwards."""
    mounted: list[Path] = []

    def mount(size_mb: int, read_only: bool = False) -> Path:
        point = tmp_path / f"fs{len(mounted)}"
        point.mkdir()
        options = f"size={size_mb}m" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True,
                              text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def test_full_disk_is_one_clear_error_before_any_case_runs(tmp_path: Path, mount_tmpfs) -> None:
    small = mount_tmpfs(MIN_FREE_MB // 2)
    done = run_cli("run", "scenarios/smoke.yaml", "--out", str(small / "run"), cwd=REPO)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"MB free for the results in {small / 'run'}" in done.stderr.replace("\n", "")
    assert not (small / "run" / "results.jsonl").exists()  # nothing ran


def test_read_only_results_folder_is_one_clear_error(tmp_path: Path, mount_tmpfs) -> None:
    read_only = mount_tmpfs(8, read_only=True)
    done = run_cli("run", "scenarios/smoke.yaml", "--out", str(read_only / "run"), cwd=REPO)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "cannot write results to" in done.stderr and "Read-only file system" in done.stderr


def test_disk_filling_up_mid_run_keeps_what_was_recorded(tmp_path: Path, mount_tmpfs, digits_artifacts) -> None:
    disk = mount_tmpfs(MIN_FREE_MB + 16)
    scenario = write_scenario(tmp_path, SCENARIO)
    run_dir = disk / "run"
    runner = start_cli("run", str(scenario), "--out", str(run_dir))
    wait_for_records(run_dir / "results.jsonl", 1, runner)
    filler = disk / "filler"
    with open(filler, "wb") as handle:  # another program takes the rest of the disk
        try:
            while True:
                handle.write(b"\0" * 2**20)
                handle.flush()
        except OSError:
            pass
    stdout, stderr = runner.communicate(timeout=300)
    assert runner.returncode == 2, stdout[-2000:] + stderr[-2000:]
    assert "No space left on device" in stderr and "--resume" in stderr and "Traceback" not in stderr
    kept = read_records(run_dir / "results.jsonl")
    assert 1 <= len(kept) < 6 and {r.status for r in kept} == {"passed"}

    filler.unlink()
    done = run_cli("run", "--resume", str(run_dir))
    assert done.returncode == 0, done.stderr[-2000:]
    assert len({r.case_id for r in read_records(run_dir / "results.jsonl")}) == 6
