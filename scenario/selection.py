"""``-k`` selection with exactly pytest's expression language, so both front doors select the same cases; and a
run's whole selection (shard, ``-k``, the partners budgets need), shared by `accelbench run` and the Python API."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from _pytest.mark.expression import Expression

from scenario.cases import Case

if TYPE_CHECKING:
    from scenario.sharding import Shard


class SelectionError(ValueError):
    pass


def select(cases: Iterable[Case], expression: str | None, extra_names: Iterable[str] = ()) -> list[Case]:
    """Cases whose id or keywords match ``expression``: case-insensitive substrings, like ``pytest -k``."""
    if not expression:
        return list(cases)
    try:
        compiled = Expression.compile(expression)
    except SyntaxError as error:  # pytest 8.4+ raises SyntaxError (ParseError before)
        raise SelectionError(f"-k {expression!r}: {error}") from None
    chosen = []
    for case in cases:
        names = [name.lower() for name in (case.case_id, *case.keywords, *extra_names)]

        def matches(sub: str, /, **_: object) -> bool:
            return any(sub.lower() in name for name in names)  # noqa: B023 - used before the loop moves on

        if compiled.evaluate(matches):
            chosen.append(case)
    return chosen


def run_selection(everything: list[Case], shard: Shard | None, expression: str | None,
                  extra_names: Iterable[str] = ()) -> tuple[list[Case], list[Case]]:
    """The cases one run takes, in scenario order: its shard of the whole scenario (every machine of a matrix
    computes the same split), then ``-k``, then the cases the selected ones' budgets compare with. Returns (the
    cases, those of them the budgets brought back in), so that a front door can say which it added."""
    from scenario.budgets import partners
    from scenario.sharding import shard_cases

    in_shard = shard_cases(everything, shard) if shard else everything
    cases = select(in_shard, expression, extra_names=extra_names)
    needed = partners(cases, in_shard)
    if needed:
        wanted = {case.case_id for case in [*cases, *needed]}
        cases = [case for case in in_shard if case.case_id in wanted]
    return cases, needed
