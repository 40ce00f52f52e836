"""accelbench as a Python library: ``accelbench.run(scenario)`` and ``accelbench.load_runs(folders)``.

The command line (`accelbench run`) and pytest (`pytest scenario.yaml`, the ``accelbench`` fixture) are the other
front doors; all three run cases the same way into the same run folders.
"""

from accelbench.api import RunResult, ScenarioError, load, load_runs, run
from results.budgets import BudgetVerdict
from results.race_record import RaceRecord
from results.record import Record

__all__ = ["BudgetVerdict", "RaceRecord", "Record", "RunResult", "ScenarioError", "load", "load_runs", "run"]
