"""An A/B run: every case of a scenario compared on two sides (scenario.sides) in one sitting (harness.sitting),
into one run folder (env.json, scenario.json, ab.jsonl, logs/).

Shared by `accelbench ab` and the pytest front door (a scenario with an ``ab:`` block). Artefacts come from the
artefact broker (harness.artifacts) as a run's do, so a side's model is converted exactly as `accelbench run` would
convert it.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from harness.artifacts import ArtifactBroker
from harness.engine import open_run_store
from harness.protocol import ReadyReply
from harness.sitting.channel import SideFailure
from harness.sitting.methods import METHODS, duet_cores
from harness.sitting.rounds import Refused, Sitting, log_ratio
from results.ab_record import AbRecord, AbRound, SideInfo, SlicePair
from results.paired import CONFIDENCE, ab_verdict, minimum_detectable_effect, paired_estimate
from results.runs import load_run
from results.store import safe_file_name
from scenario.cases import Case
from scenario.checks import max_model_bytes
from scenario.defaults import AB_DEFAULTS, ROUND_SECONDS_MAX, SLICE_MS_MAX
from scenario.frozen import FileFacts, FrozenError, ModelFiles, copy_checked, model_files, write_manifest
from scenario.schema import MAX_TIMEOUT_S, AbSpec
from scenario.sides import Side, SideError, side_from_mapping

SIDES = ("base", "new")


@dataclass(frozen=True)
class AbSettings:
    """How one case is compared (a scenario's ``ab:`` block, or `accelbench ab`'s options); defaults in
    scenario.defaults.AB_DEFAULTS, the one source the scenario's AbSpec offers too."""

    method: str = str(AB_DEFAULTS["method"])
    threshold: float = float(AB_DEFAULTS["threshold"])  # the change that matters
    min_effect: float | None = None  # the change "slower" needs at least; None: half the threshold
    alpha: float = float(AB_DEFAULTS["alpha"])
    max_seconds: float = float(AB_DEFAULTS["max_seconds"])  # per case, worker start-ups included
    min_rounds: int = int(AB_DEFAULTS["min_rounds"])  # the exact signed-rank test reaches p < 0.01 from eight on
    max_rounds: int = int(AB_DEFAULTS["max_rounds"])
    round_seconds: float = float(AB_DEFAULTS["round_seconds"])  # measured time of a round, both sides together
    slice_ms: float = float(AB_DEFAULTS["slice_ms"])
    fresh: str = str(AB_DEFAULTS["fresh"])  # a round's fresh pair: new worker processes, or new sessions
    # rounds stop being added once the interval is narrow enough that, in the normal limit, its standard error
    # would detect stop_mde × threshold (a 95 % half-width of about 0.28 × threshold); the MDE reported is the
    # exact test's, a little larger at few rounds (results.paired), still below the threshold where this stops
    stop_mde: float = float(AB_DEFAULTS["stop_mde"])
    warmup_seconds: float = float(AB_DEFAULTS["warmup_seconds"])
    warmup_runs: int | None = None  # the case's own measure.warmup_runs (ab's published figures were measured so)
    seed: int = int(AB_DEFAULTS["seed"])

    def __post_init__(self) -> None:
        """The command line's values are checked as the scenario's are (scenario.schema.AbSpec's bounds)."""
        if self.method not in METHODS:
            raise ValueError(f"method is one of {', '.join(METHODS)}, not {self.method!r}")
        if self.fresh not in ("worker", "session"):
            raise ValueError(f"fresh is 'worker' or 'session', not {self.fresh!r}")
        if self.method == "duet" and self.fresh == "session":
            raise ValueError("a duet starts fresh workers each round (the sides swap cores): fresh: session does "
                             "not apply")
        for name, most in (("max_seconds", MAX_TIMEOUT_S), ("round_seconds", ROUND_SECONDS_MAX),
                           ("slice_ms", SLICE_MS_MAX), ("threshold", 1), ("stop_mde", math.inf)):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, not {value!r}")
            if value > most:  # the bounds the scenario's ab: block has (scenario.schema.AbSpec)
                raise ValueError(f"{name} must be at most {most:g}, not {value!r}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold is a share between 0 and 1 (5% = 0.05), not {self.threshold!r}")
        if self.min_rounds < 2 or self.max_rounds < self.min_rounds:
            raise ValueError(f"min_rounds must be 2 or more (a spread needs two rounds) and at most max_rounds, "
                             f"not {self.min_rounds}")
        if self.seed < 0:
            raise ValueError(f"seed must be 0 or more, not {self.seed}")

    @property
    def effect(self) -> float:
        return self.threshold / 2 if self.min_effect is None else self.min_effect



def settings_from(spec: AbSpec | None, **overrides: Any) -> AbSettings:
    """The scenario's ``ab:`` settings, with the command line's (those not None) over them."""
    names = {f.name for f in fields(AbSettings)}
    values = {} if spec is None else {k: v for k, v in spec.model_dump().items() if k in names}
    values.update({k: v for k, v in overrides.items() if v is not None and k in names})
    return AbSettings(**values)


def sides_from(spec: AbSpec | None, base_dir: Path, given: dict[str, Side | None]) -> dict[str, Side]:
    """Both sides: the command line's where given, else the scenario's ``ab:`` block's (SideError if bad). Two
    equal sides are an A/A comparison: a way to see what the machine's noise allows, so they are not refused."""
    sides = {}
    for name in SIDES:
        side = given.get(name)
        if side is None:
            side = side_from_mapping(name, getattr(spec, name) if spec else None, base_dir)
        sides[name] = side
    return sides

class AbComparison:
    """Compares one case on two sides in one sitting; ``run()`` returns its AbRecord (also when a side fails).

    Rounds are added until the rounds could detect a change well under the threshold, or the case's time is up;
    the estimate, interval, tests and verdict come from results.paired. A side that cannot load the case, or whose
    inputs differ from the other side's, is refused before anything is measured; one that crashes or hangs mid-way
    ends the case with its reason, keeping the rounds done."""

    def __init__(self, cases: dict[str, Case], artifacts: dict[str, str], sides: dict[str, Side],
                 settings: AbSettings, work_dir: Path, env_id: str | None = None,
                 progress: Callable[[str], None] | None = None, refusal: tuple[str | None, str] | None = None,
                 index: int = 0) -> None:
        """``refusal``: (the side at fault or None, why) when the sides cannot be compared, found before (a side's
        artefact could not be built); ("skipped", why) when this machine cannot run the case at all. ``index``:
        how many comparisons of this case the run folder already holds, so that each draws its own slice order
        and writes its own logs."""
        self.cases, self.artifacts, self.sides, self.settings = cases, artifacts, sides, settings
        self.refusal = refusal
        self.work_dir, self.env_id, self.progress = work_dir, env_id, progress
        base = cases["base"]
        self.case_id = base.case_id
        self.name = f"{base.case_id}-c{index}" if index else base.case_id
        self.rng = np.random.default_rng([settings.seed, zlib.crc32(base.case_id.encode()), index])
        self.cores = (duet_cores({side: cases[side].backend_options.get("threads") for side in SIDES})
                      if settings.method == "duet" else None)
        self.rounds: list[AbRound] = []
        self.sitting: Sitting | None = None

    def run(self) -> AbRecord:
        record = self._blank_record()
        record.started_at = time.time()
        started = time.perf_counter()
        sitting = None
        try:
            if self.refusal:
                raise Refused(*self.refusal)
            if isinstance(self.cores, str):
                raise Refused(None, self.cores)
            if self.settings.method == "duet" and self.cases["base"].mode == "concurrent":
                raise Refused(None, "a duet times one stream a side and this case is concurrent: compare it with "
                                    "method lockstep")
            sitting = self.sitting = Sitting(
                self.cases, self.artifacts, {side: self.sides[side].interpreter for side in SIDES}, self.settings,
                self.work_dir, self.name, self.rng, self.progress, self.cores)
            while self._another_round(sitting):
                blocks = sitting.round(list(SIDES), check=_refuse_mismatch)
                if blocks is None:  # the time cap came inside the round: dropped, the others judged
                    break
                ratio = log_ratio(blocks, "new", "base")
                if not math.isfinite(ratio):
                    raise Refused(None, "every slice took less than the clock's tick: raise ab.slice_ms")
                cores = sitting.round_cores
                self.rounds.append(AbRound(
                    index=len(self.rounds), log_ratio=ratio, base_cores=cores["base"] if cores else None,
                    new_cores=cores["new"] if cores else None, pairs=[
                        SlicePair(at_s=b.at_s, base_ms=b.medians["base"], new_ms=b.medians["new"],
                                  base_first=None if b.order is None else b.order[0] == "base") for b in blocks]))
                if self.progress:
                    self.progress(f"round {len(self.rounds)}: new/base {math.exp(ratio):.3f}")
            record.status = "compared"
        except Refused as refusal:
            kept = f" ({len(self.rounds)} rounds kept)" if self.rounds else ""
            record.status, record.reason = "refused", f"not compared: {refusal}{kept}"
            if refusal.side == "skipped":  # the case cannot run on this machine at all
                record.status, record.reason = "skipped", str(refusal)
            if refusal.side == "new":
                record.verdict = "broken"  # the base can run the case and the new side cannot
        except SideFailure as failure:
            record.status = "refused" if failure.at_start and not self.rounds else "failed"
            kept = f" ({len(self.rounds)} rounds kept)" if self.rounds else ""
            record.reason = f"{failure}{kept}"
            if failure.side == "new" and sitting is not None and sitting.tally["base"].first_ready is not None:
                record.verdict = "broken"  # the base runs the case and the new side does not
        except OSError as error:  # the logs folder cannot take a worker's files (full, read-only): nobody's side
            kept = f" ({len(self.rounds)} rounds kept)" if self.rounds else ""
            record.status = "failed"
            record.reason = f"cannot write the workers' files in {self.work_dir}: {error.strerror or error}{kept}"
        finally:
            if sitting is not None:
                sitting.close()
        record.wall_s = time.perf_counter() - started
        record.measured_s = sitting.measured_s if sitting is not None else 0.0
        record.finished_at = time.time()
        self._fill(record)
        return record

    def _another_round(self, sitting: Sitting) -> bool:
        done, settings = len(self.rounds), self.settings
        if done >= settings.max_rounds:
            return False
        if not sitting.next_round_fits():
            return False
        if done < settings.min_rounds:
            return True
        estimate = paired_estimate([r.log_ratio for r in self.rounds], alpha=settings.alpha)
        if not math.isfinite(estimate.mde):  # too few rounds for the exact test to reach alpha: more, whatever
            return True
        precise_enough = settings.stop_mde * settings.threshold
        return minimum_detectable_effect(estimate.standard_error, settings.alpha) > precise_enough

    # -- the record --------------------------------------------------------------------------------------
    def _blank_record(self) -> AbRecord:
        case = self.cases["base"]
        settings = self.settings
        return AbRecord(case_id=case.case_id, scenario=case.scenario, model=case.model_label, backend=case.backend,
                        backend_label=case.backend_label, precision=case.precision, batch_size=case.batch_size,
                        mode=case.mode, method=settings.method, status="failed",  # until it is compared
                        base=self._side_info("base"), new=self._side_info("new"), threshold=settings.threshold,
                        min_effect=settings.effect, alpha=settings.alpha, confidence=CONFIDENCE,
                        settings=asdict(settings), env_id=self.env_id)

    def _side_info(self, side: str) -> SideInfo:
        spec = self.sides[side]
        info = SideInfo(name=side, spec=spec.spec(), description=spec.describe(), artifact=self.artifacts.get(side))
        if self.sitting is None:
            return info
        tally = self.sitting.tally[side]
        ready = tally.first_ready
        if ready is not None:
            if ready.environment is not None:
                info.python, info.python_version = ready.environment.python, ready.environment.python_version
                info.libraries = ready.environment.libraries
            info.backend_info, info.inputs = ready.backend_info, ready.inputs
        info.median_ms, info.geomean_ms = tally.figures()
        info.slices, info.inferences = len(tally.slice_medians), tally.inferences
        info.startup_s = tally.startup_s
        return info

    def _fill(self, record: AbRecord) -> None:
        record.base, record.new = self._side_info("base"), self._side_info("new")
        record.rounds = self.rounds
        self._judge(record)
        sitting = self.sitting
        given_up, stalled = (sitting.given_up, sitting.stalled) if sitting is not None else (None, None)
        if stalled and record.verdict in ("unchanged", "faster"):  # never a pass over a side that stalled
            record.verdict, record.reason = "cannot tell", (
                f"{given_up}; the {len(self.rounds)} rounds before it said {record.verdict!r} ({record.reason}) "
                f"but cannot speak for what came after")
        elif given_up:
            record.reason = f"{record.reason} ({given_up})"

    def _judge(self, record: AbRecord) -> None:
        if len(self.rounds) < 2:
            if record.status == "compared":
                record.verdict = "cannot tell"
                record.reason = "one round only: no spread between rounds to judge by (raise ab.max_seconds)"
            return
        estimate = paired_estimate([r.log_ratio for r in self.rounds], alpha=self.settings.alpha)
        record.ratio, record.ci_low, record.ci_high = estimate.ratio, estimate.ci_low, estimate.ci_high
        record.p_value, record.t_test_p, record.mde = estimate.p_value, estimate.t_test_p, estimate.mde
        if record.status == "compared":
            record.verdict, record.reason = ab_verdict(estimate, self.settings.threshold, self.settings.effect,
                                                       self.settings.alpha)
            if record.verdict == "cannot tell" and len(self.rounds) < self.settings.min_rounds:
                record.reason += (f" (ab.max_seconds = {self.settings.max_seconds:g} s ended it after "
                                  f"{len(self.rounds)} of the {self.settings.min_rounds} rounds wanted)")


def _refuse_mismatch(ready: dict[str, ReadyReply]) -> None:
    """Refuse sides that do not measure the same work (checked on the first pair, before any slice)."""
    base, new = ready["base"], ready["new"]
    if base.inputs != new.inputs:
        raise Refused(None, f"they feed different inputs (base: {_shapes(base)}; new: {_shapes(new)})")
    for side in SIDES:
        if not ready[side].outputs_finite:
            raise Refused(side, f"the {side} side's model produces NaN or infinite outputs")


def _shapes(ready: ReadyReply) -> str:
    return ", ".join(f"{i['name']} {tuple(i['shape'])} {i['dtype']}" for i in ready.inputs) or "none"


class AbRun:
    """Compares cases one at a time into one run folder."""

    def __init__(self, run_dir: Path, scenario_info: dict[str, Any], sides: dict[str, Side],
                 settings: AbSettings, resume: bool = False) -> None:
        """A new run folder, or (resume) one to add to (RunFolderProblem, OSError if it cannot take the run)."""
        opened = open_run_store(run_dir, {**scenario_info, "ab": {"sides": {n: s.spec() for n, s in sides.items()},
                                                                  "settings": asdict(settings)}}, resume=resume)
        self.store, self.env, self.torn_bytes = opened.store, opened.env, opened.torn_bytes
        self.sides, self.settings = sides, settings
        # comparisons of each case in this folder so far (a resumed benchmark adds to them)
        try:  # the comparisons already in a resumed folder: kept, shown, and counted per case
            self.recorded: list[AbRecord] = self.store.ab_records() if resume else []
        except BaseException:  # damaged comparisons: the folder is not this process's to write after all
            self.store.close()
            raise
        self._compared = Counter(record.case_id for record in self.recorded)
        self.broker = ArtifactBroker(self.store.logs_dir)

    @property
    def run_dir(self) -> Path:
        return self.store.run_dir

    def close(self) -> None:
        """Let another process write the run folder (the lock goes with this process anyway)."""
        self.store.close()

    def prepare(self, cases: list[Case], progress: Callable[[str], None] | None = None) -> None:
        """Build (or find) every side's artefacts up front, in one subprocess, as a run does."""
        wanted = []
        for case in cases:
            for side in self.sides.values():
                with contextlib.suppress(SideError):  # compare() records it for the case
                    if side.artifacts is None:  # a manifest's files are used as they are
                        wanted.append(side.apply(case))
        self.broker.prepare(wanted, progress)

    def compare(self, case: Case, progress: Callable[[str], None] | None = None,
                sides: dict[str, Side] | None = None) -> AbRecord:
        """The case's A/B record, appended to ab.jsonl before it is returned. ``sides``: other sides than the
        run's, for this case (the regression benchmark interleaves A/A and A/B comparisons in one folder)."""
        sides = sides or self.sides
        cases: dict[str, Case] = {}
        artifacts: dict[str, str] = {}
        problems: dict[str, tuple[bool, str]] = {}  # side -> (the side's own fault, why it cannot run)
        skipped_here: set[str] = set()  # sides that cannot run the case on this machine (a backend it lacks)
        for name, side in sides.items():
            try:
                cases[name] = side.apply(case)
            except SideError as error:  # a setting the user gave: no fault of either side's software
                cases[name], problems[name] = case, (False, str(error))
                continue
            if case.skip_reason and side.python is None:  # another interpreter decides for itself
                problems[name] = (False, f"{name} side cannot run the case here: {case.skip_reason}")
                skipped_here.add(name)
                continue
            artifact, error = side.artifact_for(case.case_id)
            if artifact is None and error is None:
                artifact, error = self.broker.artifact_for(cases[name])
            if artifact is None:  # neither a manifest's message nor the broker's names the side: named here, once
                problems[name] = (True, f"{name} side: {error or 'no artefact'}")
            else:
                artifacts[name] = artifact
        refusal = None
        if problems:
            # a new side that cannot have what the base has (its model does not build) is broken, not skipped
            at_fault = "new" if set(problems) == {"new"} and problems["new"][0] else None
            refusal = (at_fault, "; ".join(reason for _, reason in problems.values()))
            if set(problems) == skipped_here:  # nothing this machine can measure: a skip, as a run records it
                refusal = ("skipped", refusal[1])
        index = self._compared.get(case.case_id, 0)
        self._compared[case.case_id] = index + 1
        comparison = AbComparison(cases, artifacts, sides, self.settings, self.store.logs_dir, self.env["env_id"],
                                  progress, refusal=refusal, index=index)
        record = comparison.run()
        self.store.append_ab(record)
        return record


FREEZE_LINES_SHOWN = 20


class FreezeRefused(Exception):
    """A run that cannot be frozen whole; ``lines`` say why, one per case (case id, path, why) and a last one."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines


def freeze_run(run_dir: Path, dest: Path) -> dict[str, Any]:
    """Keep a run's state for a later `ab --base`: the model files its measured cases ran (copied, with a manifest
    by case id and each file's sha256) and this interpreter's packages (pip freeze, editable installs left out:
    accelbench's own code comes from the checkout). The nightly workflow freezes the last night whose gate passed.

    All or nothing (FreezeRefused): a frozen state is what later nights are judged against, so one that silently
    lacks a case would shrink what the gate guards, and a record naming a file freeze refuses (scenario.frozen: not
    a model, a link out of its folder, gone) means the run folder was edited or its files moved since. The copy is
    made in a temporary folder beside ``dest`` and renamed into place, so ``dest`` never holds half a freeze."""
    run = load_run(run_dir)
    measured = [record for record in run.records if record.measured]
    if not measured and (Path(run_dir) / "ab.jsonl").exists():
        raise FreezeRefused([f"{run_dir} holds A/B comparisons (accelbench ab wrote it): freeze keeps the model files "
                             "of a run (accelbench run), whose records name them"])
    if not measured:
        raise FreezeRefused([f"{run_dir}: no measured case, so nothing to freeze"])
    planned: dict[str, ModelFiles | str] = {}  # each model file as recorded -> its files, or why it is refused
    refused = []
    for record in measured:
        artifact = record.artifact or ""
        if artifact not in planned:
            try:
                planned[artifact] = model_files(Path(artifact)) if artifact else "the record names no model file"
            except FrozenError as error:
                planned[artifact] = str(error)
        if isinstance(planned[artifact], str):
            refused.append(f"cannot freeze case {record.case_id}: {planned[artifact]}")
    if refused:  # a line per case, up to a screenful: a run of 10,000 cases whose cache was cleared says it in 21
        shown = refused if len(refused) <= FREEZE_LINES_SHOWN else [
            *refused[:FREEZE_LINES_SHOWN - 1], f"and {len(refused) - FREEZE_LINES_SHOWN + 1} more case(s) like these"]
        raise FreezeRefused([*shown, f"nothing was frozen: {len(refused)} of the {len(measured)} measured case(s) "
                                       f"of {run_dir} ran a model file that cannot be frozen"])
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.freezing-", dir=dest.parent))
    try:
        cases: dict[str, str] = {}
        models: dict[str, dict[str, FileFacts]] = {}
        stored_as: dict[str, str] = {}  # model file as recorded -> its path in the manifest
        for record in measured:
            model = planned[str(record.artifact)]
            assert isinstance(model, ModelFiles)
            stored = stored_as.get(str(record.artifact))
            if stored is None:  # one copy per model, however many cases ran it
                folder = Path("models") / safe_file_name(record.case_id)
                try:
                    files = _copy_model(model, folder, staging)
                except FrozenError as error:  # changed between the look and the copy
                    raise FreezeRefused([f"cannot freeze case {record.case_id}: {error}",
                                         "nothing was frozen"]) from None
                stored = stored_as[str(record.artifact)] = (folder / model.root.name).as_posix()
                models[stored] = files
            cases[record.case_id] = stored
        write_manifest(staging, cases, models)
        frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True,
                                text=True, check=True).stdout
        (staging / "requirements.lock").write_text(frozen)
        if dest.exists():  # an empty folder (the front door checked): replaced by the whole freeze at once
            dest.rmdir()
        os.rename(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"cases": len(cases), "models": len(models), "files": sum(len(files) for files in models.values()),
            "packages": len(frozen.splitlines())}


def _copy_model(model: ModelFiles, folder: Path, staging: Path) -> dict[str, FileFacts]:
    """Copy one model's files under ``folder`` (a SavedModel keeps its folder's name), each checked again as it is
    copied (scenario.frozen.copy_checked); returns each file's facts by its path in the manifest."""
    base = folder / model.root.name if model.is_folder else folder
    facts = {}
    for relative, real in model.files:
        target = staging / base / relative
        folder_made = staging
        for part in target.relative_to(staging).parent.parts:  # Path.mkdir(parents=True) recurses per level
            folder_made = folder_made / part
            folder_made.mkdir(exist_ok=True)
        facts[(base / relative).as_posix()] = copy_checked(real, target, max_model_bytes())
    return facts
