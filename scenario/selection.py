"""``-k`` selection with exactly pytest's expression language, so both front doors select the same cases."""

from __future__ import annotations

from collections.abc import Iterable

from _pytest.mark.expression import Expression

from scenario.cases import Case


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
