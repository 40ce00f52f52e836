"""What the build process is doing, told to whoever started it: which artefact, which step, how long so far and
how much of its budget is left.

Why: a run that converts a dozen models can spend a quarter of an hour in `python -m model_zoo.build`; one spinner
saying "building 12 model artefact(s)" for 16 minutes (and nothing at all in a CI log) hides both progress and
a stuck conversion. The build process writes one JSON line per step to the file descriptor its parent names in
ACCELBENCH_PROGRESS_FD (harness.artifacts reads them and shows them); without it, steps go to the log only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

PROGRESS_FD_ENV = "ACCELBENCH_PROGRESS_FD"
log = logging.getLogger("accelbench.zoo")


@dataclass
class _Current:
    what: str
    index: int
    total: int
    started: float
    budget_s: float | None = None
    budget_started: float | None = None


_current: _Current | None = None
_stream: TextIO | None = None


def _sink() -> TextIO | None:
    global _stream
    # popped: the build's own children (pruning, tf2onnx) must not inherit a descriptor number that is not theirs
    if _stream is None and (fd := os.environ.pop(PROGRESS_FD_ENV, None)):
        with contextlib.suppress(OSError, ValueError):  # not ours to write: say nothing rather than fail a build
            _stream = os.fdopen(int(fd), "w", buffering=1)
    return _stream


@contextlib.contextmanager
def artefact(what: str, index: int, total: int) -> Iterator[None]:
    """The artefact being built (``what``: "ppocr_det int8 onnx"), ``index`` of ``total`` in this build."""
    global _current
    _current = _Current(what, index, total, time.monotonic())
    step("starting")
    try:
        yield
    finally:
        _current = None


def budget(seconds: float) -> None:
    """The current artefact's conversion runs under a wall-clock budget of ``seconds`` from now."""
    if _current is not None:
        _current.budget_s, _current.budget_started = seconds, time.monotonic()


def step(text: str) -> None:
    """The current artefact has reached ``text`` ("calibrating on 64 samples", "trial 7 of the node search")."""
    now = time.monotonic()
    event: dict[str, Any] = {"step": text}
    if _current is not None:
        event.update(what=_current.what, index=_current.index, total=_current.total,
                     elapsed_s=round(now - _current.started, 1))
        if _current.budget_s is not None and _current.budget_started is not None:
            event.update(budget_s=_current.budget_s,
                         budget_left_s=round(_current.budget_s - (now - _current.budget_started), 1))
    log.info("progress: %s", format_event(event))
    sink = _sink()
    if sink is not None:
        with contextlib.suppress(OSError):  # the parent stopped listening: the build goes on
            sink.write(json.dumps(event) + "\n")


def format_event(event: dict[str, Any]) -> str:
    """One line: "[3/12] ppocr_det int8 onnx: trial 7 of the node search (41 s; 199 s of the 240 s budget left)"."""
    head = f"[{event['index']}/{event['total']}] {event['what']}: " if "what" in event else ""
    times = []
    if "elapsed_s" in event:
        times.append(f"{event['elapsed_s']:.0f} s")
    if "budget_s" in event:
        times.append(f"{max(event['budget_left_s'], 0):.0f} s of the {event['budget_s']:.0f} s budget left")
    return head + str(event.get("step", "")) + (f" ({'; '.join(times)})" if times else "")
