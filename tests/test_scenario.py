"""Scenario files: schema, defaults, error messages (file:line: field), expansion into cases, -k selection."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from scenario.load import MeasureSpec, ScenarioError, expand, load_scenario
from scenario.selection import SelectionError, select
from tests.conftest import REPO, assert_scenario_error, run_cli, write_scenario
from tests.fault_backend import UNAVAILABLE_REASON

# --- loading valid files ---------------------------------------------------------------------------------


def test_valid_scenario_loads_bare_strings_and_dicts(scenario_file):
    path = scenario_file("""
        name: mixed
        description: bare names and mappings side by side
        models:
          - digits_cnn
          - {name: mobilenet_v2, input_shape: [96, 96, 3], label: mnv2_small}
        backends:
          - tflite_cpu
          - {name: onnxruntime_cpu, threads: 2, graph_optimization: basic}
        precisions: [fp32]
        batch_sizes: [1, 4]
        mode: [latency, concurrent]
        measure: {min_runs: 10, streams: 3}
    """)
    scenario = load_scenario(path).scenario
    assert scenario.name == "mixed"
    assert [(m.name, m.input_shape, m.label) for m in scenario.models] == [
        ("digits_cnn", None, None), ("mobilenet_v2", [96, 96, 3], "mnv2_small")]
    assert [(b.name, b.threads, b.options) for b in scenario.backends] == [
        ("tflite_cpu", None, {}), ("onnxruntime_cpu", 2, {"graph_optimization": "basic"})]
    assert scenario.batch_sizes == [1, 4]
    assert scenario.modes == ["latency", "concurrent"]
    assert (scenario.measure.min_runs, scenario.measure.streams) == (10, 3)
    # what the file does not say keeps its default
    assert scenario.measure.min_seconds == MeasureSpec().min_seconds


def test_defaults_of_a_minimal_scenario(scenario_file):
    scenario = load_scenario(scenario_file("""
        name: minimal
        models: [digits_cnn]
        backends: [tflite_cpu]
    """)).scenario
    assert scenario.precisions == ["fp32"]
    assert scenario.batch_sizes == [1]
    assert scenario.modes == ["latency"]
    assert scenario.description == ""
    measure = scenario.measure
    # benchmark_model-like defaults: >= 50 runs and >= 1 s of steady state, capped at 30 s
    assert (measure.warmup_runs, measure.warmup_seconds) == (5, 0.5)
    assert (measure.min_runs, measure.min_seconds, measure.max_seconds) == (50, 1.0, 30.0)
    assert (measure.timeout_s, measure.memory_limit_mb, measure.streams, measure.seed) == (300.0, None, 2, 0)


def test_repository_smoke_scenario_loads_and_expands():
    cases = expand(load_scenario(REPO / "scenarios" / "smoke.yaml"))
    assert sorted(case.case_id for case in cases) == sorted(
        f"{model}-fp32-b{batch}-{backend}"
        for model in ("digits_cnn", "mobilenet_v2")
        for backend in ("tflite_cpu", "onnxruntime_cpu")
        for batch in (1, 4)
    )
    assert all(case.skip_reason is None for case in cases)


def test_per_model_overrides_apply_in_expansion(scenario_file):
    path = scenario_file("""
        name: overrides
        models:
          - name: digits_cnn
            precisions: [fp16]
            batch_sizes: [8]
            measure: {min_runs: 7, timeout_s: 12}
          - mobilenet_v2
        backends: [onnxruntime_cpu]
        precisions: [fp32]
        batch_sizes: [1, 2]
        measure: {min_runs: 30, min_seconds: 0.2, max_seconds: 3}
    """)
    cases = expand(load_scenario(path))
    digits = [c for c in cases if c.model_label == "digits_cnn"]
    mobilenet = [c for c in cases if c.model_label == "mobilenet_v2"]
    assert [(c.precision, c.batch_size) for c in digits] == [("fp16", 8)]
    assert [(c.precision, c.batch_size) for c in mobilenet] == [("fp32", 1), ("fp32", 2)]
    # the override replaces only the keys it names; the rest comes from the scenario's measure block
    assert digits[0].measure["min_runs"] == 7
    assert digits[0].measure["timeout_s"] == 12
    assert digits[0].measure["min_seconds"] == 0.2
    assert digits[0].measure["max_seconds"] == 3
    assert all(c.measure["min_runs"] == 30 and c.measure["timeout_s"] == 300 for c in mobilenet)


# --- errors: file:line: field: message ---------------------------------------------------------------------

HEADER = "name: bad\nmodels: [digits_cnn]\nbackends: [tflite_cpu]\n"

# (id, file text, line the message must name, fragments the message must contain)
BAD_FILES = [
    ("yaml-syntax", "name: bad\nmodels: [digits_cnn]\n  backends: [tflite_cpu]\n", 3, ["invalid YAML"]),
    ("unknown-top-level-key", HEADER + "mesure: {min_runs: 3}\n", 4,
     ["unknown key 'mesure'", "did you mean 'measure'"]),
    ("unknown-zoo-model", "name: bad\nmodels:\n  - digits_cn\nbackends: [tflite_cpu]\n", 3,
     ["models[0]", "unknown zoo model 'digits_cn'", "did you mean 'digits_cnn'"]),
    ("unknown-zoo-model-in-mapping", "name: bad\nmodels:\n  - name: mobilenet_v3\nbackends: [tflite_cpu]\n", 3,
     ["models[0].name", "unknown zoo model 'mobilenet_v3'", "did you mean 'mobilenet_v2'"]),
    ("unknown-backend", "name: bad\nmodels: [digits_cnn]\nbackends:\n  - onnxruntme_cpu\n", 4,
     ["backends[0]", "unknown backend 'onnxruntme_cpu'", "did you mean 'onnxruntime_cpu'"]),
    ("unknown-backend-option", "name: bad\nmodels: [digits_cnn]\nbackends:\n  - name: onnxruntime_cpu\n"
     "    thread: 2\n", 5, ["backends[0].thread", "unknown option 'thread'", "did you mean 'threads'"]),
    ("wrong-type", HEADER + "batch_sizes: [one]\n", 4, ["batch_sizes[0]", "integer"]),
    ("non-positive-batch", HEADER + "batch_sizes: [0]\n", 4, ["batch_sizes", "positive"]),
    ("wrong-type-backend-threads", "name: bad\nmodels: [digits_cnn]\nbackends:\n  - name: tflite_cpu\n"
     "    threads: two\n", 5, ["backends[0].threads", "integer"]),
    ("unknown-precision", HEADER + "precisions: [fp64]\n", 4, ["precisions[0]", "fp32"]),
    ("unknown-nested-measure-key", "name: bad\nmodels:\n  - name: digits_cnn\n    measure: {mn_runs: 5}\n"
     "backends: [tflite_cpu]\n", 4, ["models[0].measure", "unknown key 'mn_runs'", "did you mean 'min_runs'"]),
    ("impossible-zoo-shape", "name: bad\nmodels:\n  - name: digits_cnn\n    input_shape: [16, 16, 1]\n"
     "backends: [tflite_cpu]\n", 4, ["models[0].input_shape", "fixed input shape"]),
    ("impossible-zoo-shape-too-small", "name: bad\nmodels:\n  - {name: mobilenet_v2, input_shape: [16, 16, 3]}\n"
     "backends: [tflite_cpu]\n", 3, ["models[0].input_shape", "no smaller than (32, 32, 1)"]),
    ("duplicate-key", HEADER + "name: again\n", 4, ["duplicate key 'name'"]),
    ("bad-option-value", "name: bad\nmodels: [digits_cnn]\nbackends:\n  - name: onnxruntime_cpu\n"
     "    graph_optimization: turbo\n", 5, ["backends[0].graph_optimization", "'turbo'", "extended"]),
    ("xnnpack-not-a-bool", "name: bad\nmodels: [digits_cnn]\nbackends:\n  - {name: tflite_cpu, xnnpack: maybe}\n",
     4, ["backends[0].xnnpack", "true or false"]),
    ("empty-file", "", 1, ["empty"]),
    ("top-level-not-a-mapping", "- digits_cnn\n- tflite_cpu\n", 1, ["mapping"]),
    ("missing-models", "name: bad\nbackends: [tflite_cpu]\n", 1, ["models", "required field is missing"]),
    ("empty-mode-list", HEADER + "mode: []\n", 4, ["mode"]),
    ("min-above-max", HEADER + "measure:\n  min_seconds: 5\n  max_seconds: 2\n", 4,
     ["measure", "max_seconds", "min_seconds"]),
    ("name-and-path", "name: bad\nmodels:\n  - name: digits_cnn\n    path: model.onnx\nbackends: [tflite_cpu]\n", 3,
     ["models[0]", "exactly one of 'name'", "'path'"]),
]


@pytest.mark.parametrize(("text", "line", "fragments"), [case[1:] for case in BAD_FILES],
                         ids=[case[0] for case in BAD_FILES])
def test_error_names_file_line_and_field(tmp_path, text, line, fragments):
    path = write_scenario(tmp_path, text, "bad.yaml")
    assert_scenario_error(path, line, fragments)


def test_all_problems_of_a_file_are_reported_together(scenario_file):
    path = scenario_file("""
        name: many
        models:
          - digits_cn
        backends:
          - name: onnxruntime_cpu
            thread: 2
        batch_sizes: [one]
        mesure: {}
    """, name="many.yaml")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    lines = str(caught.value).splitlines()
    assert len(lines) == 4, lines
    assert [int(line.split(":")[1]) for line in lines] == [3, 6, 7, 8]  # in file order
    assert all(line.startswith(f"{path}:") for line in lines)
    text = "\n".join(lines)
    for fragment in ("'digits_cnn'", "'threads'", "batch_sizes[0]", "'measure'"):
        assert fragment in text


def test_per_model_measure_override_is_validated_like_the_scenario_measure(scenario_file):
    """A per-model override must not be able to produce a measure block the schema refuses elsewhere."""
    path = scenario_file("""
        name: override
        models:
          - name: digits_cnn
            measure: {min_seconds: 5}
        backends: [tflite_cpu]
        measure: {max_seconds: 2}
    """, name="override.yaml")
    with pytest.raises(ScenarioError) as caught:
        cases = expand(load_scenario(path))
        pytest.fail(f"accepted, and expanded into min_seconds > max_seconds: {cases[0].measure}")
    assert re.match(rf"{re.escape(str(path))}:4: models\[0\]\.measure", str(caught.value)), str(caught.value)


CLI_BAD_FILES = [case for case in BAD_FILES if case[0] not in {
    "wrong-type-backend-threads", "unknown-precision", "empty-mode-list", "unknown-nested-measure-key",
    "impossible-zoo-shape", "impossible-zoo-shape-too-small"}]


@pytest.mark.parametrize(("text", "line"), [(case[1], case[2]) for case in CLI_BAD_FILES],
                         ids=[case[0] for case in CLI_BAD_FILES])
def test_cli_reports_scenario_errors_with_status_2_and_no_traceback(tmp_path, text, line):
    write_scenario(tmp_path, text, "bad.yaml")
    done = run_cli("run", "bad.yaml", "--out", str(tmp_path / "out"), cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert f"bad.yaml:{line}:" in done.stderr
    assert not (tmp_path / "out").exists()  # nothing is run, not even an empty run folder


def test_cli_reports_a_missing_scenario_file_with_status_2(tmp_path):
    done = run_cli("run", "nowhere.yaml", cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "nowhere.yaml" in done.stderr and "no such scenario file" in done.stderr


# --- expansion ---------------------------------------------------------------------------------------------


def test_case_ids_and_count_are_the_full_product(scenario_file):
    path = scenario_file("""
        name: product
        models: [digits_cnn, mobilenet_v2]
        backends: [tflite_cpu, onnxruntime_cpu]
        precisions: [fp32, fp16]
        batch_sizes: [1, 4]
        mode: [latency, throughput]
    """)
    cases = expand(load_scenario(path))
    assert len(cases) == 2 * 2 * 2 * 2 * 2
    ids = [case.case_id for case in cases]
    assert len(set(ids)) == len(ids)
    assert "mobilenet_v2-fp32-b4-onnxruntime_cpu" in ids
    assert "mobilenet_v2-fp32-b4-onnxruntime_cpu-throughput" in ids
    assert "digits_cnn-fp16-b1-tflite_cpu-throughput" in ids
    for case in cases:
        expected = f"{case.model_label}-{case.precision}-b{case.batch_size}-{case.backend_label}"
        assert case.case_id == (expected if case.mode == "latency" else f"{expected}-{case.mode}")
        assert case.scenario == "product"


def test_same_backend_with_different_options_gets_distinct_labels(scenario_file):
    path = scenario_file("""
        name: threads
        models: [digits_cnn]
        backends:
          - {name: onnxruntime_cpu, threads: 1}
          - {name: onnxruntime_cpu, threads: 2}
          - {name: tflite_cpu, xnnpack: false}
          - {name: tflite_cpu, label: tfl_default}
    """)
    cases = expand(load_scenario(path))
    labels = [case.backend_label for case in cases]
    assert len(set(labels)) == 4, labels
    assert [case.backend for case in cases] == ["onnxruntime_cpu", "onnxruntime_cpu", "tflite_cpu", "tflite_cpu"]
    assert "tfl_default" in labels
    assert cases[0].backend_options["threads"] == 1 and cases[1].backend_options["threads"] == 2
    assert cases[2].backend_options == {"threads": None, "xnnpack": False}
    assert len({case.case_id for case in cases}) == 4


def test_same_zoo_model_at_two_shapes_gets_distinct_labels(scenario_file):
    path = scenario_file("""
        name: shapes
        models:
          - {name: mobilenet_v2, input_shape: [96, 96, 3]}
          - {name: mobilenet_v2, input_shape: [128, 128, 3]}
        backends: [tflite_cpu]
    """)
    cases = expand(load_scenario(path))
    assert [case.model_label for case in cases] == ["mobilenet_v2_96x96x3", "mobilenet_v2_128x128x3"]
    assert [case.model.input_shape for case in cases] == [(96, 96, 3), (128, 128, 3)]


def test_unrunnable_cases_are_kept_with_their_reasons(scenario_file):
    path = scenario_file("""
        name: skips
        models:
          - digits_cnn
          - path: user_model.onnx
          - path: other_model.tflite
        backends: [tflite_cpu, onnxruntime_cpu]
        precisions: [fp32, fp16]
        compression: [none, {prune: 0.5}]
    """)
    for name in ("user_model.onnx", "other_model.tflite"):  # present (their content is the build's to judge)
        (path.parent / name).write_bytes(b"")
    cases = {case.case_id: case for case in expand(load_scenario(path))}
    assert len(cases) == 3 * 2 * 2 * 2  # nothing is dropped
    # a user's ONNX file cannot become a TFLite model
    onnx_on_tflite = cases["user_model-fp32-b1-tflite_cpu"].skip_reason
    assert onnx_on_tflite and "ONNX" in onnx_on_tflite and "TFLite" in onnx_on_tflite
    assert "user_model.onnx" in onnx_on_tflite
    # pruning needs Keras layers: a user's .onnx cannot be pruned, and says so
    pruned_onnx = cases["user_model-fp32-prune50-b1-onnxruntime_cpu"].skip_reason
    assert pruned_onnx and "prune:0.5" in pruned_onnx and "Keras" in pruned_onnx and "user_model.onnx" in pruned_onnx
    # a TFLite file cannot be re-quantized
    tflite_fp16 = cases["other_model-fp16-b1-tflite_cpu"].skip_reason
    assert tflite_fp16 and "re-quantize" in tflite_fp16 and "fp16" in tflite_fp16
    # the runnable ones are not skipped (a corrupt user file fails at build time, it is not a skip)
    for case_id in ("digits_cnn-fp32-b1-onnxruntime_cpu", "digits_cnn-fp16-b1-tflite_cpu",
                    "digits_cnn-fp16-prune50-b1-onnxruntime_cpu", "user_model-fp16-b1-onnxruntime_cpu"):
        assert cases[case_id].skip_reason is None, (case_id, cases[case_id].skip_reason)


def test_unavailable_registered_backend_skips_with_its_exact_reason(scenario_file, test_backends):
    path = scenario_file("""
        name: unavailable
        models: [digits_cnn]
        backends: [never_here, onnxruntime_cpu]
    """)
    cases = expand(load_scenario(path))
    assert [case.backend for case in cases] == ["never_here", "onnxruntime_cpu"]
    assert cases[0].skip_reason is not None and cases[0].skip_reason.endswith(UNAVAILABLE_REASON)
    assert cases[0].skip_reason == f"never_here is not available: {UNAVAILABLE_REASON}"
    assert cases[1].skip_reason is None


def test_relative_model_paths_resolve_against_the_scenario_folder(tmp_path, monkeypatch):
    folder = tmp_path / "project" / "scenarios"
    path = write_scenario(folder, """
        name: relative
        models:
          - path: ../models/net.onnx
          - path: local.onnx
        backends: [onnxruntime_cpu]
    """)
    (tmp_path / "project" / "models").mkdir()
    for model in (tmp_path / "project" / "models" / "net.onnx", folder / "local.onnx"):
        model.write_bytes(b"")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cases = expand(load_scenario(path))
    assert [case.model.path for case in cases] == [
        str((tmp_path / "project" / "models" / "net.onnx").resolve()), str((folder / "local.onnx").resolve())]
    assert [case.model_label for case in cases] == ["net", "local"]


def test_user_model_with_input_shape_expands(scenario_file):
    """A user's model with dynamic dimensions needs an input_shape (the harness's own advice for such inputs);
    expanding the scenario must not crash on it."""
    path = scenario_file("""
        name: user_shape
        models:
          - {path: dynamic.onnx, input_shape: [16]}
        backends: [onnxruntime_cpu]
    """)
    (path.parent / "dynamic.onnx").write_bytes(b"")
    cases = expand(load_scenario(path))
    assert [case.model.input_shape for case in cases] == [(16,)]
    assert cases[0].model.input_hints()["input_shape"] == (16,)


# --- -k selection ------------------------------------------------------------------------------------------

SELECTION_SCENARIO = """
    name: sel
    models: [digits_cnn, mobilenet_v2]
    backends: [tflite_cpu, onnxruntime_cpu]
    batch_sizes: [1, 4]
    mode: [latency, throughput]
"""


@pytest.fixture
def selection_cases(scenario_file):
    path = scenario_file(SELECTION_SCENARIO, name="sel.yaml")
    loaded = load_scenario(path)
    return loaded, expand(loaded)


def _selected(loaded, cases, expression):
    # the CLI passes the scenario's name and file name as extra names
    return {case.case_id for case in select(cases, expression, extra_names=(loaded.scenario.name,
                                                                              loaded.path.name))}


def test_select_by_expression(selection_cases):
    loaded, cases = selection_cases
    assert _selected(loaded, cases, "onnxruntime and b4") == {
        "digits_cnn-fp32-b4-onnxruntime_cpu", "digits_cnn-fp32-b4-onnxruntime_cpu-throughput",
        "mobilenet_v2-fp32-b4-onnxruntime_cpu", "mobilenet_v2-fp32-b4-onnxruntime_cpu-throughput"}
    assert _selected(loaded, cases, "not tflite") == {c.case_id for c in cases if c.backend == "onnxruntime_cpu"}
    assert _selected(loaded, cases, "digits") == {c.case_id for c in cases if c.model_label == "digits_cnn"}
    assert _selected(loaded, cases, "DIGITS and LATENCY") == {
        c.case_id for c in cases if c.model_label == "digits_cnn" and c.mode == "latency"}
    assert _selected(loaded, cases, None) == {c.case_id for c in cases}


def test_select_rejects_a_malformed_expression(selection_cases):
    _, cases = selection_cases
    with pytest.raises(SelectionError, match="onnxruntime and"):
        select(cases, "onnxruntime and")


# pytester's in-process runs re-register the installed plugin; its modules are already imported by then
_inline = pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning")


def _pytest_selected(pytester, path, expression):
    """The cases pytest selects (a group's race item, race-<model>-b<batch>, is no case: tests/test_race.py)."""
    result = pytester.runpytest("--collect-only", "-q", "-p", "no:cacheprovider", "-W",
                                "ignore::pytest.PytestAssertRewriteWarning", str(path), "-k", expression)
    names = {line.split("::", 1)[1].strip() for line in result.outlines if "::" in line}
    return {name for name in names if not name.startswith("race-")}


@_inline
@pytest.mark.parametrize("expression", ["onnxruntime and b4", "not tflite", "digits", "throughput or mobilenet",
                                        "latency and not b1", "fp32 and tflite_cpu"],
                         ids=["e1", "e2", "e3", "e4", "e5", "e6"])
def test_selection_is_the_same_as_pytest_k(pytester, expression):
    path = write_scenario(pytester.path, SELECTION_SCENARIO, "sel.yaml")
    loaded = load_scenario(path)
    ours = _selected(loaded, expand(loaded), expression)
    assert ours, "the expression should select something"
    assert ours == _pytest_selected(pytester, path, expression)


@_inline
def test_scenario_name_selects_the_same_in_both_front_doors(pytester):
    """``-k NAME`` where NAME is the scenario's name (not its file name): the CLI matches it; pytest must too."""
    path = write_scenario(pytester.path, SELECTION_SCENARIO.replace("name: sel", "name: nightlyish"), "sel.yaml")
    loaded = load_scenario(path)
    cli_selected = _selected(loaded, expand(loaded), "nightlyish")
    assert cli_selected == _pytest_selected(pytester, path, "nightlyish")


def test_select_matches_names_case_insensitively_as_substrings(selection_cases):
    loaded, cases = selection_cases
    assert _selected(loaded, cases, "MobileNet") == {c.case_id for c in cases if c.model_label == "mobilenet_v2"}
    assert _selected(loaded, cases, "ORT") == set()  # substring of nothing in these ids or keywords
    assert _selected(loaded, cases, "sel.yaml") == {c.case_id for c in cases}  # extra names count


def test_model_paths_that_cannot_be_models_stop_the_load_at_their_line(tmp_path: Path):
    """A missing file, an unknown kind of file, a folder that is no SavedModel and a FIFO (never opened: reading one
    would hang) are the scenario's mistakes, each reported at its line before anything runs."""
    (tmp_path / "weights.bin").write_bytes(b"x")
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "pipe.onnx")
    path = write_scenario(tmp_path, """
        name: paths
        models:
          - {path: not_there.onnx}
          - {path: weights.bin}
          - {path: folder}
          - {path: pipe.onnx}
        backends: [onnxruntime_cpu]
    """)
    with pytest.raises(ScenarioError) as error:
        load_scenario(path)
    lines = str(error.value).splitlines()
    assert len(lines) == 4
    assert lines[0].startswith(f"{path}:3: models[0].path: no such model file") and "not_there.onnx" in lines[0]
    assert lines[1].startswith(f"{path}:4: models[1].path: ") and "cannot read this kind of file" in lines[1]
    assert lines[2].startswith(f"{path}:5: models[2].path: ") and "no saved_model.pb" in lines[2]
    assert lines[3].startswith(f"{path}:6: models[3].path: ") and "not a regular file" in lines[3]


def test_expansion_does_not_touch_model_files(tmp_path: Path):
    """Expansion is cheap and side-effect free: it neither builds nor writes anything beside the model."""
    path = write_scenario(tmp_path, """
        name: lazy
        models: [{path: model.onnx}]
        backends: [onnxruntime_cpu]
    """)
    (tmp_path / "model.onnx").write_bytes(b"")
    cases = expand(load_scenario(path))
    assert cases[0].skip_reason is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "scenario.yaml"]
