"""The results record: one per case, the project's contract. Its statuses live here, once.

passed: measured, valid, within the fidelity guard and budgets. invalid: measured, but the measurement does not
meet the scenario's protocol (too few runs, too short a steady state): its timings are shown, flagged. failed:
did not run to the end, or ran and missed the guard (its timings kept). skipped: could not run here, with why.
"""

from __future__ import annotations

STATUSES = ("passed", "failed", "skipped", "invalid")
# statuses whose timings describe a complete measurement: drawn, compared, given speed-ups
MEASURED = ("passed", "invalid")
