"""Judging a converted file against its fp32 source on the check feeds, and the search for the nodes that must stay
fp32 for it to pass.

Why: both precisions need the same two things, a reference computed once and a search that keeps as many nodes
converted as the check allows within the conversion's wall-clock budget."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from model_zoo.fidelity import SCORE_DEFINITION, ScoreBounds, output_score_bounds
from model_zoo.onnx_precision.graph import (
    ConversionError,
    Feed,
    _finish_converted,
    _first_line,
    _quantized_nodes,
    _session,
)

_Plan = TypeVar("_Plan", bound=tuple)


def _first_plan_that_converts(
    plans: Sequence[_Plan], quantize: Callable[[_Plan], None], out_file: Path, src: Path
) -> tuple[_Plan | None, list[str]]:
    """The first plan (label first) whose `quantize` writes to `out_file` a file that `_finish_converted` accepts and
    that has a quantized node, and a line per plan that failed before it: every library failure is one more
    fallback to try, and the messages say which."""
    failures: list[str] = []
    for plan in plans:
        try:
            quantize(plan)
            _finish_converted(out_file, src)
            if not _quantized_nodes(out_file):
                raise ConversionError("no node was quantized")
        except Exception as exc:  # the next plan is the fallback
            failures.append(f"{plan[0]}: {_first_line(exc)}")
            continue
        return plan, failures
    return None, failures


class _Reference:
    """The fp32 source's outputs on the check feeds, computed once and compared with each candidate."""

    def __init__(self, src: Path, feeds: Sequence[Feed]) -> None:
        self.feeds = list(feeds)
        session = _session(src)
        self.names = [o.name for o in session.get_outputs()]
        self.outputs = [session.run(None, dict(feed)) for feed in self.feeds]

    def cosines(self, candidate: Path | bytes) -> dict[str, float]:
        """Per output, the candidate's score (fp16's check, the meta's figures)."""
        return {name: b.score for name, b in self.bounds(candidate, bound=False).items()}

    def bounds(self, candidate: Path | bytes, bound: bool = True) -> dict[str, ScoreBounds]:
        """Per output, the candidate's score and its lower confidence bound (model_zoo.fidelity)."""
        if not self.feeds:
            return {}
        session = _session(candidate)
        outputs = [session.run(self.names, dict(feed)) for feed in self.feeds]
        return output_score_bounds(self.outputs, outputs, self.names, bound=bound)


def _fidelity_meta(cosines: Mapping[str, float], threshold: float, feeds: int) -> dict[str, Any]:
    if not feeds:
        return {"checked": False, "why": "no check feeds were given"}
    return {
        "checked": True,
        "metric": f"per output vs fp32 on ONNX Runtime CPU, each feed one sample: the guard's {SCORE_DEFINITION}",
        "feeds": feeds,
        "threshold": threshold,
        "cosine": {name: round(value, 6) for name, value in cosines.items()},
        "passed": all(value >= threshold for value in cosines.values()),
    }


class _SearchResult(Protocol):
    @property
    def ok(self) -> bool: ...

    def summary(self, label: str) -> dict[str, Any]: ...


_R = TypeVar("_R", bound=_SearchResult)


def _prefix_search(order: Sequence[str], attempt: Callable[[set[str]], _R], deadline: float,
                   attempts: list[dict[str, Any]], before: _R, longest: float = 0.0, resumed: bool = False) -> _R:
    """Greedy search for the nodes a conversion must leave in fp32, given `attempt(kept_fp32)`.

    The longest prefix of `order` that converts and passes (the rest kept fp32) ends at a node that breaks
    the check; keep that node fp32 and look for the next one, until everything else is converted. Each next one is
    looked for by galloping (prefixes 1, 2, 4, ... nodes longer) and then bisecting, not by bisecting the whole rest:
    where culprits come in runs (PP-OCR's detector in static int8: 37 among its first 69 nodes) a culprit costs a
    trial or two instead of log2(nodes), and where they are sparse at most twice the bisection's. Out of
    time, the last passing configuration (its tail in fp32) is kept. Every node fp32 failing ends the search
    at once: then no choice of nodes can help. ``deadline`` is the whole conversion's (time.monotonic()): no trial
    starts that the longest one so far says would end past it, so the conversion keeps to its budget; ``before``
    (the configuration the search starts from) is the answer when there is no time for any; ``longest``, the
    longest trial the caller has seen, sizes the first trials too.

    ``resumed``: ``before`` is the checked, failing result of every node of ``order`` converted (an int8 answer that
    failed fresh samples, searched again on them): neither that configuration nor every node fp32 is tried again.
    Then nothing passing found in time returns ``before``, for the caller to keep its earlier answer, rather than
    an every-node-fp32 answer that would displace it (PicoDet's resumed search once had time for that trial alone).
    """
    culprits: set[str] = set()
    trials = 0

    def trial(k: int) -> _R:
        nonlocal trials, longest
        trials += 1
        begun = time.monotonic()
        result = attempt(culprits | set(order[k:]))
        longest = max(longest, time.monotonic() - begun)
        return result

    def time_left() -> bool:
        return time.monotonic() + longest < deadline

    lo = 0
    if not time_left():
        attempts.append({"search": "not started: the conversion's time budget was spent before it", "passed": False})
        return before
    best = before if resumed else trial(0)
    if not best.ok and not resumed:
        attempts.append(best.summary("every node fp32 (search start)"))
        return best
    full = None
    known_failing = resumed
    while time_left():
        full, known_failing = (before if known_failing else trial(len(order))), False
        if full.ok:
            best = full
            break
        hi = len(order)
        step = 1
        while lo + step < hi and time_left():  # gallop from lo: the next culprit is often a node or two away
            result = trial(lo + step)
            if not result.ok:
                hi = lo + step
                break
            lo, best, step = lo + step, result, step * 2
        while hi - lo > 1 and time_left():
            mid = (lo + hi) // 2
            result = trial(mid)
            if result.ok:
                lo, best = mid, result
            else:
                hi = mid
        if hi - lo > 1 or lo >= len(order):  # out of time (the passing prefix is kept), or nothing left to add
            break
        culprits.add(order[lo])
        lo += 1  # order[:lo] converted but order[lo-1] kept is the configuration `best` already had
    if not best.ok:  # resumed, and nothing passed in time
        attempts.append({"search": f"resumed: no configuration passed in time ({trials} trial(s))", "passed": False,
                         "trials": trials})
        return best
    summary = best.summary(
        f"search: {len(culprits)} node(s) found breaking the check"
        + ("" if best is full else f", nodes from #{lo} of {len(order)} left fp32 (time budget)")
    )
    summary["trials"] = trials
    summary["nodes_kept_fp32"] = sorted(culprits)[:200]
    attempts.append(summary)
    return best
