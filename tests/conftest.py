"""Shared fixtures of the harness tests: scenario files in tmp folders, the digits_cnn artefacts, test backends.

Everything runs for real: the model zoo builds digits_cnn once into its cache ($ACCELBENCH_CACHE_DIR, by
default ~/.cache/accelbench), workers are real processes, backends are the real adapters.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import onnx  # noqa: F401  (see below)
import pytest
import scipy.stats  # noqa: F401  (see below)

# pytester's in-process runs restore sys.modules afterwards, so an extension first imported inside one is imported
# again by the next caller, and onnx's nanobind extension aborts the process on a second import ("refusing to add
# duplicate key"). Imported here, before any inner run, it stays loaded: a front-door test run alone passed only
# when an earlier test happened to import onnx first. The same holds for SciPy's statistics, whose numpy.fft
# extension "cannot load more than once per process": a race inside an inner run (results.paired) imports it first.
pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]

# Small measurement settings: enough to exercise every phase, fast enough for a 2-core CI machine.
FAST_MEASURE = "{warmup_runs: 2, warmup_seconds: 0, min_runs: 20, min_seconds: 0.05, max_seconds: 10, timeout_s: 60}"

RECORD_FIELDS = (
    "case_id", "model", "backend", "precision", "batch_size", "mode", "status", "reason", "latency_ms",
    "throughput_ips", "init_ms", "first_inference_ms", "peak_rss_mb", "model_size_bytes", "model_size_gzip_bytes",
    "samples_ns", "accuracy", "backend_info", "artifact", "env_id",
)
LATENCY_FIELDS = ("p50", "p90", "p95", "p99", "mean", "std", "min", "max")


def write_scenario(folder: Path, text: str, name: str = "scenario.yaml") -> Path:
    """Write a scenario (dedented) and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def expand_file(path: Path) -> list[Any]:
    from scenario.load import expand, load_scenario

    return expand(load_scenario(path))


def assert_scenario_error(path: Path, line: int, fragments: list[str]) -> None:
    """Loading `path` fails with one message that starts at `path:line` and says every fragment."""
    from scenario.load import ScenarioError, load_scenario

    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: "), message
    for fragment in fragments:
        assert fragment in message, message


def run_cases(run_dir: Path, cases: list[Any]) -> list[dict[str, Any]]:
    """Run cases through the engine the front doors use; returns the records as results.jsonl holds them (the
    contract on disk, which is what most tests check)."""
    from harness.engine import Engine

    engine = Engine(run_dir, {"scenarios": sorted({c.scenario for c in cases}), "front_door": "tests"})
    engine.prepare_artifacts(cases)
    for case in cases:
        engine.run_case(case)
    return [record.to_json() for record in engine.finish()]  # the report has tests of its own


def written_records(results: Path) -> list[dict[str, Any]]:
    """A results.jsonl's records as written, one JSON object per line."""
    return [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines() if line.strip()]


def by_id(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {record["case_id"]: record for record in records}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``accelbench ARGS`` in a fresh process, as a user types it from a script (no terminal on stdin, so nothing
    waits for an answer even under `pytest -s`)."""
    script = Path(sys.executable).with_name("accelbench")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "harness.cli"]
    return subprocess.run([*command, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env or cli_env(), stdin=subprocess.DEVNULL)


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


@pytest.fixture(scope="session", autouse=True)
def zoo_cache_dir() -> Iterator[Path]:
    """The zoo cache this session uses, pinned: pytester points HOME at a tmp folder, which would otherwise move
    the default cache (~/.cache/accelbench) and make an in-process pytest run rebuild every model."""
    from model_zoo.cache import cache_dir

    path = cache_dir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ACCELBENCH_CACHE_DIR", str(path))
        yield path


def nested_savedmodel(source: Path, folder: Path, levels: int = 1200) -> Path:
    """A copy of the SavedModel ``source`` with a real folder ``levels`` deep inside: deeper than Python 3.11
    recurses (os.walk, os.makedirs and shutil.rmtree all do). Use it under ``deep_tmp_path``."""
    shutil.copytree(source, folder)
    bottom = folder
    for _ in range(levels):
        bottom = bottom / "d"
        bottom.mkdir()
    (bottom / "notes.txt").write_text("at the bottom")
    return folder


@pytest.fixture
def deep_tmp_path(tmp_path: Path) -> Iterator[Path]:
    """tmp_path, emptied with `rm -rf` after the test, passed or failed: pytest's own clean-up (shutil.rmtree)
    recurses, and a folder nested deeper than that left behind failed every later session at its end."""
    try:
        yield tmp_path
    finally:
        for entry in list(tmp_path.iterdir()):
            subprocess.run(["rm", "-rf", str(entry)], check=False)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """`pytest scenarios/smoke.yaml` exactly as a user types it, once per test session: its run folder and its
    output (the smoke test checks the run, the report tests its report.html)."""
    out = tmp_path_factory.mktemp("smoke") / "run"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "scenarios/smoke.yaml", "-p", "no:cacheprovider", "--accelbench-out",
         str(out), "-q"],
        cwd=REPO, capture_output=True, text=True, timeout=1800,
    )
    return out, done


XSS_MODEL = "<script>alert(1)</script>.onnx"  # a file "script>.onnx" in a folder "<script>alert(1)<"
XSS_BACKEND = "<img src=x onerror=alert(3)>"


@pytest.fixture(scope="session")
def escaping_run(tmp_path_factory: pytest.TempPathFactory, digits_artifacts: dict[str, Path]) -> Path:
    """A real run through `accelbench run` of a user .onnx whose path, label and scenario are all markup."""
    folder = tmp_path_factory.mktemp("escaping")
    model = folder / XSS_MODEL
    model.parent.mkdir(parents=True)
    shutil.copy(digits_artifacts["onnxruntime_cpu"], model)
    scenario = write_scenario(folder, f"""
        name: 'xss</script><script>alert(4)</script>'
        description: '<script>alert(2)</script>'
        models:
          - {{path: '{XSS_MODEL}', label: '{XSS_MODEL}'}}
        backends: [{{name: onnxruntime_cpu, threads: 1, label: '{XSS_BACKEND}'}}, tflite_cpu]
        measure: {FAST_MEASURE}
    """)
    out = folder / "run"
    done = run_cli("run", str(scenario), "--out", str(out))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"report: {out / 'report.html'}" in done.stdout.replace("\n", "")
    return out


@pytest.fixture
def scenario_file(tmp_path: Path) -> Callable[..., Path]:
    """``scenario_file(text, name=..., folder=...)`` writes a scenario under tmp_path."""

    def make(text: str, name: str = "scenario.yaml", folder: Path | None = None) -> Path:
        return write_scenario(folder or tmp_path, text, name)

    return make


@pytest.fixture(scope="session")
def digits_artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """digits_cnn as .tflite, .onnx and SavedModel, built (once, in a subprocess) into the zoo's cache."""
    from harness.engine import Engine
    from scenario.cases import Case, ModelSpec

    engine = Engine(tmp_path_factory.mktemp("artifacts-run"), {"scenarios": ["fixture"], "front_door": "tests"})
    paths = {}
    for backend in ("tflite_cpu", "onnxruntime_cpu", "tensorflow"):
        case = Case(case_id=f"digits-{backend}", scenario="fixture", model=ModelSpec(zoo="digits_cnn"),
                    model_label="digits_cnn", backend=backend, backend_label=backend, backend_options={},
                    precision="fp32", batch_size=1, mode="latency", measure={})
        path, error = engine.artifact_for(case)
        assert error is None, f"building digits_cnn for {backend} failed: {error}"
        paths[backend] = Path(path)
    return paths


@pytest.fixture
def test_backends(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Registers the test doubles of tests/fault_backend.py for this process and every worker it spawns."""
    from scenario.skips import cached_availability
    from tests.fault_backend import REGISTRATION

    monkeypatch.setenv("ACCELBENCH_BACKENDS", REGISTRATION)
    cached_availability.cache_clear()
    yield
    cached_availability.cache_clear()


@pytest.fixture(scope="session")
def chromium() -> str:
    from reporting.browser import find_chromium

    found = find_chromium()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI must test the report in Chromium: .ci/system-packages installs Debian's chromium")
        pytest.skip("no Chromium here: apt-get install chromium (bash .ci/system-packages does)")
    return found
