"""The A/B record: one per case of `accelbench ab`, typed like the results record (results.record), written one JSON
line per case to the run folder's ab.jsonl.

A record keeps what the verdict rests on, so that it can be checked afterwards: both sides' environments (the
interpreter and library versions each worker actually ran with, not what was asked for), every round's log-ratio
and every slice pair's medians with its time and order, and the estimate computed from them.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from results.record import OneLine, RecordError, validate_leniently

AbStatus = Literal["compared", "refused", "failed", "skipped"]  # skipped: the case cannot run here

# What each figure of an A/B record can be when a comparison produced it (checked on reading, as results.jsonl's
# timings are: an edited NaN ratio printed "nan" in the report, a negative one "-1.000"). kind: (test, words).
_FIGURES: dict[str, tuple[Any, str]] = {
    "positive": (lambda v: math.isfinite(v) and v > 0, "a positive finite number"),
    "positive or infinite": (lambda v: v > 0, "a positive number"),  # an interval without an upper end
    "at least 0": (lambda v: math.isfinite(v) and v >= 0, "a finite number of 0 or more"),
    "at least 0 or infinite": (lambda v: v >= 0, "a number of 0 or more"),  # no detectable effect at all
    "finite": (math.isfinite, "a finite number"),
    "probability": (lambda v: 0 <= v <= 1, "a probability between 0 and 1"),
    "share": (lambda v: 0 < v < 1, "a share between 0 and 1"),
}
_RECORD_FIGURES = {"ratio": "positive", "ci_low": "at least 0", "ci_high": "positive or infinite",
                   "p_value": "probability", "t_test_p": "probability", "mde": "at least 0 or infinite",
                   "threshold": "share", "min_effect": "at least 0", "alpha": "share", "confidence": "share",
                   "wall_s": "at least 0", "measured_s": "at least 0", "started_at": "finite", "finished_at": "finite",
                   "batch_size": "positive"}
_SIDE_FIGURES = {"median_ms": "positive", "geomean_ms": "positive", "slices": "at least 0",
                 "inferences": "at least 0", "startup_s": "at least 0"}
_PAIR_FIGURES = {"at_s": "at least 0", "base_ms": "positive", "new_ms": "positive"}
AbVerdict = Literal["slower", "faster", "unchanged", "cannot tell", "broken"]
REGRESSED = ("slower", "broken")


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SideInfo(_Part):
    """One side as asked for (``spec``) and as it ran (interpreter, libraries, artefact, what the backend used)."""

    name: Literal["base", "new"]
    spec: dict[str, Any]
    description: str
    python: str | None = None
    python_version: str | None = None
    libraries: dict[str, str] = Field(default_factory=dict)
    artifact: str | None = None
    backend_info: dict[str, Any] = Field(default_factory=dict)
    inputs: list[dict[str, Any]] = Field(default_factory=list)
    median_ms: float | None = None  # median of this side's slice medians over all rounds
    # geometric mean of the same: what the tables print, because new/base of these agrees with the paired ratio,
    # where each side's median can fall in another mode of a machine whose speed is bimodal between rounds
    # (measured: silero_vad, medians 0.160 vs 0.242 ms beside a paired ratio of 1.068)
    geomean_ms: float | None = None
    slices: int = 0
    inferences: int = 0
    startup_s: float = 0.0  # summed over this side's worker start-ups and session loads (warm-up included)


class SlicePair(_Part):
    """Two adjacent slices, one per side (lock-step), or one time window of both (duet)."""

    at_s: float  # seconds since the case started
    base_ms: float  # the slice's median latency
    new_ms: float
    base_first: bool | None = None  # lock-step: which side ran first; None in a duet (both ran at once)


class AbRound(_Part):
    """A fresh pair of workers or sessions: the unit of replication."""

    index: int
    log_ratio: float  # median of the pairs' log(new / base)
    pairs: list[SlicePair]
    base_cores: list[int] | None = None  # the cores each side was pinned to (lock-step: the same)
    new_cores: list[int] | None = None


class AbRecord(_Part):
    case_id: str
    scenario: str
    model: str
    backend: str
    backend_label: str
    precision: str
    batch_size: int
    # what each slice timed: one stream (latency, throughput) or every stream of a concurrent case at once; records
    # written before the mode was recorded read as latency (their sides were all timed as one stream)
    mode: str = "latency"
    method: Literal["lockstep", "duet"]
    status: AbStatus
    verdict: AbVerdict | None = None
    reason: OneLine | None = None
    base: SideInfo
    new: SideInfo
    threshold: float
    min_effect: float
    alpha: float
    confidence: float
    ratio: float | None = None  # new / base, the Hodges-Lehmann estimate over the rounds' log-ratios
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None  # exact Wilcoxon signed-rank test over the rounds
    t_test_p: float | None = None  # a t-test on the same values, for reference
    mde: float | None = None  # the minimum detectable effect at 95 % power, a share (0.02 = 2 %); inf: none
    rounds: list[AbRound] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)
    wall_s: float = 0.0  # the whole comparison, worker start-ups included
    measured_s: float = 0.0  # of which slices were running
    started_at: float | None = None
    finished_at: float | None = None
    env_id: str | None = None

    @property
    def regressed(self) -> bool:
        return self.verdict in REGRESSED

    def to_json(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        # JSON has no infinity (jq and browsers refuse it): an MDE or interval end without bound is written null,
        # and read back as infinite ("no detectable effect at all", "no upper bound")
        for name in ("mde", "ci_high"):
            if getattr(self, name) is not None and not math.isfinite(getattr(self, name)):
                data[name] = None
        return data

    @classmethod
    def read(cls, data: dict[str, Any], where: str) -> AbRecord:
        """A record from ab.jsonl, as leniently as a results record (fields a newer version added are dropped); a
        malformed one is one ValueError naming ``where`` and the field."""
        try:
            record = validate_leniently(cls, data)
        except RecordError as error:
            raise ValueError(f"{where}: {error}") from None
        if record.mde is None and record.status == "compared":
            record.mde = math.inf
        if record.ci_high is None and record.ci_low is not None:
            record.ci_high = math.inf
        if problem := record.figure_problem():
            raise ValueError(f"{where}: {problem}")
        return record

    def figure_problem(self) -> str | None:
        """The first figure no comparison can produce (NaN, infinite where the figure is finite, negative or zero
        where it is a time or a ratio), named by its path, or None."""
        figures: list[tuple[str, Any, str]] = [(name, getattr(self, name), kind)
                                               for name, kind in _RECORD_FIGURES.items()]
        for side in (self.base, self.new):
            figures += [(f"{side.name}.{name}", getattr(side, name), kind) for name, kind in _SIDE_FIGURES.items()]
        for index, one in enumerate(self.rounds):
            figures.append((f"rounds.{index}.log_ratio", one.log_ratio, "finite"))
            for number, pair in enumerate(one.pairs):
                figures += [(f"rounds.{index}.pairs.{number}.{name}", getattr(pair, name), kind)
                            for name, kind in _PAIR_FIGURES.items()]
        for name, value, kind in figures:
            test, words = _FIGURES[kind]
            if value is not None and not test(value):
                return f"{name}: {value} is not {words}"
        return None
