"""The one engine behind both front doors (``accelbench run`` and ``pytest scenario.yaml``).

For each case: get its artefact from the broker (harness.artifacts: found in the cache or built in a separate
process, so TensorFlow never loads here) and its model's fp32 reference (harness.reference), spawn a fresh worker
with a timeout and a memory watch, turn the worker's raw numbers into a record, and append the record to the
run's store before the next case starts. The Engine composes those three; an A/B run opens the same kind of
folder (open_run_store) and uses a broker of its own without one.
"""

from __future__ import annotations

import json
import stat
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from harness.artifacts import ArtifactBroker
from harness.evaluation import is_reference, load_arrays, match_order
from harness.fidelity import (
    AccuracyBudget,
    budget_violations,
    default_min_cosine,
    guard_next_step,
    top1_accuracy,
    uninformative_reference,
)
from harness.launch import run_worker
from harness.protocol import MeasureJob, MeasureResult, ProfileRequest
from harness.reference import Reference, References
from model_zoo.artifacts import artifact_meta
from model_zoo.cache import file_fact
from model_zoo.catalog import CATALOG
from model_zoo.fidelity import judge, looks_like_class_scores, output_fidelity, worst
from results.profile import ProfileSummary, summarise
from results.record import Accuracy, Record, WorkerInfo
from results.stats import latency_summary_ms, median_ci_ms
from results.store import RunStore, safe_file_name
from scenario.cases import Case
from scenario.checks import folder_entries
from sysinfo.envinfo import collect_env


@dataclass
class OpenedStore:
    """A run folder opened for writing: its store, this machine's environment, and (resumed) the bytes of a
    partly written record cut off its end."""

    store: RunStore
    env: dict[str, Any]
    torn_bytes: int = 0


def open_run_store(run_dir: Path, scenario_info: dict[str, Any], resume: bool = False) -> OpenedStore:
    """A new run folder, or (resume) an interrupted one to add to, with its records read back first: a folder
    that cannot take the run raises RunFolderProblem (or another OSError) here, before anything runs. Shared by
    a run's Engine and an A/B run (harness.ab.AbRun), which write the same kind of folder."""
    store = RunStore(run_dir)
    env = collect_env()
    if not resume:
        store.open(env, scenario_info)
        return OpenedStore(store, env)
    # an A/B folder is resumed by `ab --resume`, a run's by `run --resume`: never one into the other
    torn_bytes = store.reopen(env, ab="ab" in scenario_info)
    try:
        store.records()  # what is there must read back before anything is added to it
    except BaseException:
        store.close()
        raise
    return OpenedStore(store, env, torn_bytes)


def file_sizes(path: str) -> tuple[int, int]:
    """Raw and gzip-compressed size of a model file or folder: pruning only shows in the compressed size. Files
    are compressed a chunk at a time (a model may be gigabytes), and only regular files are read (a FIFO put in
    a model's place after the scenario was checked would block the read forever). Each file's compressed size is
    kept across runs (model_zoo.cache.file_fact)."""
    target = Path(path)
    files = folder_entries(target) if target.is_dir() else [target]
    raw = compressed = 0
    for file in files:
        try:
            info = file.stat()
        except OSError:  # a dangling link: nothing to measure
            continue
        if not stat.S_ISREG(info.st_mode):
            continue
        raw += info.st_size
        compressed += file_fact(file, info, "gzip-6", partial(_gzip_size, file))
    return raw, compressed


def _gzip_size(file: Path) -> int:
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: the gzip container, as gzip.compress writes it
    size = 0
    with open(file, "rb") as handle:
        while chunk := handle.read(1 << 20):
            size += len(packer.compress(chunk))
    return size + len(packer.flush())


# What a record keeps of an artefact's meta.json: how it was made, not the whole build log.
ARTIFACT_FACTS = ("sparsity", "fine_tuned", "calibration_source", "calibration_samples", "build_seconds", "budget_s",
                  "fp32_casts_kept", "quantization")


def _artifact_facts(artifact: str | None) -> dict[str, Any] | None:
    """Sparsity reached, calibration used and the like, from the zoo's meta.json (None for a user file)."""
    if not artifact:
        return None

    meta = artifact_meta(artifact)
    return None if meta is None else {name: meta[name] for name in ARTIFACT_FACTS if name in meta}


class Engine:
    """Runs cases one at a time into one run folder."""

    def __init__(self, run_dir: Path, scenario_info: dict[str, Any], resume: bool = False) -> None:
        """A new run folder, or (resume) an interrupted one to complete; either way a folder that cannot take
        the run raises RunFolderProblem (or another OSError) here, before any case runs."""
        opened = open_run_store(run_dir, scenario_info, resume)
        self.store, self.env, self.torn_bytes = opened.store, opened.env, opened.torn_bytes
        self.broker = ArtifactBroker(self.store.logs_dir)
        self.references = References(self.broker, self.store.logs_dir, self.run_dir / "evaluation")
        self._sizes: dict[str, tuple[int, int]] = {}

    @property
    def run_dir(self) -> Path:
        return self.store.run_dir

    def close(self) -> None:
        """Let another process write the run folder (the lock goes with this process anyway)."""
        self.store.close()

    def recorded_case_ids(self) -> set[str]:
        """Cases this folder already has a complete record of, whatever their status."""
        return {record.case_id for record in self.store.records()}

    # -- artefacts (the broker's) --------------------------------------------------------------------------
    def prepare_artifacts(self, cases: list[Case], progress: Callable[[str], None] | None = None) -> None:
        """Look every needed artefact up in the cache; build the missing ones in one subprocess."""
        self.broker.prepare(cases, progress)

    def artifact_for(self, case: Case) -> tuple[str | None, str | None]:
        """The case's artefact path, or why there is none."""
        return self.broker.artifact_for(case)

    # -- cases -------------------------------------------------------------------------------------------
    def run_case(self, case: Case) -> Record:
        started = time.time()
        if case.skip_reason:
            record = self._record(case, "skipped", case.skip_reason)
        else:
            artifact, error = self.artifact_for(case)
            if error or artifact is None:
                record = self._record(case, "failed", error or "no artefact")
            else:
                record = self._measure(case, artifact)
        record.started_at, record.finished_at = started, time.time()
        if record.status == "failed":
            self.store.raise_if_disk_full(record.reason)
        self.store.append(record)
        return record

    def _measure(self, case: Case, artifact: str) -> Record:
        job = MeasureJob(case=case.to_dict(), artifact=artifact, hints=case.model.input_hints())
        if case.profile:
            job.profile = ProfileRequest(runs=int(case.profile["runs"]),
                                         trace=str(self.profile_path(case, ".trace.json")))
        reference = self.references.for_case(case)
        outputs_path = self.references.folder(case) / f"{safe_file_name(case.case_id)}.npz"
        if reference.ok:
            outputs_path.unlink(missing_ok=True)
            job.evaluation = reference.result.evaluation(reference.inputs, str(outputs_path))
        record = self._record(case, "failed", None, artifact=artifact)
        raw = self._worker_measure(case, job, record)
        if raw is None:
            return record
        if case.profile:
            # the pass runs one stream alone: a concurrent case's p50 (N streams competing) is no measure of it
            record.profile = self._profile(case, raw, record.p50_ms if case.mode == "latency" else None)
        error = raw.evaluation_error or (None if reference.ok else reference.reason)
        if not error:
            try:
                accuracy = self._accuracy(case, reference, load_arrays(outputs_path)[:2])
            except (ValueError, OSError, KeyError) as problem:  # outputs that cannot be set beside the reference's
                error = f"the outputs cannot be compared with the reference's: {problem}"
            else:
                record.accuracy = Accuracy.model_validate(accuracy)  # outside the try: a writer's bug is loud
        if error:
            record.accuracy = Accuracy(error=error)
        problems = self._validity_problems(case, raw)
        misses = record.accuracy.violations or []
        what = "accuracy budget not met" if case.accuracy_budget else "fidelity guard not met"
        if error:
            # outputs nobody could check are not a result to choose, fp32 included: a converter or a runtime's graph
            # rewrite breaks models at fp32 too, and a batch whose outputs cannot be cut into samples is no batch
            what, misses = "fidelity could not be checked", [error]
        if not raw.outputs_finite:
            record.status, record.reason = "failed", "the model produced NaN or infinite outputs"
        elif misses:
            guarded = case.accuracy_budget.get("min_cosine") is None  # the default guard set the bar
            step = "" if error or not guarded else "; " + guard_next_step(
                case.precision, case.compression, user_model=case.model.zoo is None)
            record.status, record.reason = "failed", f"{what}: " + "; ".join(misses) + step
        elif problems:
            record.status, record.reason = "invalid", "; ".join(problems)
        else:
            record.status, record.reason = "passed", None
        return record

    def _worker_measure(self, case: Case, job: MeasureJob, record: Record) -> MeasureResult | None:
        """The job run in a fresh worker: the worker's facts and the timings set on ``record``, and the raw result;
        None (``record.reason`` saying why) when the worker brought no measurement back."""
        outcome = run_worker(job, self.store.logs_dir, case.case_id, case.measure["timeout_s"],
                             case.measure.get("memory_limit_mb"))
        record.reason = outcome.reason
        worker = record.worker = WorkerInfo(wall_ms=outcome.wall_ms, exit_code=outcome.exit_code, log=str(outcome.log))
        report = outcome.report
        if report is None:
            return None
        worker.pid = report.pid
        worker.startup_ms = (report.entered_at_ns - outcome.spawned_at_ns) / 1e6
        if not isinstance(report.result, MeasureResult):
            record.reason = f"{report.reason} (log: {outcome.log})"
            return None
        raw = report.result
        worker.import_ms = (raw.imported_at_ns - report.entered_at_ns) / 1e6
        worker.os_threads = raw.os_threads
        worker.fixed_cost_ms = (raw.imported_at_ns - outcome.spawned_at_ns + raw.init_ns) / 1e6
        for name, value in self._metrics(case, raw).items():
            setattr(record, name, value)  # each checked against the record's field as it is set
        return raw

    # -- a user's callable (backends.python_callable) -----------------------------------------------------
    def run_callable(self, case: Case, in_process: bool = False) -> Record:
        """A user's callable measured as a case is (the same job, loops and record), without a model file: nothing
        to convert and no reference to check its outputs with. ``in_process``: in this process, through the
        worker's own code, for a callable no worker can import (its record says "not isolated")."""
        started = time.time()
        target = case.backend_options["target"]
        job = MeasureJob(case=case.to_dict(), artifact=target, hints={})
        record = self._record(case, "failed", None)
        raw = self._in_process_measure(case, job, record) if in_process else self._worker_measure(case, job, record)
        if raw is not None:
            problems = self._validity_problems(case, raw)
            record.status, record.reason = ("invalid", "; ".join(problems)) if problems else ("passed", None)
        record.started_at, record.finished_at = started, time.time()
        self.store.append(record)
        return record

    def _in_process_measure(self, case: Case, job: MeasureJob, record: Record) -> MeasureResult | None:
        from harness.worker import PhaseError, measure, phases

        record.worker = None  # written as null, as every measured record has the key: no worker ran it
        try:
            raw = measure(job, phases())
        except PhaseError as error:  # the user's factory or call raised: its message is the reason
            record.reason = str(error)
            return None
        for name, value in self._metrics(case, raw).items():
            setattr(record, name, value)
        return raw

    # -- profiles ----------------------------------------------------------------------------------------
    def profile_path(self, case: Case, suffix: str) -> Path:
        """Where a case's profile files go: the run folder's profiles/, one file per case and kind."""
        return self.run_dir / "profiles" / f"{safe_file_name(case.case_id)}{suffix}"

    def _profile(self, case: Case, raw: MeasureResult, timed_p50_ms: float | None) -> ProfileSummary:
        """The record's summary of the worker's profiling pass; every op goes to profiles/<case>.json."""
        if raw.profile is None:
            return ProfileSummary(error=raw.profile_error or "the worker returned no profile")
        summary, ops = summarise(raw.profile, timed_p50_ms)
        target = self.profile_path(case, ".json")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({"case_id": case.case_id, "route": summary.route, "note": summary.note,
                                      "run_ms": raw.profile["run_ms"], "timed_loop_ended_ns": raw.timed_loop_ended_ns,
                                      "profile_started_ns": raw.profile_started_ns, "ops": ops}, indent=1))
        summary.file = str(target)
        return summary

    # -- accuracy ----------------------------------------------------------------------------------------
    @staticmethod
    def _accuracy(case: Case, reference: Reference,
                  named_outputs: tuple[list[str], list[Any]]) -> dict[str, Any]:
        """Fidelity to the reference on the same inputs, task accuracy where there are labels, and the budget."""
        names, outputs = named_outputs
        ref_names, ref_outputs, _ = load_arrays(Path(reference.outputs))
        order = match_order(names, ref_names, "output")
        budget = AccuracyBudget.from_dict(case.accuracy_budget)
        reference_itself = is_reference(case)
        guard: dict[str, Any] = {"min_cosine": budget.min_cosine, "source": "scenario"}
        if budget.min_cosine is None and not reference_itself:
            guard = {"min_cosine": default_min_cosine(case.precision, case.compression), "source": "default"}
            budget = replace(budget, min_cosine=guard["min_cosine"])
        classes = class_outputs(case, ref_names, ref_outputs)
        per_output = []
        for name, out, j in zip(names, outputs, order, strict=True):
            stats = {"name": name, "reference_name": ref_names[j], "class_scores": classes[j],
                     **output_fidelity(out, ref_outputs[j], budget.atol, budget.rtol, classes=bool(classes[j]))}
            verdict = judge(stats, budget.min_cosine)
            per_output.append({**stats, "judged_by": verdict.metric, "score": verdict.score})
        verdict = worst(per_output, budget.min_cosine)
        agreements = [o["top1_agreement"] for o in per_output if o["top1_agreement"] is not None]
        accuracy: dict[str, Any] = {
            "reference": {"backend": reference.backend, "precision": reference.precision,
                          "artifact": reference.artifact, "top1": reference.top1,
                          "description": reference.description, "options": reference.options},
            "is_reference": reference_itself,
            "guard": None if reference_itself else guard,
            "samples": reference.result.samples,
            "outputs": per_output,
            "cosine_min": min(o["cosine"] for o in per_output) if per_output else None,
            "max_abs_err": max(o["max_abs_err"] for o in per_output) if per_output else None,
            "top1_agreement": agreements[0] if agreements else None,
            "fidelity": None if verdict is None else {"metric": verdict.metric, "value": verdict.value,
                                                      "score": verdict.score, "bar": verdict.bar,
                                                      "text": verdict.text(with_bar=verdict.bar is not None)},
            "top1": None,
            "top1_drop": None,
            "warning": uninformative_reference(ref_outputs, ref_names, [c is True for c in classes],
                                               near_uniform_exempt=untrained_zoo_model(case)),
        }
        if reference.labels is not None:
            accuracy["top1"] = top1_accuracy(outputs[0], reference.labels)
            accuracy["top1_drop"] = reference.top1 - accuracy["top1"]
        accuracy["budget"] = case.accuracy_budget
        accuracy["violations"] = budget_violations(accuracy, budget)
        return accuracy

    @staticmethod
    def _validity_problems(case: Case, raw: MeasureResult) -> list[str]:
        measure, runs, seconds = case.measure, len(raw.samples_ns), raw.wall_ns / 1e9
        problems = []
        if runs < measure["min_runs"]:
            problems.append(f"only {runs} runs in {seconds:.1f} s (min_runs {measure['min_runs']}, "
                            f"max_seconds {measure['max_seconds']:g})")
        if seconds < measure["min_seconds"]:
            problems.append(f"steady state lasted {seconds:.2f} s (min_seconds {measure['min_seconds']:g})")
        return problems

    def _metrics(self, case: Case, raw: MeasureResult) -> dict[str, Any]:
        samples = raw.samples_ns
        wall_s = raw.wall_ns / 1e9
        items = len(samples) * case.batch_size
        return {
            "latency_ms": latency_summary_ms(samples),
            "median_ci_ms": median_ci_ms(samples),
            "throughput_ips": items / wall_s if wall_s > 0 else None,
            "runs": len(samples),
            "measured_seconds": wall_s,
            "init_ms": raw.init_ns / 1e6,
            "first_inference_ms": raw.first_inference_ns / 1e6,
            "warmup": {"runs": raw.warmup_runs, "seconds": raw.warmup_seconds},
            "peak_rss_mb": raw.peak_rss_bytes / 2**20,
            "prepare_rss_delta_mb": (raw.rss_after_prepare - raw.rss_before_prepare) / 2**20,
            "cpu_percent": 100.0 * raw.cpu_ns / raw.wall_ns if raw.wall_ns else None,
            "gpu_telemetry": raw.gpu_telemetry,
            "samples_ns": samples,
            "per_stream_runs": raw.per_stream_runs or None,
            "inputs": raw.inputs,
            "outputs": raw.outputs,
            "backend_info": raw.backend_info,
        }

    def _record(self, case: Case, status: str, reason: str | None, artifact: str | None = None) -> Record:
        """The case's record before it is measured: what the case is, and what a skip or failure leaves. The
        measured fields are set (to None) here, so that every record on disk has the same keys."""
        size = gzip_size = None
        if artifact:
            if artifact not in self._sizes:
                self._sizes[artifact] = file_sizes(artifact)
            size, gzip_size = self._sizes[artifact]
        return Record(
            case_id=case.case_id, scenario=case.scenario, model=case.model_label,
            model_source={"zoo": case.model.zoo, "path": case.model.path,
                          "input_shape": list(case.model.input_shape) if case.model.input_shape else None},
            backend=case.backend, backend_label=case.backend_label, backend_options=case.backend_options,
            precision=case.precision, compression=case.compression, calibration=case.calibration or None,
            batch_size=case.batch_size, mode=case.mode, status=status, reason=reason, measure=case.measure,
            latency_ms=None, median_ci_ms=None, throughput_ips=None, init_ms=None, first_inference_ms=None,
            peak_rss_mb=None, cpu_percent=None, model_size_bytes=size, model_size_gzip_bytes=gzip_size,
            samples_ns=[], accuracy=Accuracy(), backend_info={}, artifact=artifact,
            artifact_meta=_artifact_facts(artifact), baseline=case.baseline, env_id=self.env["env_id"],
        )

    def finish(self) -> list[Record]:
        """Write benchmark.json; return every record of the run. Pages are the front doors' business
        (reporting.html.write_report_safely), so the engine knows nothing of them."""
        self.store.write_benchmark_json(self.env)  # a full disk raises DiskFull from the store
        return self.store.records()


def class_outputs(case: Case, names: list[str], reference_outputs: list[Any]) -> list[bool | None]:
    """Per reference output, whether it holds class scores: as the scenario declares it (outputs: {name: {classes:
    true}}), else the first output of a zoo model with a labelled dataset, else inferred from the reference's
    values (a probability per class: model_zoo.fidelity.looks_like_class_scores). Top-1 agreement and the
    near-uniform check apply to these only: the arg-max of an embedding or a landmark means nothing."""
    declared = case.model.declared_classes()
    labelled = case.model.zoo is not None and CATALOG[case.model.zoo].dataset is not None
    return [declared[name] if name in declared else True if labelled and index == 0 else looks_like_class_scores(out)
            for index, (name, out) in enumerate(zip(names, reference_outputs, strict=True))]


def untrained_zoo_model(case: Case) -> bool:
    """The zoo's models without a dataset are untrained (weights=None): near-uniform class scores by construction."""
    return case.model.zoo is not None and CATALOG[case.model.zoo].dataset is None
