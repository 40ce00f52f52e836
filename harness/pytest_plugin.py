"""pytest front door: every case of a scenario file is a pytest item, run by the same engine as the CLI.

``pytest scenarios/smoke.yaml -k "onnxruntime and b4"`` selects cases like any other tests; skips carry the
exact reason, failures a readable message, and the summary table closes the output. Scenario files are
collected when named on the command line or when they live in a folder called ``scenarios``.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import pytest

from model_zoo.requests import PRECISIONS
from scenario.cases import Case

PRECISION_MARKERS = PRECISIONS
MODE_MARKERS = ("latency", "throughput", "concurrent")
_ENGINE = pytest.StashKey[Any]()
_CASES = pytest.StashKey[list[Case]]()
_AB_RUNS = pytest.StashKey[dict[str, Any]]()
_SHARD = pytest.StashKey[Any]()  # scenario.sharding.Shard, from --shard K/N
_COLLECTED = pytest.StashKey[list[pytest.Item]]()  # every scenario item collected, in order
_FIXTURE_IDS = pytest.StashKey[set[str]]()  # case ids the accelbench fixture has used this session


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("accelbench")
    group.addoption("--accelbench-out", metavar="DIR", default=None,
                    help="run folder for results (default: reports/<scenario>-<date>-<time> under rootdir)")
    group.addoption("--accelbench-yes", action="store_true", default=False,
                    help="run even when the selection holds more than 2,000 cases (pytest cannot ask)")
    shard_help = "run the K-th of N parts of each scenario, each model's cases in one part (CI matrices)"
    try:
        group.addoption("--shard", "--accelbench-shard", metavar="K/N", default=None, dest="accelbench_shard",
                        help=shard_help)
    except ValueError:  # another plugin owns --shard: the long name still works
        group.addoption("--accelbench-shard", metavar="K/N", default=None, dest="accelbench_shard", help=shard_help)
    profile_help = "profile every case per operator after its timing (as the scenario's profile: true)"
    try:
        group.addoption("--profile", "--accelbench-profile", action="store_true", default=False,
                        dest="accelbench_profile", help=profile_help)
    except ValueError:  # another plugin (pytest-profiling) owns --profile: the long name still works
        group.addoption("--accelbench-profile", action="store_true", default=False, dest="accelbench_profile",
                        help=profile_help)


def pytest_configure(config: pytest.Config) -> None:
    from backends.registry import backend_names

    for name in (*backend_names(), *PRECISION_MARKERS, *MODE_MARKERS):
        config.addinivalue_line("markers", f"{name}: accelbench cases of this backend, precision or mode")
    if shard_text := config.getoption("accelbench_shard", None):
        from scenario.sharding import ShardError, parse_shard

        try:
            config.stash[_SHARD] = parse_shard(shard_text)
        except ShardError as error:
            raise pytest.UsageError(str(error)) from None
    _refuse_parallel_scenarios(config)


PARALLEL_REFUSAL = ("accelbench: pytest -n runs tests in parallel on this machine, which would make every timing "
                    "wrong; run scenarios and accelbench tests without -n (across machines: --shard K/N)")


def parallel_workers(config: pytest.Config) -> int:
    """How many pytest-xdist workers run this session's tests at once (1: none, or one): on the controller the
    -n value ("auto" and "logical" count as many), on a worker the count it was started with."""
    worker = getattr(config, "workerinput", None)
    if worker is not None:
        return int(worker.get("workercount", 1))
    wanted = config.getoption("numprocesses", None)
    if wanted in (None, 0, "0"):
        return 1
    return 2 if isinstance(wanted, str) and not wanted.isdigit() else int(wanted)


def _refuse_parallel_scenarios(config: pytest.Config) -> None:
    """`pytest -n N` with a scenario named on the command line (or a scenarios folder): refused at once, in one line.
    Scenarios found otherwise are refused where a worker collects them (ScenarioFile.collect), and the fixture where
    a test asks for it."""
    if getattr(config, "workerinput", None) is not None or parallel_workers(config) < 2:
        return
    for arg in config.args:
        path = Path(arg.split("::")[0])
        if path.suffix in (".yaml", ".yml") or path.name == "scenarios":
            raise pytest.UsageError(PARALLEL_REFUSAL)


def _is_scenario(file_path: Path, config: pytest.Config) -> bool:
    if file_path.suffix not in (".yaml", ".yml"):
        return False
    if file_path.parent.name == "scenarios":
        return True
    explicit = {Path(arg.split("::")[0]).resolve() for arg in config.args}
    return file_path.resolve() in explicit


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if _is_scenario(file_path, parent.config):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    def collect(self) -> list[pytest.Item]:
        from scenario.expand import TooManyCases
        from scenario.load import ScenarioError, expand, load_scenario

        if parallel_workers(self.config) > 1:
            raise self.CollectError(PARALLEL_REFUSAL)
        try:
            loaded = load_scenario(self.path)
            cases = expand(loaded)
        except (ScenarioError, TooManyCases) as error:
            raise self.CollectError(str(error)) from None
        if (shard := self.config.stash.get(_SHARD, None)) is not None:
            from scenario.sharding import shard_cases

            # the split comes from the whole scenario: every machine of a matrix computes the same one
            cases = shard_cases(cases, shard)
        if self.config.getoption("accelbench_profile"):
            from scenario.expand import profiled

            cases = profiled(cases)
        ab = None
        if loaded.scenario.ab is not None:  # every case is an A/B comparison of the scenario's two sides
            from harness.ab import settings_from, sides_from
            from scenario.sides import SideError

            try:
                ab = (sides_from(loaded.scenario.ab, loaded.base_dir, {}), settings_from(loaded.scenario.ab))
            except (SideError, ValueError) as error:
                raise self.CollectError(f"{self.path}: ab: {error}") from None
        items = []
        for case in cases:
            item = (CaseItem.from_parent(self, name=case.case_id, case=case) if ab is None else
                    AbItem.from_parent(self, name=case.case_id, case=case, sides=ab[0], settings=ab[1]))
            for marker in (case.backend, case.precision, case.mode):
                item.add_marker(marker)
            # -k matches what `accelbench run -k` matches: the model, the scenario's own name too
            item.extra_keyword_matches.update({*case.keywords, case.scenario})
            items.append(item)
        if ab is None:
            items += _race_items(self, cases)
            items += _budget_items(self, cases)
        self.config.stash.setdefault(_COLLECTED, []).extend(items)
        return items


def _race_items(parent: pytest.File, cases: list[Case]) -> list[pytest.Item]:
    """One item per (model, batch size, mode) group of two or more cases that race, after all the file's cases:
    it races the group's cases that passed in this session. Selected by the model, batch and mode names (-k
    mobilenet_v2), never by a backend's or precision's: a race is of a whole group."""
    groups: dict[tuple[str, int, str], list[Case]] = {}
    for case in cases:
        if case.race is not None:
            groups.setdefault((case.model_label, case.batch_size, case.mode), []).append(case)
    items: list[pytest.Item] = []
    for (model, batch, mode), members in groups.items():
        if len(members) < 2:
            continue
        name = f"race-{model}-b{batch}" + ("" if mode == "latency" else f"-{mode}")
        item = RaceItem.from_parent(parent, name=name, cases=members)
        item.extra_keyword_matches.update({"race", model, f"b{batch}", mode, members[0].scenario})
        items.append(item)
    return items


def _budget_items(parent: pytest.File, cases: list[Case]) -> list[pytest.Item]:
    """One item per case with relative budgets, after the races: judged on its group's race (results.budgets).
    Selected as its case is (its id, backend, precision, markers), and a selection that takes it, or its case,
    also runs the partner case and the group's race (pytest_collection_finish)."""
    from scenario.budgets import relative

    items: list[pytest.Item] = []
    for case in cases:
        if case.skip_reason is None and any(relative(budget) for budget in case.budgets):
            item = BudgetItem.from_parent(parent, name=f"{case.case_id}-budget", case=case)
            for marker in (case.backend, case.precision, case.mode):
                item.add_marker(marker)
            item.extra_keyword_matches.update({*case.keywords, case.scenario, "budget"})
            items.append(item)
    return items


def _domain(path: Path, name: str) -> str:
    """The item's name as its report's headline. pytest's verbose line turns the dots of a headline that ends its
    node id into "::" (it takes it for a Python path): a model "hey_jarvis_v0.1" would read "hey_jarvis_v0::1", an
    id nobody can select. A name with a dot gets its file's name in front, which ends no node id."""
    return f"{path.name} {name}" if "." in name else name


class CaseFailure(Exception):
    """A case that did not pass; its message is all the user needs (no traceback)."""


class CaseItem(pytest.Item):
    def __init__(self, *, case: Case, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case

    def runtest(self) -> None:
        from results.store import RunFolderProblem

        engine = _engine(self.config)
        try:
            record = engine.run_case(self.case)
        except RunFolderProblem as error:  # the disk filled up: stop here, keep what is recorded
            pytest.exit(f"accelbench: {error}; the cases recorded so far are kept", returncode=2)
        if record.status == "skipped":
            pytest.skip(record.reason or "skipped")
        if record.status != "passed":
            raise CaseFailure(f"{record.status.upper()}: {record.reason}")
        if self.case.budgets:  # absolute limits on the case's own figures; relative ones wait for the race
            from harness.budgets import judge_budgets

            verdicts = judge_budgets(engine, [self.case], relative=False)
            lines = {budget["where"]: budget.get("line") for budget in self.case.budgets}
            for verdict in verdicts:
                if verdict.status == "other machine":  # said in the warnings summary, at the budget's line
                    warnings.warn_explicit(pytest.PytestWarning(f"{self.case.case_id}: budget {verdict.where}: "
                                                                f"{verdict.message}"), None, str(self.path),
                                           lines.get(verdict.where) or 1)
            if missed := [verdict.message for verdict in verdicts if verdict.fails]:
                raise CaseFailure("BUDGET MISSED: " + "; ".join(missed))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, CaseFailure):
            return f"{self.case.case_id}: {excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, _domain(self.path, self.case.case_id)


class AbItem(CaseItem):
    """A case of a scenario with an ``ab:`` block: fails when the new side is slower (or cannot run what the base
    runs), is skipped with the reason when the comparison cannot tell or the sides cannot be compared."""

    def __init__(self, *, sides: dict[str, Any], settings: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sides, self.settings = sides, settings

    def runtest(self) -> None:
        from results.store import RunFolderProblem

        try:
            record = _ab_run(self).compare(self.case)
        except RunFolderProblem as error:
            pytest.exit(f"accelbench: {error}; the comparisons recorded so far are kept", returncode=2)
        ratio = "" if record.ratio is None else (
            f"new/base {record.ratio:.3f} (95 % CI {record.ci_low:.3f}–{record.ci_high:.3f}, p = {record.p_value:.2g}, "
            f"{len(record.rounds)} rounds): ")
        if record.verdict in ("slower", "broken"):
            raise CaseFailure(f"{record.verdict.upper()}: {ratio}{record.reason}")
        if record.status == "failed":
            raise CaseFailure(f"FAILED: {record.reason}")
        if record.status in ("refused", "skipped") or record.verdict == "cannot tell":
            pytest.skip(f"{record.verdict or record.status}: {ratio}{record.reason}")


class _GroupItem(pytest.Item):
    """An item that is not one case (a race, a case's budgets): its failure and location are its name's."""

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, CaseFailure):
            return f"{self.name}: {excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, _domain(self.path, self.name)


class BudgetItem(_GroupItem):
    """A case's relative budgets, judged on its group's race after it: fails on a miss (or on "cannot tell" where
    the budget says ``cannot_tell: fail``), is skipped with the numbers when the race cannot tell, passes when every
    limit is met by the whole interval."""

    def __init__(self, *, case: Case, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case

    def runtest(self) -> None:
        from harness.budgets import judge_budgets

        engine = _engine(self.config)
        verdicts = judge_budgets(engine, [self.case], absolute=False)
        if not verdicts:
            pytest.skip(f"{self.case.case_id} did not run in this session: nothing to judge")
        if failing := [verdict for verdict in verdicts if verdict.fails]:  # a miss, or cannot tell: fail
            missed = any(verdict.status == "missed" for verdict in failing)
            raise CaseFailure(("BUDGET MISSED: " if missed else "") + "; ".join(v.message for v in failing))
        if undecided := [verdict.message for verdict in verdicts if verdict.status != "passed"]:
            pytest.skip("; ".join(undecided))

class RaceItem(_GroupItem):
    """A group's race: after its cases, their passing configurations measured together (harness.race). It never
    fails a case: it passes whatever the race found (printed in the summary), is skipped when fewer than two of
    the group's cases passed, and fails only when the race itself could not run (a folder it cannot write)."""

    def __init__(self, *, cases: list[Case], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cases = cases

    def runtest(self) -> None:
        from harness.race import race_run
        from results.store import RunFolderProblem

        engine = _engine(self.config)
        try:
            races = race_run(engine, self.cases)
        except RunFolderProblem as error:
            pytest.exit(f"accelbench: {error}; the cases recorded so far are kept", returncode=2)
        if not races:
            pytest.skip("nothing to race: fewer than two of the group's cases passed in this session")
        race = races[0]
        if race.status == "failed":
            raise CaseFailure(f"race failed: {race.reason}")
        if race.status == "not raced":
            pytest.skip(f"not raced: {race.reason}")


def _ab_run(item: AbItem) -> Any:
    """One A/B run folder per scenario file and pytest session: REPORTS/<scenario>-ab-<time>, or beside
    --accelbench-out DIR as DIR-ab-<scenario> (DIR itself stays for the session's ordinary cases)."""
    config = item.config
    runs = config.stash.setdefault(_AB_RUNS, {})
    key = str(item.path.resolve())
    if key not in runs:
        from harness.ab import AbRun
        from results.store import new_run_dir, safe_file_name

        scenario = item.case.scenario
        out = config.getoption("--accelbench-out")
        run_dir = (Path(f"{out}-ab-{safe_file_name(scenario)}") if out else
                   new_run_dir(config.rootpath / "reports", f"{scenario}-ab"))
        try:
            runs[key] = AbRun(run_dir, {"scenarios": [scenario], "front_door": "pytest", "file": key,
                                        "args": list(config.args)}, item.sides, item.settings)
        except OSError as error:
            message = str(error) if str(run_dir) in str(error) else f"cannot write results to {run_dir}: {error}"
            pytest.exit(f"accelbench: {message}", returncode=2)
        # only the selected items' cases (-k, -m): a deselected case's conversions can take minutes
        selected = [other.case for other in item.session.items
                    if isinstance(other, AbItem) and str(other.path.resolve()) == key]
        runs[key].prepare(selected)
    return runs[key]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A skip raised inside the engine would be reported at a line of this plugin; point it at the scenario."""
    report = yield
    if isinstance(item, CaseItem | RaceItem | BudgetItem) and report.skipped and isinstance(report.longrepr, tuple):
        report.longrepr = (str(item.path), None, report.longrepr[2])
    return report


def _with_budget_partners(session: pytest.Session) -> None:
    """A selected budget (or a selected case with relative budgets) needs its case, the partner it compares with
    and its group's race in the same session: put back what the selection left out, in collection order."""
    from scenario.budgets import partners, relative, same_group

    # left out by -k, -m or --lf (which, on a folder, drops whole files' items without saying so): whatever was
    # collected and is not to run
    running = {id(item) for item in session.items}
    collected = [item for item in session.config.stash.get(_COLLECTED, []) if id(item) not in running]
    if not collected:
        return
    budgeted = [item.case for item in session.items if isinstance(item, CaseItem | BudgetItem)
                and not isinstance(item, AbItem) and any(relative(budget) for budget in item.case.budgets)]
    cases = [item.case for item in session.config.stash.get(_COLLECTED, []) if type(item) is CaseItem]
    wanted = {id(case) for case in [*budgeted, *partners(budgeted, cases)]}  # the same Case objects as the items'
    judged = {id(case) for case in budgeted}
    needed = {id(other) for other in collected
              if (type(other) is CaseItem and id(other.case) in wanted)
              or (isinstance(other, BudgetItem) and id(other.case) in judged)
              or (isinstance(other, RaceItem) and any(same_group(case, member) for case in budgeted
                                                      for member in other.cases))}
    if not needed:
        return
    chosen = {id(item) for item in session.items} | needed
    back = [item for item in collected if id(item) in needed]
    ordered = [item for item in session.config.stash.get(_COLLECTED, []) if id(item) in chosen]
    accelbench = {id(item) for item in ordered}
    # the scenario items go where the first of them was; other tests keep their order around them
    before = next((index for index, item in enumerate(session.items) if id(item) in accelbench), len(session.items))
    others_before = sum(id(item) not in accelbench for item in session.items[:before])
    rest = [item for item in session.items if id(item) not in accelbench]
    session.items[:] = rest[:others_before] + ordered + rest[others_before:]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"accelbench: also running {len(back)} deselected item(s) the selected budgets need: "
                            + ", ".join(item.name for item in back))


@pytest.hookimpl(tryfirst=True)  # before the terminal lists (--collect-only) or counts what will run
def pytest_collection_finish(session: pytest.Session) -> None:
    _with_budget_partners(session)
    cases = [item.case for item in session.items if isinstance(item, CaseItem)]
    if not session.config.getoption("--accelbench-yes"):
        from scenario.expand import too_many_cases

        scenarios = ", ".join(sorted({str(item.path) for item in session.items if isinstance(item, CaseItem)}))
        if problem := too_many_cases(cases, scenarios, "--accelbench-yes"):
            pytest.exit(f"accelbench: {problem}", returncode=pytest.ExitCode.USAGE_ERROR)
    # the engine's run measures the ordinary cases; A/B items have run folders of their own
    session.config.stash[_CASES] = [item.case for item in session.items
                                    if isinstance(item, CaseItem) and not isinstance(item, AbItem)]


@pytest.fixture
def accelbench(request: pytest.FixtureRequest) -> Any:
    """Measure a model (``accelbench.measure``) or compare two configurations of it in one sitting
    (``accelbench.compare``) from a test function; the records join the session's run folder and report."""
    from accelbench.fixture import Accelbench

    config = request.config
    if parallel_workers(config) > 1:
        pytest.fail(PARALLEL_REFUSAL, pytrace=False)
    used = config.stash.setdefault(_FIXTURE_IDS, set())
    return Accelbench(lambda: _engine(config), request.node.nodeid, request.path.parent, used)


def _engine(config: pytest.Config) -> Any:
    """One engine (one run folder) per pytest session, created when the first case runs."""
    if _ENGINE not in config.stash:
        from harness.engine import Engine
        from results.store import new_run_dir

        cases = config.stash.get(_CASES, [])
        scenarios = sorted({case.scenario for case in cases}) or ["pytest"]
        out = config.getoption("--accelbench-out")
        run_dir = Path(out) if out else new_run_dir(config.rootpath / "reports", "+".join(scenarios))
        try:
            engine = Engine(run_dir, {"scenarios": scenarios, "front_door": "pytest", "args": list(config.args)})
        except OSError as error:  # full, read-only or not a folder: one line, before any case runs
            message = str(error) if str(run_dir) in str(error) else f"cannot write results to {run_dir}: {error}"
            pytest.exit(f"accelbench: {message}", returncode=2)
        config.stash[_ENGINE] = engine
        engine.prepare_artifacts(cases)
    return config.stash[_ENGINE]


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:

    for run in config.stash.get(_AB_RUNS, {}).values():
        from harness.console import ab_table
        from reporting.html import write_report_safely

        buffer, console = _buffered_console(terminalreporter)
        console.print(ab_table(run.store.ab_records()))
        report, report_error = write_report_safely(run.run_dir)
        console.print(f"results: {run.run_dir}" + (f"\nreport: {report}" if report else f"\n{report_error}"),
                      highlight=False, soft_wrap=True)
        terminalreporter.section("accelbench ab")
        terminalreporter.write(buffer.getvalue())
    engine = config.stash.get(_ENGINE, None)
    if engine is None:
        return

    from harness.console import print_summary
    from reporting.html import write_report_safely

    try:
        records = engine.finish()
        report, report_error = write_report_safely(engine.run_dir)
    except OSError as error:
        terminalreporter.write_line(f"accelbench: cannot finish the run in {engine.run_dir}: {error}", red=True)
        return
    buffer, console = _buffered_console(terminalreporter)
    print_summary(records, engine.run_dir, console, report, report_error, races=engine.store.race_records(),
                  budgets=engine.store.budget_verdicts())
    terminalreporter.section("accelbench")
    terminalreporter.write(buffer.getvalue())


def pytest_unconfigure(config: pytest.Config) -> None:
    """The session's run folders may be written by another process from here on (an in-process pytest run, as
    pytester's, ends long before its interpreter does)."""
    engine = config.stash.get(_ENGINE, None)
    if engine is not None:
        engine.close()
    for run in config.stash.get(_AB_RUNS, {}).values():
        run.close()


def _buffered_console(terminalreporter: Any) -> tuple[io.StringIO, Any]:
    """A rich console writing into a buffer, styled as pytest's own terminal is (colour or not, its width)."""
    from rich.console import Console

    buffer = io.StringIO()
    return buffer, Console(file=buffer, force_terminal=terminalreporter.hasmarkup,
                           width=max(terminalreporter._tw.fullwidth, 160))
