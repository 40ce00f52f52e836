"""An A/B run: every case of a scenario compared on two sides (scenario.sides) by the lock-step coordinator
(harness.lockstep), into one run folder (env.json, scenario.json, ab.jsonl, logs/).

Shared by `accelbench ab` and the pytest front door (a scenario with an ``ab:`` block). Artefacts come from the
engine's cache like a run's, so a side's model is converted exactly as `accelbench run` would convert it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from harness.engine import Engine
from harness.lockstep import SIDES, AbSettings, CaseComparison
from results.ab_record import AbRecord
from results.runs import load_run
from results.store import safe_file_name
from scenario.cases import Case
from scenario.checks import max_model_bytes
from scenario.frozen import FileFacts, FrozenError, ModelFiles, copy_checked, model_files, write_manifest
from scenario.schema import AbSpec
from scenario.sides import Side, SideError, side_from_mapping


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


class AbRun:
    """Compares cases one at a time into one run folder."""

    def __init__(self, run_dir: Path, scenario_info: dict[str, Any], sides: dict[str, Side],
                 settings: AbSettings, resume: bool = False) -> None:
        """A new run folder, or (resume) one to add to (RunFolderProblem, OSError if it cannot take the run)."""
        self.engine = Engine(run_dir, {**scenario_info, "ab": {"sides": {n: s.spec() for n, s in sides.items()},
                                                               "settings": asdict(settings)}}, resume=resume)
        self.sides, self.settings = sides, settings
        # comparisons of each case in this folder so far (a resumed benchmark adds to them)
        try:  # the comparisons already in a resumed folder: kept, shown, and counted per case
            self.recorded: list[AbRecord] = self.engine.store.ab_records() if resume else []
        except BaseException:  # damaged comparisons: the folder is not this process's to write after all
            self.engine.close()
            raise
        self._compared = Counter(record.case_id for record in self.recorded)

    @property
    def run_dir(self) -> Path:
        return self.engine.run_dir

    def prepare(self, cases: list[Case], progress: Callable[[str], None] | None = None) -> None:
        """Build (or find) every side's artefacts up front, in one subprocess, as a run does."""
        wanted = []
        for case in cases:
            for side in self.sides.values():
                with contextlib.suppress(SideError):  # compare() records it for the case
                    if side.artifacts is None:  # a manifest's files are used as they are
                        wanted.append(side.apply(case))
        self.engine.prepare_artifacts(wanted, progress)

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
                artifact, error = self.engine.artifact_for(cases[name])
            if artifact is None:  # neither a manifest's message nor the engine's names the side: named here, once
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
        comparison = CaseComparison(cases, artifacts, sides, self.settings, self.engine.store.logs_dir,
                                    self.engine.env["env_id"], progress, refusal=refusal, index=index)
        record = comparison.run()
        self.engine.store.append_ab(record)
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
