"""`--shard K/N`: one scenario's cases split across N CI machines, each model's cases on one machine.

Why by model: a model's speed-ups, races and budgets compare its configurations with each other, and only a
same-sitting comparison on one machine says which is faster. Why not Python's `hash()`: it is salted per
process, and every machine of a CI matrix must compute the same split. The split balances an estimate of each
model's cost (its cases' least measuring time, as `scenario.expand.estimated_seconds` counts it, plus a rough
conversion cost per artefact it needs), greedily, largest first; ties go by label, so the split depends on the
scenario alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from scenario.cases import Case
from scenario.expand import estimated_seconds

# A rough cost of building one converted artefact, seconds (measured on the 2-core development VM: the quick
# corpus's 49 conversions took 863 s, 18 s each on average, the int8 searches the most).
CONVERSION_SECONDS = {"fp16": 15.0, "int8_dynamic": 15.0, "int8": 30.0}

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


class ShardError(ValueError):
    """A --shard value that is not K/N with 1 ≤ K ≤ N; the message says what was given."""


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based, as the user writes it
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    match = _SHARD.match(text or "")
    if not match:
        raise ShardError(f"--shard {text!r}: expected K/N, e.g. 2/3 (the second of three shards)")
    index, count = int(match.group(1)), int(match.group(2))
    if not 1 <= index <= count:
        raise ShardError(f"--shard {text!r}: K must be between 1 and N")
    return Shard(index, count)


def model_costs(cases: Sequence[Case]) -> dict[str, float]:
    """Per model label, the estimated seconds its cases take: skipped cases cost nothing."""
    costs: dict[str, float] = {}
    artefacts: set[tuple[str, str, str]] = set()
    for case in cases:
        costs.setdefault(case.model_label, 0.0)
        if case.skip_reason:
            continue
        costs[case.model_label] += estimated_seconds([case])
        key = (case.model_label, case.precision, case.compression)
        if case.precision in CONVERSION_SECONDS and key not in artefacts:
            artefacts.add(key)
            costs[case.model_label] += CONVERSION_SECONDS[case.precision]
    return costs


def assign(costs: dict[str, float], count: int) -> dict[str, int]:
    """Model label → shard index (1-based): largest cost first, each to the shard with the least cost so far,
    then the fewest models, then the lowest index, so that no shard is empty while models remain."""
    loads = [0.0] * count
    members = [0] * count
    placed: dict[str, int] = {}
    for label in sorted(costs, key=lambda name: (-costs[name], name)):
        shard = min(range(count), key=lambda s: (loads[s], members[s], s))
        placed[label] = shard + 1
        loads[shard] += costs[label]
        members[shard] += 1
    return placed


def shard_cases(cases: Sequence[Case], shard: Shard) -> list[Case]:
    """The cases of `shard`, in their scenario order."""
    placed = assign(model_costs(cases), shard.count)
    return [case for case in cases if placed[case.model_label] == shard.index]
