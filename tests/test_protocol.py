"""The worker's typed messages (harness.protocol) and the serve task's mode: an A/B side of a concurrent case times
every stream at once, as `accelbench run` does, where it used to time one stream only."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from harness.protocol import (
    ErrorReply,
    Evaluation,
    MeasureJob,
    MeasureResult,
    OverheadJob,
    OverheadResult,
    ProtocolError,
    Quit,
    ReadyReply,
    ReferenceJob,
    ReferenceResult,
    Renew,
    RunSlice,
    RunUntil,
    ServeJob,
    ServeResult,
    SideEnvironment,
    SliceReply,
    UntilReply,
    WorkerReport,
    command_from_wire,
    job_from_wire,
    reply_from_wire,
)

CASE = {"case_id": "m-fp32-b1-onnxruntime_cpu", "scenario": "s", "model": {"path": "m.onnx"}, "mode": "latency"}
EVALUATION = Evaluation(inputs="/e/inputs.npz", outputs="/e/case.npz", reference_batch=1, output_names=["y", "z"],
                        unit_shapes=[[10], [2, 3]])
SHAPES = {"inputs": [{"name": "x", "shape": [1, 4], "dtype": "float32"}],
          "outputs": [{"name": "y", "shape": [1, 4], "dtype": "float32"}]}
MEASURED = MeasureResult(
    imported_at_ns=5, init_ns=6, first_inference_ns=7, warmup_runs=3, warmup_seconds=0.5, samples_ns=[10, 11],
    wall_ns=40, cpu_ns=30, per_stream_runs=[1, 1], gpu_telemetry=None, rss_before_prepare=1, rss_after_prepare=2,
    peak_rss_bytes=3, os_threads=4, evaluation_seconds=None, evaluation_error="evaluation failed: x",
    outputs_finite=True, backend_info={"provider": "cpu"}, **SHAPES)
READY = ReadyReply(pid=9, init_ns=1, outputs_finite=True, backend_info={"threads": 1}, inference_s=1e-5,
                   mode="concurrent", streams=3, **SHAPES)

MESSAGES = [
    EVALUATION,
    MeasureJob(case=CASE, artifact="/a/m.onnx", hints={"input_shape": [4]}),
    MeasureJob(case=CASE, artifact="/a/m.onnx", evaluation=EVALUATION),
    ReferenceJob(case=CASE, artifact="/a/m.onnx", inputs="/e/inputs.npz", outputs="/e/reference.npz"),
    OverheadJob(case=CASE, artifact="/a/m.onnx", rounds=2, runs_per_round=200),
    ServeJob(case=CASE, artifact="/a/m.onnx", warmup_seconds=0.3),
    ServeJob(case=CASE, artifact="/a/m.onnx"),
    MEASURED,
    ReferenceResult(samples=16, labelled=False, backend_info={}, batch=4, output_names=["y"], unit_shapes=[[10]]),
    OverheadResult(harness_samples_ns=[1, 2], bare_samples_ns=[1, 1], backend_info={}),
    ServeResult(commands=12),
    RunSlice(run=0.05), RunUntil(from_ns=1, until_ns=2), Renew(), Quit(),
    SideEnvironment(python="/usr/bin/python3", python_version="3.11.2", libraries={"onnxruntime": "1.32.0"}),
    READY,
    dataclasses.replace(READY, environment=SideEnvironment(python="p", python_version="3.11", libraries={})),
    SliceReply(samples_ns=[1, 2, 3], wall_ns=9), SliceReply(samples_ns=[1, 2, 3], wall_ns=9, per_stream_runs=[2, 1]),
    UntilReply(samples_ns=[1], ends_ns=[5]),
    ErrorReply(error="unknown command"),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_reads_back_as_it_was_written(message) -> None:
    assert type(message).from_wire(message.to_wire()) == message


@pytest.mark.parametrize("job", [m for m in MESSAGES if hasattr(m, "TASK")], ids=lambda m: type(m).__name__)
def test_a_job_file_is_read_as_the_job_its_task_names(job) -> None:
    assert job_from_wire({**job.to_wire(), "spawned_at_ns": 123}) == job  # the launcher's stamp is not the job's


@pytest.mark.parametrize("message", [m for m in MESSAGES if isinstance(m, RunSlice | RunUntil | Renew | Quit)],
                         ids=lambda m: type(m).__name__)
def test_a_command_line_is_read_as_its_command(message) -> None:
    assert command_from_wire(message.to_wire()) == message


@pytest.mark.parametrize("message", [m for m in MESSAGES if isinstance(m, ReadyReply | SliceReply | UntilReply |
                                                                       ErrorReply)], ids=lambda m: type(m).__name__)
def test_a_reply_line_is_read_as_its_reply(message) -> None:
    assert reply_from_wire(message.to_wire()) == message


@pytest.mark.parametrize("result", [m for m in MESSAGES if isinstance(m, MeasureResult | ReferenceResult |
                                                                      OverheadResult | ServeResult)],
                         ids=lambda m: type(m).__name__)
def test_a_result_file_reads_back_ok_or_failed(result) -> None:
    task = {MeasureResult: "measure", ReferenceResult: "reference", OverheadResult: "overhead",
            ServeResult: "serve"}[type(result)]
    ok = WorkerReport(pid=1, entered_at_ns=2, result=result)
    assert ok.to_wire()["status"] == "ok" and WorkerReport.from_wire(ok.to_wire(), task) == ok
    failed = WorkerReport(pid=1, entered_at_ns=2, reason="load model failed: m.onnx: bad", phase="load model")
    assert failed.to_wire()["status"] == "failed" and WorkerReport.from_wire(failed.to_wire(), task) == failed


def test_the_wire_keys_are_the_ones_the_wire_always_had() -> None:
    """The format stays: the coordinator (harness.sitting) and older run folders' job files read these keys."""
    assert set(MeasureJob(case=CASE, artifact="a").to_wire()) == {"task", "case", "artifact", "hints"}
    assert set(MeasureJob(case=CASE, artifact="a", evaluation=EVALUATION).to_wire()["evaluation"]) == {
        "inputs", "outputs", "reference_batch", "output_names", "unit_shapes"}
    assert set(ServeJob(case=CASE, artifact="a", warmup_seconds=0.3).to_wire()) == {
        "task", "case", "artifact", "hints", "warmup_seconds"}
    assert ServeJob(case=CASE, artifact="a", warmup_runs=2).to_wire()["warmup_runs"] == 2
    assert READY.to_wire()["ready"] is True and "environment" not in READY.to_wire()
    assert set(SliceReply(samples_ns=[1], wall_ns=1).to_wire()) == {"samples_ns", "wall_ns"}
    assert set(WorkerReport(pid=1, entered_at_ns=2, result=ServeResult(commands=0)).to_wire()) == {
        "pid", "entered_at_ns", "commands", "status"}


def test_the_unit_shapes_of_a_reference_reach_the_cases_evaluation_unchanged() -> None:
    reference = ReferenceResult(samples=16, labelled=True, backend_info={}, batch=4, output_names=["y"],
                                unit_shapes=[[10], [2, 3]])
    evaluation = reference.evaluation("/e/inputs.npz", "/e/case.npz")
    assert evaluation == Evaluation(inputs="/e/inputs.npz", outputs="/e/case.npz", reference_batch=4,
                                    output_names=["y"], unit_shapes=[[10], [2, 3]])


@pytest.mark.parametrize(("read", "wire", "message"), [
    (SliceReply.from_wire, {"samples_ns": [1]}, "a slice reply has no 'wall_ns' key"),
    (reply_from_wire, {"ready": True, "pid": 1}, "a ready reply has no 'init_ns' key"),
    (MeasureJob.from_wire, {"task": "measure", "artifact": "a"}, "a measure job has no 'case' key"),
    (job_from_wire, {"task": "measure", "case": {}, "artifact": "a", "evaluation": {"inputs": "i"}},
     "a measure job's 'evaluation' has no 'outputs' key"),
    (job_from_wire, {"task": "train", "case": {}}, "a worker job's task is one of measure, reference, overhead, "
                                                   "serve, not 'train'"),
    (lambda data: WorkerReport.from_wire(data, "reference"), {"pid": 1, "entered_at_ns": 2, "status": "ok"},
     "a reference worker's result file (a reference result) has no 'samples' key"),
    (lambda data: WorkerReport.from_wire(data, "measure"), {"pid": 1, "status": "ok"},
     "a measure worker's result file has no 'entered_at_ns' key"),
    (command_from_wire, {"walk": 1}, "a serve command is one of run, until_ns, renew, quit; none is in ['walk']"),
    (SliceReply.from_wire, [1, 2], "a slice reply is not a JSON object but list"),
])
def test_a_message_without_a_key_is_one_error_naming_the_key(read, wire, message) -> None:
    with pytest.raises(ProtocolError) as error:
        read(wire)
    assert str(error.value) == message


# -- the serve task honours the case's mode -----------------------------------------------------------------------


def _relu_onnx(path: Path) -> Path:
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_a_serve_worker_times_every_stream_of_a_concurrent_case(tmp_path: Path) -> None:
    """The A/B side of a concurrent case used to load one session and time it alone: a concurrent case compared
    as a single stream. Now its ready reply says the mode and the streams, and every slice runs all of them."""
    from harness.sitting.channel import SideFailure, SideWorker
    from scenario.cases import Case, ModelSpec
    from scenario.schema import MeasureSpec

    model = _relu_onnx(tmp_path / "relu.onnx")
    case = Case(case_id="relu-fp32-b1-onnxruntime_cpu", scenario="serve", model=ModelSpec(path=str(model)),
                model_label="relu", backend="onnxruntime_cpu", backend_label="onnxruntime_cpu",
                backend_options={"threads": 1}, precision="fp32", batch_size=1, mode="concurrent",
                measure=MeasureSpec(warmup_runs=2, warmup_seconds=0.0, streams=3).model_dump())
    job = ServeJob(case=case.to_dict(), artifact=str(model), hints=case.model.input_hints(), warmup_seconds=0.0)
    worker = SideWorker("base", sys.executable, job, tmp_path, "concurrent")
    try:
        ready = worker.receive(timeout_s=120)
        assert isinstance(ready, ReadyReply) and (ready.mode, ready.streams) == ("concurrent", 3)
        assert ready.backend_info["streams"] == ready.backend_info["sessions"] == 3
        assert ready.environment is not None and ready.environment.python == sys.executable
        for _ in range(5):  # a stream's thread may be scheduled late on a loaded machine: a few slices, not one
            reply = worker.ask(RunSlice(run=0.2), timeout_s=60)
            assert isinstance(reply, SliceReply) and reply.per_stream_runs is not None
            assert len(reply.per_stream_runs) == 3 and sum(reply.per_stream_runs) == len(reply.samples_ns)
            if all(reply.per_stream_runs):
                break
        assert all(reply.per_stream_runs), reply.per_stream_runs
        renewed = worker.ask(Renew(), timeout_s=120)
        assert isinstance(renewed, ReadyReply) and renewed.streams == 3 and renewed.environment is None
        with pytest.raises(SideFailure, match=r"worker refused a command: a duet times one stream a side and this "
                                              r"case is concurrent \(3 streams\): compare it with method lockstep"):
            worker.ask(RunUntil(from_ns=0, until_ns=1), timeout_s=60)
    finally:
        worker.close()


def test_a_side_warms_up_for_the_runs_its_job_says_not_the_cases(tmp_path: Path, test_backends) -> None:
    """A race warms each side up for its own few runs (RACE_DEFAULTS' warmup_runs), not the case's: the session
    of a fault backend that crashes on its fourth call is ready after the first inference and two warm-up runs, and
    crashes at its first slice; the same case warmed for its own five runs crashes before it is ready."""
    from harness.sitting.channel import SideFailure, SideWorker
    from scenario.cases import Case, ModelSpec
    from scenario.schema import MeasureSpec

    model = _relu_onnx(tmp_path / "relu.onnx")
    case = Case(case_id="relu-fp32-b1-fault_ort", scenario="serve", model=ModelSpec(path=str(model)),
                model_label="relu", backend="fault_ort", backend_label="fault_ort",
                backend_options={"threads": 1, "fault": "segv", "fault_at": "run", "fault_after": 3},
                precision="fp32", batch_size=1, mode="latency",
                measure=MeasureSpec(warmup_runs=5, warmup_seconds=0.0).model_dump())

    def side(name: str, warmup_runs: int | None) -> SideWorker:
        job = ServeJob(case=case.to_dict(), artifact=str(model), hints=case.model.input_hints(),
                       warmup_seconds=0.0, warmup_runs=warmup_runs)
        return SideWorker(name, sys.executable, job, tmp_path, name)

    worker = side("race", 2)
    try:
        assert isinstance(worker.receive(timeout_s=120), ReadyReply)
        with pytest.raises(SideFailure, match="SIGSEGV"):
            worker.ask(RunSlice(run=0.01), timeout_s=60)
    finally:
        worker.close()
    worker = side("own", None)
    try:
        with pytest.raises(SideFailure, match="SIGSEGV"):
            worker.receive(timeout_s=120)
    finally:
        worker.close()


def test_an_ab_record_says_its_mode_and_one_written_before_it_did_reads_as_latency() -> None:
    from results.ab_record import AbRecord, SideInfo

    record = AbRecord(case_id="c", scenario="s", model="m", backend="onnxruntime_cpu", backend_label="ort",
                      precision="fp32", batch_size=1, mode="concurrent", method="lockstep", status="failed",
                      base=SideInfo(name="base", spec={}, description="base"),
                      new=SideInfo(name="new", spec={}, description="new"),
                      threshold=0.05, min_effect=0.025, alpha=0.01, confidence=0.95)
    assert AbRecord.read(record.to_json(), "ab.jsonl:1").mode == "concurrent"
    older = {key: value for key, value in record.to_json().items() if key != "mode"}
    assert AbRecord.read(older, "ab.jsonl:1").mode == "latency"
