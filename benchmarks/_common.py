"""Helpers shared by the benchmark scripts: build real cases and run them through the real engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.engine import Engine
from results.record import Record
from results.store import new_run_dir
from scenario.cases import Case, ModelSpec
from scenario.load import MeasureSpec
from scenario.skips import skip_reason

# the shape a benchmark gives a zoo model whose default is not the one its figures are quoted at
QUOTED_SHAPES: dict[str, tuple[int, ...]] = {"mobilenet_v2": (224, 224, 3)}


def make_case(model: str, backend: str, batch_size: int = 1, threads: int | None = 2,
              input_shape: tuple[int, ...] | None = None, **measure: Any) -> Case:
    case = Case(case_id=f"{model}-fp32-b{batch_size}-{backend}", scenario="benchmark",
                model=ModelSpec(zoo=model, input_shape=input_shape), model_label=model, backend=backend,
                backend_label=backend, backend_options={"threads": threads}, precision="fp32",
                batch_size=batch_size, mode="latency", measure=MeasureSpec(**measure).model_dump())
    case.skip_reason = skip_reason(case)
    if case.skip_reason:
        raise SystemExit(f"{case.case_id} cannot run here: {case.skip_reason}")
    return case


def make_engine(name: str) -> Engine:
    return Engine(new_run_dir(Path("reports"), name), {"scenarios": [name], "front_door": "benchmark"})


def run_passed(engine: Engine, case: Case) -> Record:
    record = engine.run_case(case)
    if record.status != "passed":
        raise SystemExit(f"{case.case_id} {record.status}: {record.reason}")
    return record
