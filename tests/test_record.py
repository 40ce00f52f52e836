"""The typed results record: what is written is checked against it, what was written reads back unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from results.record import Record
from results.store import RunStore

FIXTURE = Path(__file__).parent / "data" / "run_0684769" / "results.jsonl"


def fixture_records() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text().splitlines()]


def test_records_written_before_read_back_unchanged() -> None:
    for data in fixture_records():
        assert Record.from_json(data).to_json() == data


def test_flat_row_takes_each_figure_from_its_one_place() -> None:
    data = fixture_records()[0]
    row = Record.from_json(data).flat()
    assert row["p50_ms"] == data["latency_ms"]["p50"] and row["ci_low_ms"] == data["median_ci_ms"]["low"]
    assert row["cosine"] == data["accuracy"]["cosine_min"] and row["device"] == "cpu"
    assert row["size_mb"] == data["model_size_bytes"] / 1e6
    skipped = Record.from_json(fixture_records()[-1]).flat()
    assert skipped["status"] == "skipped" and skipped["p50_ms"] is None and skipped["cosine"] is None


@pytest.mark.parametrize("where", ["top", "latency", "worker"])
def test_a_misspelt_field_is_refused_by_name(where: str) -> None:
    data = fixture_records()[0]
    if where == "top":
        data["trhoughput_ips"] = 1.0
    elif where == "latency":
        data["latency_ms"]["p5O"] = 1.0
    else:
        data["worker"]["startup_s"] = 1.0
    with pytest.raises(ValidationError) as error:
        Record.from_json(data)
    assert {"trhoughput_ips", "p5O", "startup_s"} & set(str(error.value).replace(".", " ").split())


def test_a_field_set_after_construction_is_checked_too(tmp_path: Path) -> None:
    """The engine fills a record in as the case runs: a misspelt name or a wrong kind fails at that line."""
    record = Record.from_json(fixture_records()[0])
    with pytest.raises(ValidationError, match="trhoughput_ips"):
        record.trhoughput_ips = 1.0
    with pytest.raises(ValidationError, match="runs"):
        record.runs = "many"
    with pytest.raises(ValidationError, match="startup_s"):
        record.worker.startup_s = 1.0
    record.latency_ms = {"p50": 2.5}  # a plain summary becomes the typed part
    assert record.p50_ms == 2.5 and record.latency_ms.p90 is None
    store = RunStore(tmp_path / "run")
    store.open({"env_id": "e"}, {})
    store.append(record)
    assert json.loads(store.results_path.read_text())["latency_ms"] == {"p50": 2.5}


def test_the_status_is_one_of_four() -> None:
    data = fixture_records()[0]
    data["status"] = "passsed"
    with pytest.raises(ValidationError, match="status"):
        Record.from_json(data)


def run_folder(tmp_path: Path, records: list[dict]) -> Path:
    """The fixture's run folder with these records in it."""
    folder = tmp_path / "run"
    folder.mkdir()
    for name in ("env.json", "scenario.json"):
        (folder / name).write_text((FIXTURE.parent / name).read_text())
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def test_a_run_folder_from_a_newer_version_reads_without_its_new_fields(tmp_path: Path) -> None:
    from results.runs import load_run

    records = fixture_records()
    records[0]["energy_j"] = 1.5  # a field this version does not know
    records[0]["worker"]["gpu_clock_mhz"] = 1400
    run = load_run(run_folder(tmp_path, records))
    first = run.records[0].to_json()
    assert "energy_j" not in first and "gpu_clock_mhz" not in first["worker"]
    assert run.records[1].to_json() == records[1]


def test_a_known_field_of_the_wrong_kind_names_the_folder_the_case_and_the_field(tmp_path: Path) -> None:
    from results.runs import RunFolderError, load_run

    records = fixture_records()
    records[2]["latency_ms"]["p50"] = "fast"
    folder = run_folder(tmp_path, records)
    expected = r"results.jsonl: case 'digits_cnn-fp32-b1-onnxruntime_cpu': latency_ms.p50"
    with pytest.raises(RunFolderError, match=expected):
        load_run(folder)
