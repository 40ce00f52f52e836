"""The one engine behind both front doors (``accelbench run`` and ``pytest scenario.yaml``).

For each case: find or build its artefact (in a separate process, so TensorFlow never loads here), spawn a
fresh worker with a timeout and a memory watch, turn the worker's raw numbers into a record, and append the
record to the run's store before the next case starts.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.evaluation import describe_reference, is_reference, load_arrays, match_order, reference_case
from harness.fidelity import (
    AccuracyBudget,
    budget_violations,
    default_min_cosine,
    guard_next_step,
    output_fidelity,
    top1_accuracy,
    uninformative_reference,
)
from harness.launch import WorkerOutcome, run_worker, tail_of_log, worker_env
from harness.protocol import MeasureJob, MeasureResult, ReferenceJob, ReferenceResult
from model_zoo import targets
from model_zoo.artifacts import artifact_meta, lookup, request_to_json
from results.record import Accuracy, Record, WorkerInfo
from results.stats import latency_summary_ms, median_ci_ms
from results.store import RunStore, safe_file_name
from scenario.cases import Case
from scenario.checks import folder_entries
from scenario.skips import skip_reason
from sysinfo.envinfo import collect_env
from sysinfo.lifeline import child_env

# The build subprocess's limit: a base, plus the converters' own search budgets for every artefact asked for at
# once (fp16's and int8's node searches may each take minutes on a large model), so that one slow conversion
# in a batch of twenty does not time out the other nineteen.
BUILD_TIMEOUT_S = float(os.environ.get("ACCELBENCH_BUILD_TIMEOUT", 3600))
BUILD_SEARCH_ALLOWANCE_S = max(targets.FP16_SEARCH_SECONDS, targets.INT8_SEARCH_SECONDS) + 60


def _reference_result(outcome: WorkerOutcome) -> ReferenceResult | None:
    """The reference worker's result, or None when it failed (the reason: _failure_reason)."""
    result = outcome.report.result if outcome.report else None
    return result if isinstance(result, ReferenceResult) else None


def _failure_reason(outcome: WorkerOutcome) -> str | None:
    """Why a worker gave no result: its own one-line reason, or the parent's diagnosis of how it ended."""
    return (outcome.report.reason if outcome.report else None) or outcome.reason


def file_sizes(path: str) -> tuple[int, int]:
    """Raw and gzip-compressed size of a model file or folder: pruning only shows in the compressed size. Files
    are compressed a chunk at a time (a model may be gigabytes), and only regular files are read (a FIFO put in
    a model's place after the scenario was checked would block the read forever)."""
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
        packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: the gzip container, as gzip.compress writes it
        with open(file, "rb") as handle:
            while chunk := handle.read(1 << 20):
                compressed += len(packer.compress(chunk))
        compressed += len(packer.flush())
    return raw, compressed


# What a record keeps of an artefact's meta.json: how it was made, not the whole build log.
ARTIFACT_FACTS = ("sparsity", "fine_tuned", "calibration_source", "calibration_samples", "build_seconds",
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
        self.store = RunStore(run_dir)
        self.env = collect_env()
        if resume:
            # an A/B folder is resumed by `ab --resume`, a run's by `run --resume`: never one into the other
            self.torn_bytes = self.store.reopen(self.env, ab="ab" in scenario_info)
            try:
                self.store.records()  # what is there must read back before anything is added to it
            except BaseException:
                self.store.close()
                raise
        else:
            self.torn_bytes = 0
            self.store.open(self.env, scenario_info)
        self.artifacts: dict[str, str] = {}
        self.artifact_errors: dict[str, str] = {}
        self._sizes: dict[str, tuple[int, int]] = {}
        self._references: dict[str, dict[str, Any]] = {}

    @property
    def run_dir(self) -> Path:
        return self.store.run_dir

    def close(self) -> None:
        """Let another process write the run folder (the lock goes with this process anyway)."""
        self.store.close()

    def recorded_case_ids(self) -> set[str]:
        """Cases this folder already has a complete record of, whatever their status."""
        return {record.case_id for record in self.store.records()}

    # -- artefacts ---------------------------------------------------------------------------------------
    def prepare_artifacts(self, cases: list[Case], progress: Any = None) -> None:
        """Look every needed artefact up in the cache; build the missing ones in one subprocess."""
        missing: dict[str, Any] = {}
        wanted = [c for c in cases if not c.skip_reason]
        references = {json.dumps(reference_case(c).to_dict(), sort_keys=True, default=str): reference_case(c)
                      for c in wanted}
        wanted += [r for r in references.values() if skip_reason(r) is None]  # built in the same subprocess
        for case in wanted:
            request = case.artifact_request()
            key = json.dumps(request_to_json(request), sort_keys=True)
            if key in self.artifacts or key in self.artifact_errors or key in missing:
                continue
            found = lookup(request)
            if found is not None:
                self.artifacts[key] = str(found)
            else:
                missing[key] = request
        if not missing:
            return
        if progress:
            progress(f"building {len(missing)} model artefact(s) (cached for later runs)")
        payload = json.dumps([request_to_json(r) for r in missing.values()])
        log_path = self.store.logs_dir / "artifacts.log"
        with open(log_path, "ab") as log:
            try:
                done = subprocess.run([sys.executable, "-m", "model_zoo.build"], input=payload.encode(),
                                      stdout=subprocess.PIPE, stderr=log, env=child_env(worker_env()),
                                      timeout=BUILD_TIMEOUT_S + BUILD_SEARCH_ALLOWANCE_S * len(missing))
                lines = done.stdout.decode(errors="replace").strip().splitlines()
                answers = json.loads(lines[-1]) if lines else None
            except subprocess.TimeoutExpired:
                answers, done = None, None
            except json.JSONDecodeError:
                answers = None
        if not isinstance(answers, list) or len(answers) != len(missing):
            why = "timed out" if done is None else f"exited with status {done.returncode}"
            for key in missing:
                self.artifact_errors[key] = f"building the model artefact {why}: {tail_of_log(log_path)}"
            return
        for key, answer in zip(missing, answers, strict=True):
            if "path" in answer:
                self.artifacts[key] = answer["path"]
            else:
                self.artifact_errors[key] = answer.get("error", "unknown error while building the artefact")

    def artifact_for(self, case: Case) -> tuple[str | None, str | None]:
        key = json.dumps(request_to_json(case.artifact_request()), sort_keys=True)
        if key not in self.artifacts and key not in self.artifact_errors:
            self.prepare_artifacts([case])
        return self.artifacts.get(key), self.artifact_errors.get(key)

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
        reference = self.reference_for(case)
        evaluation_dir = self.run_dir / "evaluation" / safe_file_name(case.model_label)
        outputs_path = evaluation_dir / f"{safe_file_name(case.case_id)}.npz"
        if reference["status"] == "ok":
            outputs_path.unlink(missing_ok=True)
            job.evaluation = reference["result"].evaluation(reference["inputs"], str(outputs_path))
        outcome = run_worker(job, self.store.logs_dir, case.case_id, case.measure["timeout_s"],
                             case.measure.get("memory_limit_mb"))
        record = self._record(case, "failed", outcome.reason, artifact=artifact)
        worker = record.worker = WorkerInfo(wall_ms=outcome.wall_ms, exit_code=outcome.exit_code, log=str(outcome.log))
        report = outcome.report
        if report is None:
            return record
        worker.pid = report.pid
        worker.startup_ms = (report.entered_at_ns - outcome.spawned_at_ns) / 1e6
        if not isinstance(report.result, MeasureResult):
            record.reason = f"{report.reason} (log: {outcome.log})"
            return record
        raw = report.result
        worker.import_ms = (raw.imported_at_ns - report.entered_at_ns) / 1e6
        worker.os_threads = raw.os_threads
        worker.fixed_cost_ms = (raw.imported_at_ns - outcome.spawned_at_ns + raw.init_ns) / 1e6
        for name, value in self._metrics(case, raw).items():
            setattr(record, name, value)  # each checked against the record's field as it is set
        error = raw.evaluation_error or (reference["reason"] if reference["status"] != "ok" else None)
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
        if error and (case.accuracy_budget or case.precision != "fp32" or case.compression != "none"):
            # a converted or pruned model whose outputs nobody could check is not a result to choose
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

    # -- accuracy ----------------------------------------------------------------------------------------
    def reference_for(self, case: Case) -> dict[str, Any]:
        """The model's evaluation inputs and reference outputs, made once per model and run by a worker.

        ``{"status": "ok", "inputs": path, "outputs": path, "result": ReferenceResult, ...}`` or
        ``{"status": "failed", "reason": ...}``.
        """
        ref_case = reference_case(case)
        key = json.dumps(ref_case.to_dict(), sort_keys=True, default=str)
        if key in self._references:
            return self._references[key]
        folder = self.run_dir / "evaluation" / safe_file_name(case.model_label)
        reference: dict[str, Any] = {"status": "failed", "backend": ref_case.backend, "precision": "fp32"}
        why_not = skip_reason(ref_case)
        artifact, error = (None, None) if why_not else self.artifact_for(ref_case)
        if why_not or error or artifact is None:
            reference["reason"] = f"no fp32 reference on {ref_case.backend}: {why_not or error or 'no artefact'}"
        else:
            job = ReferenceJob(case=ref_case.to_dict(), artifact=artifact, hints=case.model.input_hints(),
                               inputs=str(folder / "inputs.npz"), outputs=str(folder / "reference.npz"))
            outcome = run_worker(job, self.store.logs_dir, ref_case.case_id, case.measure["timeout_s"],
                                 case.measure.get("memory_limit_mb"))
            reference.update(artifact=artifact, description=describe_reference(case),
                             options={k: v for k, v in ref_case.backend_options.items() if v is not None})
            plain = {"threads": None}
            result = _reference_result(outcome)
            if result is None and ref_case.backend_options != plain:
                # The independent settings cannot run this model (LiteRT's builtin resolver lacks a custom op
                # that the default one registers): the backend's defaults are the reference then, and say so.
                first = _failure_reason(outcome)
                job = replace(job, case=replace(ref_case, backend_options=plain).to_dict())
                outcome = run_worker(job, self.store.logs_dir, f"{ref_case.case_id}-default", case.measure["timeout_s"],
                                     case.measure.get("memory_limit_mb"))
                result = _reference_result(outcome)
                reference.update(options={}, description=f"{ref_case.backend} fp32 (its default settings: the "
                                 f"independent reference could not run the model: {first})")
            if result is None:
                reason = _failure_reason(outcome)
                reference["reason"] = f"the fp32 reference on {ref_case.backend} failed: {reason}"
            else:
                reference.update(status="ok", inputs=job.inputs, outputs=job.outputs, result=result)
                _, ref_outputs, _ = load_arrays(Path(job.outputs))
                labels = load_arrays(Path(job.inputs))[2].get("labels")
                reference["labels"] = labels
                reference["top1"] = None if labels is None else top1_accuracy(ref_outputs[0], labels)
        self._references[key] = reference
        return reference

    @staticmethod
    def _accuracy(case: Case, reference: dict[str, Any],
                  named_outputs: tuple[list[str], list[Any]]) -> dict[str, Any]:
        """Fidelity to the reference on the same inputs, task accuracy where there are labels, and the budget."""
        names, outputs = named_outputs
        ref_names, ref_outputs, _ = load_arrays(Path(reference["outputs"]))
        order = match_order(names, ref_names, "output")
        budget = AccuracyBudget.from_dict(case.accuracy_budget)
        reference_itself = is_reference(case)
        guard: dict[str, Any] = {"min_cosine": budget.min_cosine, "source": "scenario"}
        if budget.min_cosine is None and not reference_itself:
            guard = {"min_cosine": default_min_cosine(case.precision, case.compression), "source": "default"}
            budget = replace(budget, min_cosine=guard["min_cosine"])
        per_output = [{"name": name, "reference_name": ref_names[j],
                       **output_fidelity(out, ref_outputs[j], budget.atol, budget.rtol)}
                      for name, out, j in zip(names, outputs, order, strict=True)]
        accuracy: dict[str, Any] = {
            "reference": {"backend": reference["backend"], "precision": "fp32", "artifact": reference["artifact"],
                          "top1": reference["top1"], "description": reference["description"],
                          "options": reference["options"]},
            "is_reference": reference_itself,
            "guard": None if reference_itself else guard,
            "samples": reference["result"].samples,
            "outputs": per_output,
            "cosine_min": min(o["cosine"] for o in per_output) if per_output else None,
            "max_abs_err": max(o["max_abs_err"] for o in per_output) if per_output else None,
            "top1_agreement": per_output[0]["top1_agreement"] if per_output else None,
            "top1": None,
            "top1_drop": None,
            "warning": uninformative_reference(ref_outputs),
        }
        if reference.get("labels") is not None:
            accuracy["top1"] = top1_accuracy(outputs[0], reference["labels"])
            accuracy["top1_drop"] = reference["top1"] - accuracy["top1"]
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
