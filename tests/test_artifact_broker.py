"""The artefact broker (harness.artifacts) and the reference run's key (harness.reference), without a zoo build:
a user's ONNX file is used in place, and a missing one fails in the build subprocess."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from harness.artifacts import ArtifactBroker
from harness.evaluation import reference_case
from harness.reference import ReferenceKey
from scenario.cases import Case, ModelSpec


def _identity_onnx(path: Path) -> Path:
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def _case(model: Path, case_id: str = "identity-ort", **changes: object) -> Case:
    case = Case(case_id=case_id, scenario="broker", model=ModelSpec(path=str(model)), model_label=model.stem,
                backend="onnxruntime_cpu", backend_label="onnxruntime_cpu", backend_options={"threads": 1},
                precision="fp32", batch_size=1, mode="latency", measure={"seed": 0, "timeout_s": 60})
    return replace(case, **changes)


def test_cases_that_need_one_file_share_one_answer_and_nothing_is_built(tmp_path: Path) -> None:
    """Two cases of a user's .onnx on ONNX Runtime (another batch size, another id) and their fp32 reference all
    need the file itself: one answer, found in place, and no build subprocess (no artifacts.log)."""
    model = _identity_onnx(tmp_path / "identity.onnx")
    logs = tmp_path / "logs"
    logs.mkdir()
    broker = ArtifactBroker(logs)
    cases = [_case(model), _case(model, "identity-ort-b4", batch_size=4)]
    broker.prepare(cases)
    assert broker.found == {cases[0].artifact_request(): str(model)} and broker.errors == {}
    assert [broker.artifact_for(case) for case in cases] == [(str(model), None)] * 2
    assert broker.artifact_for(reference_case(cases[0])) == (str(model), None)
    assert not broker.log_path.exists()


def test_a_request_that_failed_is_answered_from_memory_not_built_again(tmp_path: Path) -> None:
    """A missing model file fails in the build subprocess, with the file named; asked again (by another case of
    the same file), the broker answers from what it kept: here its logs folder has become a file, so a second
    build could not even open its log."""
    logs = tmp_path / "logs"
    logs.mkdir()
    broker = ArtifactBroker(logs)
    gone = tmp_path / "gone.onnx"
    artifact, error = broker.artifact_for(_case(gone))
    assert artifact is None and error is not None and "gone.onnx" in error
    for file in logs.iterdir():
        file.unlink()
    logs.rmdir()
    logs.write_text("")
    assert broker.artifact_for(_case(gone, "gone-b2", batch_size=2)) == (None, error)


def test_the_reference_key_is_what_the_reference_run_is_made_of(tmp_path: Path) -> None:
    """An int8 case and an fp32 case of one model share one reference (the calibration, budget and baseline the
    reference case inherits do not make it another run); another seed, another set of limits or another model
    does not. Options compare as values: the order of their keys does not matter."""
    model = tmp_path / "identity.onnx"
    fp32 = _case(model)
    key = ReferenceKey.of(reference_case(fp32))
    same = [replace(fp32, precision="int8", calibration={"samples": 50, "source": "random"}),
            replace(fp32, accuracy_budget={"min_cosine": 0.9}, baseline={"backend": "x", "precision": "fp32"},
                    race={"threshold": 0.05}, scenario="another", backend_options={"threads": 4})]
    assert all(ReferenceKey.of(reference_case(case)) == key for case in same)
    assert len({key, *(ReferenceKey.of(reference_case(case)) for case in same)}) == 1
    others = [replace(fp32, measure={**fp32.measure, "seed": 1}),
              replace(fp32, measure={**fp32.measure, "timeout_s": 5}),
              replace(fp32, model=ModelSpec(path=str(tmp_path / "other.onnx")), model_label="other")]
    assert len({key, *(ReferenceKey.of(reference_case(case)) for case in others)}) == 1 + len(others)
    nested = {"threads": None, "delegate": {"b": [1, 2], "a": 1}}
    reordered = {"delegate": {"a": 1, "b": [1, 2]}, "threads": None}
    assert (ReferenceKey.of(replace(fp32, backend_options=nested))
            == ReferenceKey.of(replace(fp32, backend_options=reordered)))
