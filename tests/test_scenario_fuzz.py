"""Scenario parsing under fuzzing: no file, however broken, may give the user a traceback.

A scenario is typed by hand, so every mistake in it (YAML syntax, types, names, numbers, paths, encodings) must
come back as a :class:`ScenarioError` whose every line reads ``FILE:LINE: message``: the user goes to that line
and fixes it. Two fuzzers feed :func:`load_scenario`, and :func:`expand` whenever a file loads:

- mutation: the repository's scenarios and a few hand-written valid ones (per-model overrides, compression,
  calibration, accuracy budgets, a baseline, anchors and merge keys), with lines deleted, duplicated, swapped and
  re-indented, tokens replaced by others (schema keys, odd numbers, YAML anchors, aliases and tags, long
  strings, unicode), random characters and invalid UTF-8 inserted, and files truncated;
- generation: YAML dumped from Python structures over the real schema, with real zoo models and backends most of
  the time, so that many files get deep into validation and some are valid, and with wrong types, missing keys
  and unknown keys the rest of the time.

Both are derandomized (CI and a laptop run the same examples) and sized so that the whole module takes well
under a minute on a 2-core machine; each fuzz test prints how many files it ran and how they ended (``-s``).
The plain tests at the end pin every bug the fuzzers found, with the input that found it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backends.registry import backend_names, get_backend
from model_zoo.catalog import CATALOG
from scenario.cases import Case
from scenario.load import ScenarioError, expand, load_scenario
from tests.conftest import REPO, assert_scenario_error, write_scenario

MUTATED_EXAMPLES = 2000
GENERATED_EXAMPLES = 1500

FUZZ_SETTINGS = settings(
    deadline=None,  # a first expand() checks backend availability once per process: slow, and only once
    derandomize=True,  # the same examples on every run: a red CI build is reproducible
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)

# --- what a file may say --------------------------------------------------------------------------------

ZOO_MODELS = list(CATALOG)
BACKENDS = backend_names()
PRECISIONS = ["fp32", "fp16", "int8_dynamic", "int8"]
MODES = ["latency", "throughput", "concurrent"]
CALIBRATION_FILE = "calib.npz"  # exists next to every fuzzed file, so that .npz sources can be valid

TOP_KEYS = ["name", "description", "models", "backends", "precisions", "batch_sizes", "mode", "compression",
            "calibration", "accuracy", "measure", "baseline"]
MODEL_KEYS = ["name", "path", "input_shape", "label", "precisions", "batch_sizes", "compression", "calibration",
              "accuracy", "measure"]
MEASURE_KEYS = ["warmup_runs", "warmup_seconds", "min_runs", "min_seconds", "max_seconds", "timeout_s",
                "memory_limit_mb", "streams", "seed"]
ACCURACY_KEYS = ["max_top1_drop", "min_cosine", "atol", "rtol"]
BACKEND_KEYS = ["name", "threads", "label", "xnnpack", "graph_optimization", "library", "options"]
TYPOS = ["mesure", "thread", "precison", "batch_size", "modes", "backend", "model", "min_run", "sample",
         "Name", "", " name", "name "]
ALL_KEYS = sorted({*TOP_KEYS, *MODEL_KEYS, *MEASURE_KEYS, *ACCURACY_KEYS, *BACKEND_KEYS, "samples", "source",
                   "backend", "precision", "prune", *TYPOS})

# right type, odd value: what a path, a calibration source, a label or a delegate library may hold
PATHS = ["model.bin", "", ".", "/", "~nobody_accelbench/model.onnx", "a" * 300, "a" * 300 + ".onnx", "a\0b.onnx",
         "a\nb.onnx"]
SOURCES = ["missing.npz", "~nobody_accelbench/c.npz", "a" * 300 + ".npz", "a\0.npz", "a\n.npz", "/abs/c.npz",
           "data.csv", ""]
LABELS = ["a\nb", "", "\u2028", "\r", *BACKENDS]
LIBRARIES = ["", "/", "a" * 300, "a\0b"]  # never an existing file: that would spawn a probe process

# token pools of the mutation fuzzer, as YAML text; small groups, so that each group is drawn often
NUMBERS = ["0", "-1", "1", "2", "3", "8", "-0", "0.5", "-2.5", "1.5", "1e3", "1.0e+3", "0o777", "0b1011", "1_000",
           "1:30:00", "0" + "7" * 10]
EXTREME_NUMBERS = ["1.0e+400", "-1.0e+400", ".inf", "-.inf", ".nan", ".NaN", "1.0e-320", "18446744073709551616",
                   "-" + "9" * 30, "9" * 4400, "0x" + "f" * 3600, "0b" + "1" * 65, "1" + ":59" * 12]
WORDS = [*PRECISIONS, *MODES, *ZOO_MODELS, *BACKENDS, "none", "dataset", "random", CALIBRATION_FILE, "missing.npz",
         "model.onnx", "model.tflite", "model.keras", "saved_model", '"prune:0.5"', "prune:2:4", '"2:4"',
         "prune:1.5", "basic", "extended", "disable", "all", "turbo", "libdelegate.so", "~/model.onnx",
         "digits_cn", "onnxruntme_cpu", "fp64"]
ODD_STRINGS = ["'quoted string'", '"with \\"escapes\\" \\t"', '"a\\nb"', '"a\\0b"', '"a\\0b.npz"', '"\\x07"',
               '"a\\u2028b"', '"\\N"', '"a\\Lb.npz"', '"\\r"', "~nobody_accelbench/model.onnx",
               "~nobody_accelbench/c.npz", "a" * 300, "a" * 300 + ".npz", "b" * 1000]
SCALARS = ["null", "~", "Null", "true", "false", "yes", "no", "on", "off", "=", "2023-02-30", "2001-12-14",
           "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10 +99:00"]
COLLECTIONS = ["[]", "{}", "[1, 2]", "[fp32, fp16]", "[224, 224, 3]", "[8, 8, 1]", "{prune: 0.5}", '{prune: "2:4"}',
               "{min_runs: 3}", "{backend: tflite_cpu, precision: fp32}", "[[[]]]", "{a: {b: {c: 1}}}", "[basic]",
               "{basic: 1}"]
DEEP = ["[" * 400 + "]" * 400, "{a: " * 400 + "1" + "}" * 400, "- " * 400 + "x", "[" * 60 + "]" * 60]
ANCHORS = ["&a", "*a", "&a x", "&a [1]", "*nowhere", "<<", "<<: *a", "<<: {min_runs: 3}", "&a [*a]", "&b {k: *b}",
           "&c [1, [*c]]", "&d {k: [*d]}"]
TAGS = ["!!python/object:os.system", "!!python/object/apply:os.system [ls]", "!!python/name:os.system", "!!int",
        "!!float", "!!bool", "!!str", "!!binary", "!!timestamp", "!!set", "!!omap", "!!map", "!!seq", "!custom",
        "!!int abc", "!!bool maybe", "!!float x", "!!float ''", "!!timestamp 2001", "!!binary ===", "!!int [1]",
        "!!null x"]
PUNCTUATION = ["%YAML 1.1", "%TAG", "---", "...", "? ", "?", "|", ">", "|-", "#", "-", "- ", ":", ": ", "@", "`", "'",
               '"', "[", "{", "}", "]", ",", "&", "*", "!", "%", "\\"]
ODD_TEXT = ["x" * 4000, "é", "日本語", "🙂", "\u200b", "\t", "\u2028", "\x85", "\x07", "\ufeff", "\x00", "\r",
            "\r\n", "\x1b[31m", "\u202e"]
INVALID_UTF8 = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\x80", b"\xfe\xff"]

HAND_WRITTEN = [
    # per-model overrides of everything a model entry can override, a labelled baseline, backend options
    """\
name: overrides
description: every per-model override
models:
  - name: digits_cnn
    label: digits
    precisions: [fp32, fp16]
    batch_sizes: [1, 2]
    compression: [none, {prune: 0.5}]
    calibration: {samples: 16, source: random}
    accuracy: {max_top1_drop: 0.05, atol: 0.01}
    measure: {min_runs: 7, timeout_s: 12, seed: 3}
  - {name: mobilenet_v2, input_shape: [96, 96, 3]}
  - {name: tiny_transformer, input_shape: [32]}
  - path: user_model.onnx
    input_shape: [16]
backends:
  - {name: onnxruntime_cpu, threads: 1, graph_optimization: basic, label: ort_basic}
  - {name: tflite_cpu, xnnpack: false}
  - tensorflow
precisions: [fp32]
batch_sizes: [1]
mode: [latency, throughput]
measure: {min_runs: 30, min_seconds: 0.2, max_seconds: 3}
baseline: {backend: ort_basic, precision: fp32}
""",
    # compression, int8 calibration from a file next to the scenario, accuracy budgets, every mode
    f"""\
name: compressed
models:
  - digits_cnn
  - name: resnet50
    compression: [{{prune: "2:4"}}]
    accuracy: {{min_cosine: 0.99, rtol: 0.1}}
backends: [tflite_cpu, onnxruntime_cpu]
precisions: [fp32, int8_dynamic, int8]
compression: [none, {{prune: 0.75}}, "prune:2:4"]
calibration: {{samples: 8, source: {CALIBRATION_FILE}}}
accuracy: {{max_top1_drop: 0.01, min_cosine: -1, atol: 0, rtol: 0.5}}
mode: [latency, throughput, concurrent]
measure:
  warmup_runs: 0
  warmup_seconds: 0
  min_runs: 1
  min_seconds: 0
  max_seconds: 0.5
  timeout_s: 60
  memory_limit_mb: 2048
  streams: 3
  seed: -7
baseline:
  backend: onnxruntime_cpu
  precision: int8
""",
    # block style, user files of every kind, GPU and delegate backends (skipped where absent), a bare mode
    """\
# comments, block style and user files
name: "user files"
models:
  - path: ./models/net.onnx
  - path: model.tflite
    precisions: [fp32]
  - path: model.keras
    compression: [{prune: 0.5}]
  - path: saved_model
backends:
  - name: tensorrt
  - name: onnxruntime_trt
  - name: tflite_delegate
    library: libdelegate.so
    options: {precision: fp16, gpu: true, level: 2}
  - {name: tflite_gpu}
precisions: [fp32, fp16, int8]
batch_sizes: [1, 8, 32]
mode: concurrent
""",
    # anchors, aliases and merge keys: valid YAML that is rarer in hand-written files
    """\
name: anchors
models:
  - &digits {name: digits_cnn, measure: &fast {min_runs: 5, min_seconds: 0.1}}
  - {name: mobilenet_v2, measure: *fast}
  - {<<: *digits, label: digits_again}
backends:
  - &ort {name: onnxruntime_cpu, threads: 2}
  - {<<: *ort, threads: 1}
batch_sizes: &batches [1, 4]
measure:
  <<: *fast
  max_seconds: 2
""",
]

SEEDS = [path.read_text(encoding="utf-8") for path in sorted((REPO / "scenarios").glob("*.yaml"))] + HAND_WRITTEN


# --- the property every file must satisfy ---------------------------------------------------------------


def check_file(path: Path, content: bytes) -> str:
    """Write ``content`` to ``path`` and load it, and expand it when it loads: "loaded" or "refused".

    Any exception other than ScenarioError propagates and fails the test: it is the traceback a user would see.
    """
    path.write_bytes(content)
    try:
        loaded = load_scenario(path)
    except ScenarioError as error:
        assert_every_problem_located(error, path, content)
        return "refused"
    cases = expand(loaded)
    assert all(isinstance(case, Case) for case in cases)
    return "loaded"


def assert_every_problem_located(error: ScenarioError, path: Path, content: bytes) -> None:
    """One line per problem, each ``PATH:LINE: message`` with a line that exists in the file.

    A problem without a line is allowed only about the file as a whole: a file that does not exist or cannot be
    read at all (``load_scenario`` reports those two from the OSError of reading it). A fuzzed file always
    exists and is readable, so here every problem must name its line. ``LINE`` may be one past the last line:
    YAML reports an unexpected end of the file there.
    """
    message = str(error)
    assert error.problems, message
    rendered = message.splitlines()
    assert len(rendered) == len(error.problems), f"a problem spans several lines: {message!r}"
    last_line = len(content.decode("utf-8", "replace").splitlines()) + 1
    located = re.compile(rf"{re.escape(str(path))}:(\d+): ")
    for line in rendered:
        match = located.match(line)
        assert match, f"a problem without FILE:LINE: {line!r}"
        assert 1 <= int(match[1]) <= last_line, f"line {match[1]} is not in a file of {last_line - 1} lines: {line!r}"


def fuzz_folder(folder: Path) -> Path:
    """The fuzzed file's folder, with the calibration file and the model files that the seeds name (model paths
    are checked when the scenario loads; their content is the build's to judge, so empty files do)."""
    (folder / CALIBRATION_FILE).write_bytes(b"")
    (folder / "models").mkdir(exist_ok=True)
    for name in ("user_model.onnx", "models/net.onnx", "model.tflite", "model.keras"):
        (folder / name).write_bytes(b"")
    (folder / "saved_model").mkdir(exist_ok=True)
    (folder / "saved_model" / "saved_model.pb").write_bytes(b"")
    return folder


# --- mutation fuzzing -----------------------------------------------------------------------------------

TOKEN = re.compile(r"[^\s:,\[\]{}#]+")
VALUE = re.compile(r"(\s*(?:- )?[\w-]+: )\S")
CHARACTERS = st.one_of(st.sampled_from(list(":-[]{},&*!|>'\"#%@`?<= \t\n\r\\")), st.characters(codec="utf-8"))
REPLACEMENTS = st.one_of(
    *(st.sampled_from(pool) for pool in (ALL_KEYS, WORDS, NUMBERS, EXTREME_NUMBERS, ODD_STRINGS, SCALARS, COLLECTIONS,
                                         DEEP, ANCHORS, TAGS, PUNCTUATION, ODD_TEXT)),
    st.integers().map(str), st.floats().map(repr), st.text(max_size=12),
)
INDENTS = st.sampled_from(["", " ", "  ", "   ", "    ", "      ", "\t", " \t", "- ", "  - "])

Draw = Callable[[st.SearchStrategy[Any]], Any]


def _line_index(draw: Draw, lines: list[str]) -> int:
    return draw(st.integers(0, len(lines) - 1))


def delete_line(draw: Draw, lines: list[str]) -> list[str]:
    del lines[_line_index(draw, lines)]
    return lines


def duplicate_line(draw: Draw, lines: list[str]) -> list[str]:
    index = _line_index(draw, lines)
    lines.insert(draw(st.integers(0, len(lines))), lines[index])
    return lines


def swap_lines(draw: Draw, lines: list[str]) -> list[str]:
    first, second = _line_index(draw, lines), _line_index(draw, lines)
    lines[first], lines[second] = lines[second], lines[first]
    return lines


def reindent_line(draw: Draw, lines: list[str]) -> list[str]:
    index = _line_index(draw, lines)
    lines[index] = draw(INDENTS) + lines[index].lstrip(" ")
    return lines


def replace_token(draw: Draw, lines: list[str]) -> list[str]:
    index = _line_index(draw, lines)
    tokens = list(TOKEN.finditer(lines[index]))
    if tokens:
        token = tokens[draw(st.integers(0, len(tokens) - 1))]
        lines[index] = lines[index][:token.start()] + draw(REPLACEMENTS) + lines[index][token.end():]
    return lines


def replace_value(draw: Draw, lines: list[str]) -> list[str]:
    """The whole value of a ``key: value`` line: the file stays YAML more often than with other mutations, so
    the odd value reaches validation, expansion and the paths' checks."""
    candidates = [index for index, line in enumerate(lines) if VALUE.match(line)]
    if candidates:
        index = candidates[draw(st.integers(0, len(candidates) - 1))]
        lines[index] = VALUE.match(lines[index])[1] + draw(REPLACEMENTS)
    return lines


def insert_characters(draw: Draw, lines: list[str]) -> list[str]:
    index = _line_index(draw, lines)
    at = draw(st.integers(0, len(lines[index])))
    lines[index] = lines[index][:at] + draw(st.text(CHARACTERS, min_size=1, max_size=4)) + lines[index][at:]
    return lines


def insert_line(draw: Draw, lines: list[str]) -> list[str]:
    """A key of the schema (or a typo) with an odd value, at any indentation, anywhere."""
    at = draw(st.integers(0, len(lines)))
    indent = re.match(r"\s*", lines[at - 1] if at else "")[0] if draw(st.booleans()) else draw(INDENTS)
    lines.insert(at, f"{indent}{draw(st.sampled_from(ALL_KEYS))}: {draw(REPLACEMENTS)}")
    return lines


def truncate(draw: Draw, lines: list[str]) -> list[str]:
    text = "\n".join(lines)
    return text[:draw(st.integers(0, len(text)))].split("\n")


MUTATIONS = [delete_line, duplicate_line, swap_lines, reindent_line, replace_token, replace_token, replace_value,
             replace_value, insert_characters, insert_line, truncate]


@st.composite
def mutated_files(draw: Draw) -> bytes:
    """A valid scenario after one to three mutations; one in ten also gets a byte that is not UTF-8."""
    lines = draw(st.sampled_from(SEEDS)).split("\n")
    for _ in range(draw(st.integers(1, 3))):
        lines = draw(st.sampled_from(MUTATIONS))(draw, lines) or [""]
    content = "\n".join(lines).encode("utf-8")
    if draw(st.integers(0, 9)) == 0:
        at = draw(st.integers(0, len(content)))
        content = content[:at] + draw(st.sampled_from(INVALID_UTF8)) + content[at:]
    return content


def test_mutated_scenarios_fail_only_with_located_scenario_errors(tmp_path: Path) -> None:
    """MUTATED_EXAMPLES mutants of valid scenarios: each loads (and expands) or says FILE:LINE for every problem."""
    folder, outcomes = fuzz_folder(tmp_path), Counter[str]()

    @settings(FUZZ_SETTINGS, max_examples=MUTATED_EXAMPLES)
    @given(content=mutated_files())
    def fuzz(content: bytes) -> None:
        outcomes[check_file(folder / "mutant.yaml", content)] += 1

    fuzz()
    print(f"mutation fuzzing: {outcomes.total()} files, {dict(outcomes)}")
    # the mutants must exercise both sides: files that still load (and expand) and files that are refused
    assert outcomes["loaded"] >= 50 and outcomes["refused"] >= MUTATED_EXAMPLES // 2, outcomes


# --- generative fuzzing ---------------------------------------------------------------------------------

NAN, INF = float("nan"), float("inf")
JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.sampled_from(["", "fp32", "none", "x" * 300, "1", "[]"]),
    lambda inner: st.lists(inner, max_size=2)
    | st.dictionaries(st.text(max_size=6) | st.integers() | st.none() | st.booleans(), inner, max_size=2),
    max_leaves=4,
)
# per-sample shapes each zoo model accepts (a clean document only asks for these)
GOOD_SHAPES = {name: [list(entry.input_shape)] + ([[32, 32, 1], [96, 96, 3]] if len(entry.input_shape) == 3 and
                                                   entry.min_input_shape else [[16]] if entry.min_input_shape else [])
               for name, entry in CATALOG.items()}
GOOD_PATHS = ["model.onnx", "model.tflite", "model.keras", "saved_model", "../up/model.onnx", "~/model.onnx"]
GOOD_LABELS = ["fast", "slow", "x", "ort", "tfl"]
OPTION_VALUES = {
    "xnnpack": (st.booleans(), st.sampled_from(["maybe", 1, None]), None),
    "graph_optimization": (st.sampled_from(["disable", "basic", "extended", "all"]),
                           st.sampled_from(["turbo", 3, ["basic"], {"basic": 1}]), None),
    "library": (st.just("libdelegate.so"), st.sampled_from([1, None, ["a.so"]]), st.sampled_from(LIBRARIES)),
    "options": (st.dictionaries(st.text(max_size=6), st.booleans() | st.integers() | st.text(max_size=6),
                                max_size=2), st.sampled_from([[], "fast", {"a": [1]}]), None),
}


def scenario_documents(clean: bool) -> st.SearchStrategy[Any]:
    """Scenarios as Python data over the real schema, real zoo models and real backends.

    A clean document has every value of the right type and range, so that many of them load and expand; it still
    fails now and then on what only the whole file decides (a baseline, a per-model measure that undercuts the
    scenario's). A dirty one also draws wrong values, wrong types, unknown keys and missing keys.

    Every strategy is built here, once: composites only draw from them. Strategies built inside a draw cost
    hypothesis more time (labels, source inspection) than load_scenario spends on the whole file.
    """

    def value(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any] | None = None,
              odd: st.SearchStrategy[Any] | None = None) -> st.SearchStrategy[Any]:
        """Good values mostly; ``odd`` ones (right type, unusual value) in any document; ``bad`` ones and junk
        (wrong values, wrong types) in dirty documents only."""
        choices = [good, good, good, *([odd] if odd is not None else [])]
        if not clean:
            choices += [*([bad] if bad is not None else []), JUNK]
        return st.one_of(*choices) if len(choices) > 3 else good

    unknown = st.dictionaries(st.sampled_from(ALL_KEYS), JUNK, min_size=1, max_size=2)

    def mapping(fields: dict[str, st.SearchStrategy[Any]], required: dict[str, st.SearchStrategy[Any]] | None = None,
                most: int = 3) -> st.SearchStrategy[dict[Any, Any]]:
        """The required keys and up to ``most`` optional ones (a dirty mapping: sometimes unknown keys first).

        A few keys drawn by name rather than a decision per key keeps documents small and fast to draw."""
        optional = st.lists(st.sampled_from(list(fields)), max_size=most, unique=True)

        @st.composite
        def build(draw: Draw) -> dict[Any, Any]:
            result = draw(unknown) if not clean and draw(st.integers(0, 4)) == 0 else {}
            result.update({key: draw(strategy) for key, strategy in (required or {}).items()})
            result.update({key: draw(fields[key]) for key in draw(optional)})
            return result

        return build()

    def some(element: st.SearchStrategy[Any], most: int = 2) -> st.SearchStrategy[Any]:
        return value(st.lists(element, min_size=1, max_size=most), st.lists(element, max_size=0))

    count = value(st.integers(1, 4), st.integers(-2, 0) | st.sampled_from([2**31, 2**63, 2**64, -(2**70), HUGE]))
    seconds = value(st.floats(0, 3), st.floats(-1, -1e-9) | st.sampled_from([INF, -INF, NAN, 1e308]))
    long_seconds = value(st.floats(3, 600), st.sampled_from([0, -1, INF, NAN]))
    fraction = value(st.floats(0, 1), st.floats(-1.5, 1.5) | st.sampled_from([NAN, INF, -INF]))
    precision = value(st.sampled_from(PRECISIONS), st.sampled_from(["fp64", "FP32", "int4", ""]))
    compression = value(
        st.sampled_from(["none", "prune:0.5", {"prune": "2:4"}]) | st.floats(0.01, 0.99).map(_prune),
        st.sampled_from(["prune:1.5", "prune:", "none:0.5", {"prune": "4:2"}, {"prune": "a:b"}, {"prune": True},
                         {"prune": NAN}, {"prune": 0.5, "x": 1}, {"prune": 2**64}]))
    source = value(st.sampled_from(["dataset", "random", CALIBRATION_FILE]), odd=st.sampled_from(SOURCES))
    calibration = mapping({"samples": count, "source": source})
    accuracy = mapping({key: fraction for key in ACCURACY_KEYS})
    measure = mapping({
        "warmup_runs": value(st.integers(0, 4), count), "warmup_seconds": seconds, "min_runs": count,
        "min_seconds": seconds, "max_seconds": long_seconds, "timeout_s": long_seconds, "memory_limit_mb": count,
        "streams": count, "seed": value(st.integers(-(2**63), 2**63 - 1), st.integers()),
    })
    label = value(st.sampled_from(GOOD_LABELS), odd=st.sampled_from(LABELS) | st.text(max_size=8))
    overrides = {
        "label": label, "precisions": some(precision), "batch_sizes": some(count), "compression": some(compression),
        "calibration": calibration, "accuracy": accuracy, "measure": measure,
    }
    zoo_entries = [
        mapping({"input_shape": value(st.sampled_from(GOOD_SHAPES[name]), st.lists(count, max_size=4)), **overrides},
                {"name": value(st.just(name))})
        for name in ZOO_MODELS
    ]
    path = value(st.sampled_from(GOOD_PATHS), odd=st.sampled_from(PATHS))
    user_entry = mapping({"input_shape": value(st.lists(st.integers(1, 64), min_size=1, max_size=3)), **overrides},
                         {"path": path})
    models = [st.sampled_from(ZOO_MODELS), st.one_of(*zoo_entries), user_entry]
    if not clean:
        models.append(mapping({"name": st.sampled_from(ZOO_MODELS), "path": path, **overrides}))

    def backend_entry(name: str) -> st.SearchStrategy[dict[Any, Any]]:
        """``name`` with some of its own options (a dirty one: sometimes another backend's)."""
        options = {key: value(*OPTION_VALUES[key]) for key in OPTION_VALUES
                   if key in get_backend(name).option_names() or not clean}
        return mapping({"threads": count, "label": label, **options},
                       {"name": value(st.just(name), st.sampled_from(["tflite", "onnxruntme_cpu", ""]))})

    parts = {
        "name": value(st.sampled_from(["fuzz", "smoke test", "ünïcode 名前"]), odd=st.text(max_size=12)),
        "description": value(st.sampled_from(["", "generated"]), odd=st.text(max_size=30)),
        "models": some(st.one_of(*models), 3),
        "backends": some(st.one_of(st.sampled_from(BACKENDS), st.one_of(*map(backend_entry, BACKENDS))), 3),
        "precisions": some(precision), "batch_sizes": some(count),
        "mode": value(st.sampled_from(MODES) | st.lists(st.sampled_from(MODES), min_size=1, max_size=3),
                      st.sampled_from([[], "fast", ["latency", "fast"]])),
        "compression": some(compression), "calibration": calibration, "accuracy": accuracy, "measure": measure,
        "baseline": mapping({"backend": value(st.sampled_from(BACKENDS), label), "precision": precision}),
    }
    required = ["name", "models", "backends"]
    optional = st.lists(st.sampled_from([key for key in TOP_KEYS if key not in required]), max_size=4, unique=True)

    @st.composite
    def document(draw: Draw) -> Any:
        if not clean and draw(st.integers(0, 49)) == 0:
            return draw(JUNK)  # not a mapping at the top level, now and then
        chosen = draw(optional)
        if clean or draw(st.integers(0, 4)):
            chosen += required
        elif not clean:
            chosen += draw(st.lists(st.sampled_from(required), max_size=2, unique=True))  # a required key missing
        scenario = {key: draw(parts[key]) for key in TOP_KEYS if key in chosen and key != "baseline"}
        if "baseline" in chosen:
            scenario["baseline"] = draw(parts["baseline"])
            names = _backend_names(scenario.get("backends"))
            if clean and names and draw(st.integers(0, 3)):  # a clean baseline mostly names one of the backends
                scenario["baseline"]["backend"] = names[draw(st.integers(0, len(names) - 1))]
        return scenario

    return document()


class Huge(int):
    """An integer too long for Python to print in decimal (over 4300 digits): dumped in hexadecimal."""


class Dumper(yaml.SafeDumper):
    """yaml.safe_dump, and integers of any size."""


Dumper.add_representer(Huge, lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:int", hex(value)))
HUGE = Huge(16**5000 - 1)


def _prune(fraction: float) -> dict[str, float]:
    return {"prune": fraction}


def _backend_names(backends: Any) -> list[str]:
    """The labels (or names) a baseline may name, of a document's backends."""
    entries = [{"name": entry} if isinstance(entry, str) else entry
               for entry in (backends if isinstance(backends, list) else [])]
    return [entry.get("label") or entry["name"] for entry in entries
            if isinstance(entry, dict) and isinstance(entry.get("name"), str)]


@st.composite
def generated_files(draw: Draw) -> bytes:
    """A generated scenario (clean one time in two), dumped in block, flow or mixed style."""
    document = draw(st.one_of(CLEAN_DOCUMENTS, DIRTY_DOCUMENTS))
    text = yaml.dump(document, Dumper=Dumper, sort_keys=False, allow_unicode=draw(st.booleans()),
                          default_flow_style=draw(st.sampled_from([False, None, True])),
                          width=draw(st.sampled_from([80, 1_000_000])))
    return text.encode("utf-8")


CLEAN_DOCUMENTS, DIRTY_DOCUMENTS = scenario_documents(clean=True), scenario_documents(clean=False)


def test_generated_scenarios_fail_only_with_located_scenario_errors(tmp_path: Path) -> None:
    """GENERATED_EXAMPLES scenarios built over the schema: each loads (and expands) or says FILE:LINE for every
    problem."""
    folder, outcomes = fuzz_folder(tmp_path), Counter[str]()

    @settings(FUZZ_SETTINGS, max_examples=GENERATED_EXAMPLES)
    @given(content=generated_files())
    def fuzz(content: bytes) -> None:
        outcomes[check_file(folder / "generated.yaml", content)] += 1

    fuzz()
    print(f"generative fuzzing: {outcomes.total()} files, {dict(outcomes)}")
    # clean documents must get through validation often enough to exercise expand()
    assert outcomes["loaded"] >= GENERATED_EXAMPLES // 10 and outcomes["refused"] >= GENERATED_EXAMPLES // 3, outcomes


# --- the fuzzers' starting points -----------------------------------------------------------------------


@pytest.mark.parametrize("text", SEEDS, ids=[f"seed{i}" for i in range(len(SEEDS))])
def test_every_seed_is_a_valid_scenario(tmp_path: Path, text: str) -> None:
    """The mutation fuzzer starts from valid files, so that its mutants are one mistake away from valid."""
    path = write_scenario(fuzz_folder(tmp_path), text)
    assert expand(load_scenario(path))


# --- what the fuzzers found: each input that gave a traceback, or an error without its line ----------------

HEADER = "name: bad\nmodels: [digits_cnn]\nbackends: [tflite_cpu]\n"


def refused_at(path: Path, line: int, *fragments: str) -> None:
    """Loading ``path`` fails at ``path:line`` saying every fragment, and every problem names its own line."""
    assert_scenario_error(path, line, list(fragments))
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert_every_problem_located(caught.value, path, path.read_bytes())


def test_bytes_that_are_not_utf8_are_reported_at_their_line(tmp_path: Path) -> None:
    """Was ``FILE: cannot read the file: 'utf-8' codec can't decode byte 0xff``, with no line to go to."""
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"name: bad\nmodels: [digits_cnn]\ndescription: caf\xe9\nbackends: [tflite_cpu]\n")
    refused_at(path, 3, "not UTF-8", "0xe9")


def test_a_character_yaml_refuses_is_reported_at_its_line_on_one_line(tmp_path: Path) -> None:
    """Was PyYAML's two-line ReaderError text with no line number (``position 68``): ``description: a<BEL>b``."""
    refused_at(write_scenario(tmp_path, HEADER + "description: a\x07b\n"), 4, "unacceptable character #x0007")


@pytest.mark.parametrize("value", ["!!float ''", "!!bool maybe", "!!timestamp 2001", "!!int abc", "2023-02-30",
                                   "2001-12-14 21:59:43.10 +99:00"],
                         ids=["float-empty", "bool", "timestamp", "int", "day-out-of-range", "offset-out-of-range"])
def test_a_scalar_that_does_not_fit_its_tag_is_a_yaml_error_at_its_line(tmp_path: Path, value: str) -> None:
    """Were IndexError, KeyError, AttributeError and ValueError tracebacks out of PyYAML's SafeLoader."""
    refused_at(write_scenario(tmp_path, HEADER + f"description: {value}\n"), 4, "invalid YAML", "not a")


@pytest.mark.parametrize("text", [
    HEADER + "batch_sizes: [" + "9" * 5000 + "]\n",  # ValueError in PyYAML: more than 4300 digits
    HEADER + "batch_sizes: [0x" + "f" * 3600 + "]\n",  # ValueError when expand() prints the case id
    HEADER + "measure: {seed: " + "1" + ":59" * 3000 + "}\n",  # a sexagesimal integer, as large
    "name: bad\nbackends: [tflite_cpu]\nmodels:\n  - {name: digits_cnn, input_shape: [0x" + "f" * 3600
    + "]}\n",  # ValueError printing the shape into the zoo's message
], ids=["decimal", "hexadecimal", "sexagesimal", "in-a-message"])
def test_an_integer_beyond_64_bits_is_a_yaml_error_at_its_line(tmp_path: Path, text: str) -> None:
    refused_at(write_scenario(tmp_path, text), 4, "invalid YAML", "at most 64 bits")


@pytest.mark.parametrize(("text", "line"), [
    ("name: bad\nmodels: &a [*a]\nbackends: [tflite_cpu]\n", 2),
    ("name: bad\nmodels: [digits_cnn]\nbackends:\n  - {name: tflite_delegate, options: &o {k: *o}}\n", 4),
], ids=["list", "mapping"])
def test_an_alias_inside_its_own_anchor_is_a_yaml_error_at_its_line(tmp_path: Path, text: str, line: int) -> None:
    """Was a RecursionError: the duplicate-key check (and anything else that walks the data) never ended."""
    refused_at(write_scenario(tmp_path, text), line, "invalid YAML", "inside its own anchor")


@pytest.mark.parametrize("text", [
    HEADER + "description: " + "[" * 1000 + "]" * 1000 + "\n",
    HEADER + "description: " + "{a: " * 1000 + "1" + "}" * 1000 + "\n",
    HEADER + "x: &a " + "[" * 30 + "]" * 30 + "\ndescription: &b " + "[" * 30 + "*a" + "]" * 30 + "\n",
], ids=["lists", "mappings", "through-aliases"])
def test_deep_nesting_is_a_yaml_error_at_its_line(tmp_path: Path, text: str) -> None:
    """Was a RecursionError in PyYAML's composer, or later in whatever walked the nested data."""
    line = text.count("\n")  # the last line nests too deep
    refused_at(write_scenario(tmp_path, text), line, "invalid YAML", "nested more than")


def test_a_backend_option_check_that_raises_is_reported_as_a_bad_value(tmp_path: Path) -> None:
    """Was ``TypeError: unhashable type: 'list'`` from onnxruntime_cpu's ``value not in _OPT_LEVELS``."""
    path = write_scenario(tmp_path, "name: bad\nmodels: [digits_cnn]\nbackends:\n"
                                    "  - {name: onnxruntime_cpu, graph_optimization: [basic]}\n")
    refused_at(path, 4, "backends[0].graph_optimization", "['basic']")


@pytest.mark.parametrize(("text", "line"), [
    ("name: bad\nmodels: [digits_cnn]\nbackends: [{name: tflite_cpu, label: \"a\\nb\"}]\nbaseline: {backend: z}\n",
     4),
    (HEADER + "calibration: {source: \"a\\nb.npz\"}\n", 4),
    ("name: bad\nmodels: [digits_cnn]\nbackends: [{name: tflite_cpu, \"a\\Lb\": 1}]\n", 3),
], ids=["label-in-baseline", "calibration-path", "backend-option-key"])
def test_a_line_break_quoted_from_the_file_does_not_split_the_problem(tmp_path: Path, text: str, line: int) -> None:
    """Were two-line problems: the second line named no file and line (a label "a\\nb" listed unquoted)."""
    refused_at(write_scenario(tmp_path, text), line)


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ("name: bad\nmodels: [{path: \"a\\0.onnx\"}]\nbackends: [onnxruntime_cpu]\n", 2, "null"),
    (HEADER + "calibration: {source: \"a\\0.npz\"}\n", 4, "null"),
    ("name: bad\nmodels: [{path: ~nobody_accelbench/model.onnx}]\nbackends: [onnxruntime_cpu]\n", 2, "home"),
    (HEADER + "calibration: {source: ~nobody_accelbench/c.npz}\n", 4, "home"),
    (f"name: bad\nmodels: [{{path: {'a' * 300}}}]\nbackends: [onnxruntime_cpu]\n", 2, "too long"),
    (HEADER + f"calibration: {{source: {'a' * 300}.npz}}\n", 4, "too long"),
], ids=["nul-model", "nul-calibration", "user-model", "user-calibration", "long-model", "long-calibration"])
def test_a_path_the_system_refuses_is_reported_at_its_line(tmp_path: Path, text: str, line: int,
                                                           fragment: str) -> None:
    """Were ValueError (NUL byte), RuntimeError (~unknown_user) and OSError (name too long) tracebacks, from
    load_scenario for calibration files and from expand() or the zoo for model paths."""
    refused_at(write_scenario(tmp_path, text), line, "unusable path", fragment)


def test_a_backend_check_that_raises_in_expand_skips_the_case_with_the_reason(tmp_path: Path) -> None:
    """Was ``OSError: File name too long`` out of expand(): tflite_delegate stats its library to decide skips."""
    path = write_scenario(tmp_path, f"name: x\nmodels: [digits_cnn]\nbackends:\n"
                                    f"  - {{name: tflite_delegate, library: {'a' * 300}}}\n")
    [case] = expand(load_scenario(path))
    assert case.skip_reason and "tflite_delegate" in case.skip_reason and "too long" in case.skip_reason


@pytest.mark.parametrize("make", [lambda folder: folder / "nowhere.yaml", lambda folder: folder],
                         ids=["missing", "a-directory"])
def test_only_a_file_that_cannot_be_read_at_all_has_no_line(tmp_path: Path, make: Callable[[Path], Path]) -> None:
    """The one exception to FILE:LINE: no line of the file can be named when the file cannot be read."""
    path = make(tmp_path)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.problems[0][0] is None
    assert re.fullmatch(rf"{re.escape(str(path))}: (no such scenario file|not a regular file; a scenario is a YAML "
                        r"file)", str(caught.value))
