"""`--shard K/N`: the split of one scenario's cases across machines (scenario.sharding)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scenario.sharding import Shard, ShardError, assign, model_costs, parse_shard, shard_cases
from tests.conftest import expand_file, write_scenario

REPO = Path(__file__).resolve().parents[1]

SCENARIO = """
    name: sharded
    models:
      - digits_cnn
      - {name: mobilenet_v2, input_shape: [96, 96, 3]}
      - {name: efficientnet_b0, input_shape: [96, 96, 3]}
      - tiny_transformer
      - resnet50
    backends: [tflite_cpu, onnxruntime_cpu]
    precisions: [fp32, int8]
    batch_sizes: [1, 4]
"""


def test_three_shards_cover_every_case_once_and_never_split_a_model(tmp_path: Path) -> None:
    cases = expand_file(write_scenario(tmp_path, SCENARIO))
    shards = [shard_cases(cases, Shard(k, 3)) for k in (1, 2, 3)]
    ids = [case.case_id for shard in shards for case in shard]
    assert sorted(ids) == sorted(case.case_id for case in cases) and len(ids) == len(set(ids))
    owners: dict[str, set[int]] = {}
    for k, shard in enumerate(shards, 1):
        assert shard, f"shard {k}/3 is empty with 5 models"
        for case in shard:
            owners.setdefault(case.model_label, set()).add(k)
    assert all(len(where) == 1 for where in owners.values()), owners
    for shard in shards:  # each shard keeps the scenario's order
        order = [case.case_id for case in cases if case in shard]
        assert [case.case_id for case in shard] == order


def test_the_split_is_the_same_in_every_process(tmp_path: Path) -> None:
    """Python's hash() is salted per process: two machines of a CI matrix must still agree."""
    path = write_scenario(tmp_path, SCENARIO)
    script = ("import json, sys; from scenario.sharding import assign, model_costs; "
              "from tests.conftest import expand_file; from pathlib import Path; "
              "print(json.dumps(assign(model_costs(expand_file(Path(sys.argv[1]))), 3)))")
    splits = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
        out = subprocess.run([sys.executable, "-c", script, str(path)], env=env, cwd=REPO, capture_output=True,
                             text=True, check=True)
        splits.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert splits[0] == splits[1] == assign(model_costs(expand_file(path)), 3)


def test_largest_first_balances_and_no_shard_is_empty_while_models_remain() -> None:
    assert assign({"a": 100.0, "b": 60.0, "c": 50.0, "d": 10.0}, 2) == {"a": 1, "b": 2, "c": 2, "d": 1}
    # models that cost nothing (every case skipped) still spread: the fewest models first
    assert sorted(assign({"x": 0.0, "y": 0.0, "z": 0.0}, 3).values()) == [1, 2, 3]
    assert sorted(assign({"x": 5.0, "y": 0.0}, 2).values()) == [1, 2]


def test_conversions_and_measuring_time_make_a_models_cost(tmp_path: Path) -> None:
    cases = expand_file(write_scenario(tmp_path, SCENARIO))
    costs = model_costs(cases)
    assert set(costs) == {"digits_cnn", "mobilenet_v2", "efficientnet_b0", "tiny_transformer", "resnet50"}
    assert all(cost > 0 for cost in costs.values())


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "a/b", "", "2", "1/2/3"])
def test_a_shard_that_is_not_k_of_n_is_one_clear_error(text: str) -> None:
    with pytest.raises(ShardError, match=r"--shard"):
        parse_shard(text)


def test_a_shard_reads_as_the_user_wrote_it() -> None:
    assert parse_shard(" 2 / 3 ") == Shard(2, 3) and str(Shard(2, 3)) == "2/3"


def test_the_command_line_refuses_a_bad_shard_in_one_line(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    path = write_scenario(tmp_path, SCENARIO)
    result = run_cli("run", str(path), "--shard", "4/3", "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    assert "--shard '4/3': K must be between 1 and N" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_shard_beyond_the_models_has_nothing_to_run_and_says_so(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    path = write_scenario(tmp_path, SCENARIO)
    result = run_cli("run", str(path), "--shard", "6/6", "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert "shard 6/6" in result.stdout and "holds no model (the scenario has 5)" in result.stdout
    assert not (tmp_path / "run").exists()


def test_the_pytest_front_door_collects_the_same_shards(pytester: pytest.Pytester) -> None:
    """`pytest scenario.yaml --shard K/N` holds exactly the cases `accelbench run --shard K/N` runs (and the
    races of those models)."""
    path = write_scenario(pytester.path, SCENARIO)
    quiet = ("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")
    cases = expand_file(path)
    seen: list[str] = []
    for k in (1, 2, 3):
        result = pytester.runpytest("--collect-only", "-q", *quiet, str(path), "--shard", f"{k}/3")
        ids = [line.split("::", 1)[1].strip() for line in result.outlines if "::" in line]
        wanted = [case.case_id for case in shard_cases(cases, Shard(k, 3))]
        assert [i for i in ids if not i.startswith("race-")] == wanted
        assert all(any(i.startswith(f"race-{case.model_label}-") for case in shard_cases(cases, Shard(k, 3)))
                   for i in ids if i.startswith("race-"))
        seen += ids
    assert len(seen) == len(set(seen))
    result = pytester.runpytest("--collect-only", "-q", *quiet, str(path), "--shard", "5/3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert any("--shard '5/3': K must be between 1 and N" in line for line in result.errlines + result.outlines)


def test_three_shards_run_apart_and_merge_into_one_report(tmp_path: Path) -> None:
    """Each shard is its own `accelbench run` (one CI machine each); `accelbench report` takes their folders and
    writes one page holding every case once."""
    from tests.conftest import FAST_MEASURE, read_jsonl, run_cli

    path = write_scenario(tmp_path, f"""
        name: sharded_run
        models: [digits_cnn, tiny_transformer, {{name: mobilenet_v2, input_shape: [32, 32, 3]}}]
        backends: [{{name: onnxruntime_cpu, threads: 1}}]
        precisions: [fp32]
        measure: {FAST_MEASURE}
        race: false
    """)
    folders, ran = [], []
    for k in (1, 2, 3):
        folder = tmp_path / f"shard{k}"
        result = run_cli("run", str(path), "--shard", f"{k}/3", "--out", str(folder))
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        records = read_jsonl(folder / "results.jsonl")
        assert len(records) == 1 and records[0]["status"] == "passed", records
        assert json.loads((folder / "scenario.json").read_text())["shard"] == f"{k}/3"
        folders.append(str(folder))
        ran.append(records[0]["case_id"])
    assert sorted(ran) == sorted(case.case_id for case in expand_file(path))
    merged = tmp_path / "merged.html"
    result = run_cli("report", *folders, "-o", str(merged))
    assert result.returncode == 0, result.stderr
    page = merged.read_text(encoding="utf-8")
    assert all(case_id in page for case_id in ran)
