"""Hostile input on `accelbench ab`'s sides, probed from outside (issue 24): a side's interpreter that writes without
newlines, model files that are FIFOs, devices, 20 GiB sparse files or no model at all, side settings of the wrong
type, a thread count beyond any machine, and messages that stuttered or ended on nothing. Each probe ends in one line
that names the side (or the scenario's line) and loses nothing; the probes that ate memory run under an address-space
limit (run_limited), so a regression fails the test instead of the machine.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from scenario.cases import Case, ModelSpec
from scenario.sides import SideError, parse_side, side_from_mapping
from tests.conftest import REPO, cli_env, run_cli, write_scenario
from tests.test_ab import tiny_onnx
from tests.test_hostile_input import load_error, run_limited

FAST = "{warmup_runs: 2, warmup_seconds: 0, timeout_s: 60}"
# what the coordinator (and the base side's worker, which inherits the limit) may map beyond the imports below:
# far under the 8 GB the coordinator took in 25 s, well over a worker's start and the reply limit (64 MB)
EXTRA_MB = 1024
IMPORTS = ("import sys, pytest, numpy, onnxruntime, harness.cli, harness.ab, harness.sitting.rounds, harness.console, "
           "harness.pytest_plugin, reporting.html, scenario.load\n")


@pytest.fixture
def tiny_scenario(tmp_path: Path):
    """A scenario of a one-node ONNX model (no zoo build), with an optional ``ab:`` block."""
    tiny_onnx(tmp_path / "tiny.onnx", 4)

    def make(ab: str = "", name: str = "sides", precisions: str = "[fp32]") -> Path:
        lines = [f"name: {name}", "models: [{path: tiny.onnx}]", "backends: [{name: onnxruntime_cpu, threads: 1}]",
                 f"precisions: {precisions}", f"measure: {FAST}", *([f"ab: {ab}"] if ab else [])]
        return write_scenario(tmp_path, "\n".join(lines) + "\n", f"{name}.yaml")

    return make


def endless_writer(folder: Path) -> Path:
    """An "interpreter" that writes zeros, never a newline: `exec cat /dev/zero`."""
    script = folder / "huge.sh"
    script.write_text("#!/bin/sh\nexec cat /dev/zero\n")
    script.chmod(0o755)
    return script


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text[-3000:]
    return lines[0]


# -- 1. a reply line has a size limit ----------------------------------------------------------------------------

REPLY_OVER = "new side: its worker sent a reply over 64 MB without a newline (a reply is one JSON line: "


def test_a_side_that_writes_without_newlines_is_broken_at_the_reply_limit(tmp_path: Path, tiny_scenario) -> None:
    """`--new python=huge.sh` kept every byte until a newline came: 8.2 GB in 25 s. Under an address-space limit the
    comparison ends with the new side broken, one line, and its record written."""
    scenario, huge, out = tiny_scenario(), endless_writer(tmp_path), tmp_path / "run"
    done = run_limited(IMPORTS + "limit_memory()\n" + (
        f"sys.exit(harness.cli.main(['ab', {str(scenario)!r}, '--new', 'python={huge}', '--out', {str(out)!r}, "
        "'--fail-on-regression', '--json']))\n"), timeout_s=180, extra_address_space_mb=EXTRA_MB)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "MemoryError" not in done.stderr
    [record] = json.loads(done.stdout)["cases"]
    assert record["verdict"] == "broken" and record["status"] == "refused"
    assert record["reason"].startswith(REPLY_OVER) and "\n" not in record["reason"], record["reason"]
    assert f"(a reply is one JSON line: does the new side's python={huge} print to stdout?); log: " in record["reason"]


def test_the_pytest_ab_path_breaks_a_side_that_writes_without_newlines_too(tmp_path: Path, tiny_scenario) -> None:
    huge = endless_writer(tmp_path)
    scenario, out = tiny_scenario(f"{{new: {{python: {huge}}}}}"), tmp_path / "out"
    done = run_limited(IMPORTS + "limit_memory()\n" + (
        f"sys.exit(pytest.main([{str(scenario)!r}, '-p', 'no:cacheprovider', '-q', '--accelbench-out', "
        f"{str(out)!r}]))\n"), timeout_s=180, extra_address_space_mb=EXTRA_MB)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr and "MemoryError" not in done.stdout
    assert f"BROKEN: {REPLY_OVER}" in done.stdout and "1 failed" in done.stdout, done.stdout[-3000:]


def test_a_legitimate_reply_stays_far_under_the_limit() -> None:
    """The limit is sized from the largest legitimate reply: a duet round's, measured at 4.0 MB per round second
    (a one-node ONNX model, 190,000 inferences a second a side, 21 bytes each). The round's length is not bounded
    by what a reply may hold, so a worker records at most MAX_REPLY_SAMPLES inferences a reply; their reply, with
    every number as long as a 64-bit integer can be, is under the limit, and the largest measured (20 MB) under a
    third of it."""
    from harness.measure import MAX_REPLY_SAMPLES, timed_loop, until_loop
    from harness.sitting.channel import MAX_REPLY_BYTES

    longest = 2**63 - 1
    worst = len(json.dumps({"samples_ns": [longest] * MAX_REPLY_SAMPLES, "ends_ns": [longest] * MAX_REPLY_SAMPLES}))
    assert worst < MAX_REPLY_BYTES and MAX_REPLY_BYTES > 3 * 20_000_000
    calls = 0

    def call() -> None:
        nonlocal calls
        calls += 1

    begin = time.perf_counter_ns()
    samples, ends = until_loop(call, begin, begin + 50_000_000, max_samples=1000)
    assert len(samples) == len(ends) == 1000 and calls > 1000  # the loop runs on to the end of the round
    assert time.perf_counter_ns() >= begin + 50_000_000
    assert len(timed_loop(call, 1, 10.0, 10.0, max_runs=500).samples_ns) == 500


# -- 2. model= on a side gets the checks a scenario's model path gets ---------------------------------------------

def model_probes(folder: Path) -> dict[str, tuple[str, str]]:
    """name → (the model= value, the one line's expected text after "new side: model: ")."""
    os.mkfifo(folder / "fifo.onnx")
    os.mkfifo(folder / "fifo.tflite")
    (folder / "zero.onnx").symlink_to("/dev/zero")
    with open(folder / "big.onnx", "wb") as handle:
        handle.truncate(20 * 2**30)  # sparse: 20 GiB on paper, nothing on disk
    return {
        "fifo-onnx": (str(folder / "fifo.onnx"), f"{folder / 'fifo.onnx'} is not a regular file"),
        "fifo-tflite": (str(folder / "fifo.tflite"), f"{folder / 'fifo.tflite'} is not a regular file"),
        "passwd": ("/etc/passwd", "/etc/passwd: accelbench cannot read this kind of file; expected a .onnx, .tflite "
                                  "or .keras file or a SavedModel folder"),
        "device-link": (str(folder / "zero.onnx"), f"{folder / 'zero.onnx'} is not a regular file"),
        "sparse-20gib": (str(folder / "big.onnx"), f"{folder / 'big.onnx'} is 20.0 GiB, over the 8 GiB limit on a "
                                                   "model (ACCELBENCH_MAX_MODEL_GIB=<GiB> raises it)"),
        "no-such-user": ("~nosuchuser/x.tflite", "unusable path '~nosuchuser/x.tflite': Could not determine home "
                                                 "directory."),
    }


def test_model_on_a_side_is_checked_like_a_scenarios_model_when_the_side_is_parsed(tmp_path: Path,
                                                                                   tiny_scenario) -> None:
    """FIFOs hung (the artefact cache's hash at fp16, the worker's 60 s timeout at fp32), /etc/passwd or a link to
    a device was an ArtifactError traceback, a 20 GiB sparse file passed the 8 GiB limit, ~nosuchuser a
    RuntimeError: each is now one line, at `ab`'s start, before a run folder exists."""
    scenario = tiny_scenario(precisions="[fp32, fp16]")
    for name, (value, expected) in model_probes(tmp_path).items():
        out = tmp_path / f"run-{name}"
        done = run_cli("ab", str(scenario), "--new", f"model={value}", "--out", str(out), timeout=60)
        assert done.returncode == 2, (name, done.stdout[-2000:] + done.stderr[-2000:])
        assert one_line(done.stderr) == f"error: new side: model: {expected}", name
        assert not out.exists(), name
        with pytest.raises(SideError) as caught:
            parse_side("new", f"model={value}")
        assert str(caught.value) == f"new side: model: {expected}"


def test_a_bad_model_or_python_in_an_ab_block_is_an_error_at_its_line(tmp_path: Path, tiny_scenario) -> None:
    probes = model_probes(tmp_path)
    for name, (value, expected) in probes.items():
        scenario = tiny_scenario(f"\n  new:\n    threads: 1\n    model: '{value}'", name=f"m-{name}")
        assert load_error(scenario) == f"{scenario}:9: ab.new.model: {expected}", name
    scenario = tiny_scenario("{base: {python: ~nosuchuser/bin/python}}", name="python-user")
    assert load_error(scenario) == (f"{scenario}:6: ab.base.python: unusable path '~nosuchuser/bin/python': "
                                    "Could not determine home directory.")
    with pytest.raises(SideError, match=r"^base side: python: unusable path '~nosuchuser/bin/python': Could not "):
        parse_side("base", "python=~nosuchuser/bin/python")


def test_the_pytest_path_refuses_a_bad_side_model_at_collection_in_one_line(tmp_path: Path, tiny_scenario) -> None:
    scenario = tiny_scenario("{new: {model: /etc/passwd}}")
    done = subprocess.run([sys.executable, "-m", "pytest", str(scenario), "-p", "no:cacheprovider", "-q",
                           "--accelbench-out", str(tmp_path / "out")], cwd=REPO, env=cli_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stdout[-3000:]
    assert "Traceback" not in done.stdout and "ArtifactError" not in done.stdout
    assert (f"{scenario}:6: ab.new.model: /etc/passwd: accelbench cannot read this kind of file" in done.stdout
            and "1 error" in done.stdout), done.stdout[-3000:]


# -- 3. side settings of the wrong type ---------------------------------------------------------------------------

def test_options_that_are_not_a_mapping_are_one_line_in_ab_and_in_pytest(tmp_path: Path, tiny_scenario) -> None:
    with pytest.raises(SideError) as caught:
        side_from_mapping("new", {"options": [1, 2]}, tmp_path)
    assert str(caught.value) == "new side: options: a mapping of backend options (threads: 2), not [1, 2]"
    scenario = tiny_scenario("{new: {options: [1, 2]}}")
    expected = f"{scenario}:6: ab.new.options: a mapping of backend options (threads: 2), not [1, 2]"
    assert load_error(scenario) == expected
    done = run_cli("ab", str(scenario), "--out", str(tmp_path / "run"), timeout=60)
    assert done.returncode == 2 and one_line(done.stderr) == f"error: {expected}", done.stderr[-2000:]
    done = subprocess.run([sys.executable, "-m", "pytest", str(scenario), "-p", "no:cacheprovider", "-q",
                           "--accelbench-out", str(tmp_path / "out")], cwd=REPO, env=cli_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "TypeError" not in done.stdout and "Traceback" not in done.stdout
    assert expected in done.stdout, done.stdout[-3000:]


ODD_VALUES: list[Any] = [None, 0, -1, 1, 2.5, math.nan, math.inf, -math.inf, True, False, 10**30, -(10**30), 2**64,
                         "", " ", "\x00", "a\x00b", "a\nb.onnx", "~nosuchuser/x.onnx", "x" * 5000, "/", ".",
                         "/no/such/file",
                         [], [1, 2], {}, {"a": 1}, {1: 2}, {"threads": [1]}, {"threads": 10**30}, {None: None},
                         b"bytes", (1, 2), {"model": {"x": 1}}, {"options": None}, {"options": {"threads": 0}}]
SIDE_KEYS = ["python", "model", "artifacts", "options", "threads", "xnnpack", "graph_optimization", "", " ", 1,
             None, "a" * 300]


def test_fuzzed_side_settings_raise_nothing_but_side_error(tmp_path: Path) -> None:
    """Lists, mappings, None, numbers as paths, huge integers, NUL bytes, unknown users: a side is made, or refused
    with a SideError; nothing else comes out (a TypeError was the user's traceback)."""
    text = tmp_path / "notes.txt"
    text.write_text("not a manifest")
    values = [*ODD_VALUES, str(text), sys.executable]
    rng = random.Random(24)
    mappings: list[Any] = [None, [], [1, 2], "python=x", 5, {}, *({k: v} for k in SIDE_KEYS for v in values)]
    mappings += [{rng.choice(SIDE_KEYS): rng.choice(values) for _ in range(rng.randint(1, 4))} for _ in range(2000)]
    outcomes = {"made": 0, "refused": 0, "applied": 0}
    cases = [Case(case_id=f"fuzz-{backend}", scenario="fuzz", model=ModelSpec(zoo="digits_cnn"),
                  model_label="digits_cnn", backend=backend, backend_label=backend, backend_options={},
                  precision="fp32", batch_size=1, mode="latency", measure={})
             for backend in ("onnxruntime_cpu", "tflite_cpu", "tensorflow")]
    for mapping in mappings:
        try:
            side = side_from_mapping(rng.choice(["base", "new"]), mapping, tmp_path)
            outcomes["made"] += 1
            for case in cases:  # a backend option of any type is the backend's to refuse, with a SideError
                side.apply(case)
                outcomes["applied"] += 1
        except SideError as error:
            assert str(error).startswith(("base side: ", "new side: ")) and "\n" not in str(error), str(error)
            outcomes["refused"] += 1
    pieces = ["python=", "model=", "threads=", "options=", "=", ",", "x", "[1,2]", "{a: 1}", "99999999999999999999",
              "~nosuchuser", "\x00", "\n", "-1", "nan", "true", str(text), " ", "9" * 5000]
    for _ in range(2000):
        try:
            parse_side("new", "".join(rng.choice(pieces) for _ in range(rng.randint(0, 8))), tmp_path)
            outcomes["made"] += 1
        except SideError as error:
            assert "\n" not in str(error), str(error)
            outcomes["refused"] += 1
    assert outcomes["made"] > 50 and outcomes["applied"] > 50 and outcomes["refused"] > 1000, outcomes


# -- 4. one threads bound for sides and scenarios -----------------------------------------------------------------

def test_threads_past_the_bound_are_refused_on_a_side_and_in_a_scenario(tmp_path: Path, tiny_scenario) -> None:
    """threads=99999999999999999999 on a side was accepted and the new side then judged "broken" (a regression
    verdict for an input error); `threads: 100000` in a scenario segfaulted the worker. One bound, MAX_THREADS."""
    from scenario.defaults import MAX_THREADS

    assert MAX_THREADS == 1024
    expected = "new side: threads: a whole number from 1 to 1024, not 99999999999999999999"
    with pytest.raises(SideError) as caught:
        parse_side("new", "threads=99999999999999999999")
    assert str(caught.value) == expected
    assert parse_side("new", "threads=1024").options == {"threads": 1024}
    scenario, out = tiny_scenario(), tmp_path / "run"
    done = run_cli("ab", str(scenario), "--new", "threads=99999999999999999999", "--out", str(out), timeout=60)
    assert done.returncode == 2 and one_line(done.stderr) == f"error: {expected}" and not out.exists()
    plain = write_scenario(tmp_path, """
        name: many-threads
        models: [{path: tiny.onnx}]
        backends:
          - {name: onnxruntime_cpu, threads: 100000}
    """, "threads.yaml")
    assert load_error(plain) == f"{plain}:4: backends[0].threads: Input should be less than or equal to 1024"
    side = tiny_scenario("{new: {threads: 100000}}", name="side-threads")
    assert load_error(side) == f"{side}:6: ab.new.threads: a whole number from 1 to 1024, not 100000"


# -- 5. messages that stuttered or ended on nothing ---------------------------------------------------------------

def test_a_side_without_its_cases_model_file_is_named_once(tmp_path: Path, tiny_scenario) -> None:
    """"base side: base side: …": the manifest's message named the side and ab.py named it again."""
    manifest = tmp_path / "artifacts.json"
    manifest.write_text(json.dumps({"another-case": "x.onnx"}))
    done = run_cli("ab", str(tiny_scenario()), "--base", f"artifacts={manifest}", "--out", str(tmp_path / "run"),
                   "--json", timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    [record] = json.loads(done.stdout)["cases"]
    assert record["status"] == "refused" and record["reason"].startswith("not compared: base side: ")
    assert record["reason"].count("base side") == 1 and "has no model file for this case" in record["reason"]


def test_a_worker_that_exits_0_without_a_result_says_so_in_full(tmp_path: Path, tiny_scenario) -> None:
    """"worker exited with status 0 and no result: " ended on nothing when the log was empty."""
    from harness.launch import exit_reason

    empty, chatty = tmp_path / "empty.log", tmp_path / "chatty.log"
    empty.write_text("")
    chatty.write_text("loading\n\nno module named onnxruntime\n")
    assert exit_reason(0, empty) == f"worker exited with status 0 and no result; its log is empty ({empty})"
    assert exit_reason(1, chatty) == ("worker exited with status 1 and no result: loading | no module named "
                                      "onnxruntime")
    done = run_cli("ab", str(tiny_scenario()), "--new", "python=/bin/true", "--out", str(tmp_path / "run"), "--json",
                   timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    [record] = json.loads(done.stdout)["cases"]
    assert record["verdict"] == "broken", record
    assert re.fullmatch(r"new side: worker exited with status 0 and no result; its log is empty \(\S+\.log\)",
                        record["reason"]), record["reason"]


def test_the_reason_from_a_huge_worker_log_is_read_from_its_tail(tmp_path: Path) -> None:
    """A side's interpreter or a library that writes without end leaves a log of gigabytes; saying why it failed
    reads its last lines only (a 1 GiB sparse log under a 256 MB address-space allowance)."""
    log = tmp_path / "worker.log"
    with open(log, "wb") as handle:
        handle.truncate(2**30)
        handle.seek(2**30)
        handle.write(b"\nRuntimeError: the last words\n")
    done = run_limited("from harness.launch import tail_of_log\nlimit_memory()\n"
                       f"print(tail_of_log(__import__('pathlib').Path({str(log)!r})))\n",
                       extra_address_space_mb=256)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("RuntimeError: the last words")


def test_the_artefact_cache_never_blocks_on_a_fifo_put_in_a_checked_models_place(tmp_path: Path) -> None:
    """A side's model= is checked when the side is read; a FIFO put in its place since made the cache's content hash
    block forever (the fp16 conversion hashes its source). The hash opens without blocking and refuses it."""
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    done = run_limited("from pathlib import Path\nfrom model_zoo.cache import content_hash\n"
                       f"try:\n    content_hash(Path({str(fifo)!r}))\nexcept OSError as error:\n    print(error)\n",
                       timeout_s=20)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"[Errno 22] not a regular file: '{fifo}'"


def test_a_side_option_no_backend_takes_is_an_input_error_and_a_refused_case_fails_the_gate(
        tmp_path: Path, tiny_scenario) -> None:
    """`--new thread=2` refused every case with exit 0 under --fail-on-regression, and pytest skipped it: a typo
    read as a gate with nothing to fail. An option none of the scenario's backends takes is an error before anything
    runs (at its line in an ab: block), and a gate that compared no case at all fails."""
    done = run_cli("ab", str(tiny_scenario()), "--new", "thread=2", "--out", str(tmp_path / "typo"),
                   "--fail-on-regression", timeout=60)
    assert done.returncode == 2 and not (tmp_path / "typo").exists(), done.stderr[-2000:]
    assert one_line(done.stderr) == ("error: new side: thread: no backend of the scenario (onnxruntime_cpu) has an "
                                     "option 'thread' (did you mean 'threads'?)")
    scenario = tiny_scenario(ab="{new: {thread: 2}}", name="typoblock")
    done = run_cli("ab", str(scenario), "--out", str(tmp_path / "block"), timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"{scenario}:6: ab.new.thread: no backend of the scenario" in one_line(done.stderr)
    manifest = tmp_path / "artifacts.json"  # a frozen state that lacks the case: not compared, so not passed
    manifest.write_text(json.dumps({"another-case": "x.onnx"}))
    done = run_cli("ab", str(tiny_scenario()), "--base", f"artifacts={manifest}", "--out", str(tmp_path / "gate"),
                   "--fail-on-regression", timeout=120)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "no case was compared (1 refused: tiny-fp32-b1-onnxruntime_cpu): a gate that compared nothing does not " \
           "pass" in done.stderr


def test_an_output_file_that_cannot_be_written_is_refused_before_anything_is_measured(
        tmp_path: Path, tiny_scenario) -> None:
    """`--verdicts-out` naming a folder, a FIFO, /dev/full or a missing folder was a traceback (or a hang) after the
    whole comparison had been measured; `compare --regressions-out` likewise."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for target, says in ((tmp_path, "not a regular file"), (fifo, "not a regular file"),
                         (Path("/dev/full"), "not a regular file"),
                         (tmp_path / "nowhere" / "v.tsv", f"no such folder {tmp_path / 'nowhere'}")):
        out = tmp_path / f"run-{abs(hash(str(target)))}"
        done = run_cli("ab", str(tiny_scenario()), "--out", str(out), "--verdicts-out", str(target), timeout=30)
        assert done.returncode == 2 and not out.exists(), done.stderr[-2000:]
        assert one_line(done.stderr) == f"error: --verdicts-out {target}: {says}"
        done = run_cli("compare", str(REPO / "tests" / "data" / "run_0684769"),
                       str(REPO / "tests" / "data" / "run_0684769"), "--regressions-out", str(target), timeout=30)
        assert done.returncode == 2 and one_line(done.stderr) == f"error: --regressions-out {target}: {says}"
