"""An A/B run: every case of a scenario compared on two sides (harness.sides) by the lock-step coordinator
(harness.lockstep), into one run folder (env.json, scenario.json, ab.jsonl, logs/).

Shared by `accelbench ab` and the pytest front door (a scenario with an ``ab:`` block). Artefacts come from the
engine's cache like a run's, so a side's model is converted exactly as `accelbench run` would convert it.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from harness.engine import Engine
from harness.lockstep import SIDES, AbSettings, CaseComparison
from harness.sides import Side, SideError, side_from_mapping
from results.ab_record import AbRecord
from scenario.cases import Case
from scenario.schema import AbSpec


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
        try:
            self._compared = (Counter(record.case_id for record in self.engine.store.ab_records()) if resume else
                              Counter())
        except BaseException:  # damaged comparisons: the folder is not this process's to write after all
            self.engine.close()
            raise

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
            if artifact is None:
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


def freeze_run(run_dir: Path, dest: Path) -> dict[str, Any]:
    """Keep a run's state for a later `ab --base`: the model files its measured cases ran (copied, with a
    manifest by case id) and this interpreter's packages (pip freeze, editable installs left out: accelbench's own
    code comes from the checkout). The nightly workflow freezes the last night whose gate passed."""
    import glob
    import shutil
    import subprocess
    import sys

    from results.runs import load_run
    from results.store import safe_file_name

    run = load_run(run_dir)
    dest.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, str] = {}
    copied: dict[str, str] = {}
    for record in run.records:
        if not record.measured or not record.artifact or not Path(record.artifact).exists():
            continue
        if record.artifact not in copied:  # one copy per file, however many cases ran it
            source = Path(record.artifact)
            target = Path("models") / safe_file_name(record.case_id) / source.name
            (dest / target).parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, dest / target, dirs_exist_ok=True)
            else:  # with its sidecars: an ONNX model's external data (model.onnx.data) sits beside it
                for sibling in source.parent.glob(f"{glob.escape(source.name)}*"):
                    if sibling.is_file():
                        shutil.copy2(sibling, dest / target.parent / sibling.name)
            copied[record.artifact] = str(target)
        manifest[record.case_id] = copied[record.artifact]
    (dest / "artifacts.json").write_text(json.dumps(manifest, indent=2))
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True,
                            text=True, check=True).stdout
    (dest / "requirements.lock").write_text(frozen)
    return {"cases": len(manifest), "files": len(copied), "packages": len(frozen.splitlines())}
