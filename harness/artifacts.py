"""The artefact broker: each case's model file, found in the zoo's content-addressed cache or built.

Everything that runs a case needs its artefact first: a run's engine, an A/B run's sides, a race, the overhead
check. They share this one broker rather than an engine, so that an A/B run or the overhead check need not open a
run of cases to get at it. The missing artefacts are built together in one subprocess (TensorFlow never loads in
this process, and twenty conversions pay one interpreter's start-up); its log goes to the run folder's
logs/artifacts.log. Answers are kept by the ArtifactRequest itself (a frozen dataclass: equal requests are one
artefact), so two cases that need the same file share one look-up and one build.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from harness.evaluation import reference_case
from harness.launch import tail_of_log, worker_env
from model_zoo import targets
from model_zoo.artifacts import lookup, request_to_json
from model_zoo.progress import PROGRESS_FD_ENV, format_event
from model_zoo.requests import ArtifactRequest
from scenario.cases import Case
from scenario.skips import skip_reason
from sysinfo.lifeline import child_env

# The build subprocess's limit: a base, plus the converters' own search budgets for every artefact asked for at
# once (fp16's and int8's node searches may each take minutes on a large model), so that one slow conversion
# in a batch of twenty does not time out the other nineteen.
BUILD_TIMEOUT_S = float(os.environ.get("ACCELBENCH_BUILD_TIMEOUT", 3600))
BUILD_SEARCH_ALLOWANCE_S = max(targets.FP16_SEARCH_SECONDS, targets.INT8_SEARCH_SECONDS) + 60


class ArtifactBroker:
    """Finds or builds artefacts for one run folder, and remembers each answer (a path, or why there is none) for
    as long as it lives: a case asked for twice is looked up once."""

    def __init__(self, logs_dir: Path) -> None:
        """``logs_dir``: the run folder's logs/, where the build subprocess writes artifacts.log."""
        self.logs_dir = logs_dir
        self.found: dict[ArtifactRequest, str] = {}
        self.errors: dict[ArtifactRequest, str] = {}

    @property
    def log_path(self) -> Path:
        return self.logs_dir / "artifacts.log"

    def prepare(self, cases: Iterable[Case], progress: Callable[[str], None] | None = None) -> None:
        """Every artefact the cases need, and their fp32 references' (built in the same subprocess): looked up in
        the cache, the missing ones built. Skipped cases need none."""
        wanted = [case for case in cases if not case.skip_reason]
        requests = [case.artifact_request() for case in wanted]
        references: dict[ArtifactRequest, Case] = {}  # the request fixes the reference's backend and options
        for case in wanted:
            reference = reference_case(case)
            references.setdefault(reference.artifact_request(), reference)
        requests += [request for request, reference in references.items() if skip_reason(reference) is None]
        self.prepare_requests(requests, progress)

    def prepare_requests(self, requests: Iterable[ArtifactRequest],
                         progress: Callable[[str], None] | None = None) -> None:
        """Look each request up in the cache; build the missing ones in one subprocess (each answered at most
        once: a request that failed is not built again)."""
        missing: list[ArtifactRequest] = []
        for request in dict.fromkeys(requests):  # in order, each once
            if self.knows(request):
                continue
            found = lookup(request)
            if found is not None:
                self.found[request] = str(found)
            else:
                missing.append(request)
        if missing:
            if progress:
                progress(f"building {len(missing)} model artefact(s) (cached for later runs)")
            self._build(missing, progress)

    def knows(self, request: ArtifactRequest) -> bool:
        """Whether this broker has an answer for the request already (a path or a reason)."""
        return request in self.found or request in self.errors

    def artifact_for(self, case: Case) -> tuple[str | None, str | None]:
        """The case's artefact path and None, or None and why there is none (prepared now if it was not before)."""
        request = case.artifact_request()
        if not self.knows(request):
            self.prepare([case])
        return self.found.get(request), self.errors.get(request)

    def _build(self, missing: list[ArtifactRequest], progress: Callable[[str], None] | None = None) -> None:
        """Build ``missing`` in one `python -m model_zoo.build` (JSON requests in, one JSON answer per request out)."""
        payload = json.dumps([request_to_json(request) for request in missing])
        read_end, write_end = os.pipe()  # the build's progress lines (model_zoo.progress), one JSON per step
        listener = threading.Thread(target=_relay_progress, args=(read_end, progress), daemon=True)
        listener.start()  # it owns read_end from here: it closes it at the end of the stream
        try:
            env = {**child_env(worker_env()), PROGRESS_FD_ENV: str(write_end)}
            with open(self.log_path, "ab") as log:
                try:
                    done = subprocess.run([sys.executable, "-m", "model_zoo.build"], input=payload.encode(),
                                          stdout=subprocess.PIPE, stderr=log, env=env, pass_fds=(write_end,),
                                          timeout=BUILD_TIMEOUT_S + BUILD_SEARCH_ALLOWANCE_S * len(missing))
                    lines = done.stdout.decode(errors="replace").strip().splitlines()
                    answers = json.loads(lines[-1]) if lines else None
                except subprocess.TimeoutExpired:
                    answers, done = None, None
                except json.JSONDecodeError:
                    answers = None
        finally:
            os.close(write_end)  # with the child's copy gone too, the listener reads to the end and stops
            listener.join(timeout=5)
        if not isinstance(answers, list) or len(answers) != len(missing):
            why = "timed out" if done is None else f"exited with status {done.returncode}"
            for request in missing:
                self.errors[request] = f"building the model artefact {why}: {tail_of_log(self.log_path)}"
            return
        for request, answer in zip(missing, answers, strict=True):
            if "path" in answer:
                self.found[request] = answer["path"]
            else:
                self.errors[request] = answer.get("error", "unknown error while building the artefact")


def _relay_progress(read_end: int, progress: Callable[[str], None] | None) -> None:
    """Pass each progress line of the build process on as text ("building [3/12] ppocr_det int8 onnx: trial 7 of
    the node search (41 s; 199 s of the 240 s budget left)") until the build ends; a line that is not JSON is
    dropped (the build's own log has everything)."""
    with os.fdopen(read_end, "r", errors="replace") as lines:
        for line in lines:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if progress is not None and isinstance(event, dict):
                progress(f"building {format_event(event)}")
