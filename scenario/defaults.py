"""The measurement, A/B and race defaults, once: the scenario schema offers them, the command line's settings and
the worker fall back on them.

Plain values, no pydantic, so that the worker (whose start-up is itself measured) can import them cheaply.
They follow TFLite's benchmark_model: at least 50 runs and 1 s of steady state after a short warm-up.
"""

from __future__ import annotations

MEASURE_DEFAULTS: dict[str, int | float] = {
    "warmup_runs": 5,
    "warmup_seconds": 0.5,
    "min_runs": 50,
    "min_seconds": 1.0,
    "max_seconds": 30.0,
    "timeout_s": 300.0,
    "streams": 2,
    "seed": 0,
}

# The most threads a case (a scenario's backend, or an A/B side) may ask for. The largest machines this runs on
# (two-socket servers) have a few hundred hardware threads, 768 at most today: more threads than cores only adds
# switching, so a bigger number is a typo, not a setting, and 100,000 crashed the runtime's thread pool.
MAX_THREADS = 1024


# `accelbench ab` and a scenario's `ab:` block (scenario.schema.AbSpec, harness.ab.AbSettings)
AB_DEFAULTS: dict[str, str | int | float] = {
    "method": "lockstep",
    "threshold": 0.05,  # the change that matters
    "alpha": 0.01,
    "max_seconds": 60.0,  # per case, worker start-ups included
    "min_rounds": 8,  # the exact signed-rank test reaches p < 0.01 from eight rounds on
    "max_rounds": 100,
    "round_seconds": 1.0,  # measured time of a round, both sides together
    "slice_ms": 50.0,
    "fresh": "worker",
    "stop_mde": 0.6,
    "warmup_seconds": 0.3,
    "seed": 0,
}
# A run's races (scenario.schema.RaceSpec, harness.race.RaceSettings): each group's passing configurations in one
# sitting. Fresh workers each round, as ab: with fresh sessions in the same workers an identical copy of a
# configuration stayed 11 % slower for ten rounds running under load (benchmarks/race.py), a bias of the process
# that only a new process draws again. With every side on one shared core the bias shrinks but stays: ten
# sittings of 12 rounds each way, an A/A's sitting means spread by 1.4 % with fresh sessions where the rounds'
# own spread predicts 0.8 % (fresh workers: 1.3 % against 1.1 %), enough to split an A/A now and then; sessions
# are cheaper (1.6 s a round of three against 2.5 s), not sound.
RACE_DEFAULTS: dict[str, str | int | float] = {
    "threshold": 0.05,
    "alpha": 0.01,  # family-wise: over all looks and all comparisons of one race
    "looks": 2,  # results.race_stats: a third look never came within max_seconds, and each one delays the first
    "max_seconds": 45.0,  # per group, worker start-ups included (not measure.max_seconds, which is per case)
    "max_rounds": 100,
    "round_seconds": 1.0,  # measured time of a round, all configurations together
    "slice_ms": 50.0,
    "fresh": "worker",
    # a configuration whose own p50 is over this factor times the fastest's, their in-run intervals apart, is
    # slower beyond any doubt: the speed of this kind of machine moves by 5-23 % between runs (README), so 1.5x
    # is twice the largest swing measured; it stays out of the race, read "slower (sequential)"
    "gross_factor": 1.5,
    # a race's side warms up for this long and this many runs after the first inference (both), not for the case's
    # warmup_runs: those are for one measurement, and a race warms every side up in every round (resnet50 at batch
    # 8, 330 ms a run, spent 2 s a side a round in the case's five). Measured run by run from the first inference,
    # three loads each at batch 8, threads 2: ONNX Runtime's second run is still 1.03-1.42x its steady time
    # (mobilenet_v2, efficientnet_b0, resnet50) and its third within 0.97-1.13x; XNNPACK's second is steady. So
    # the slices start at the third run at the earliest; the 0.1 s floor gives fast models many more
    "warmup_seconds": 0.1,
    "warmup_runs": 1,
    "seed": 0,
}
ROUND_SECONDS_MAX, SLICE_MS_MAX = 600.0, 60_000.0


def parse_share(value: object) -> float:
    """A share as a user writes it, one rule for the scenario and the command line: "5%", 5 and 0.05 all mean
    five per cent (a bare number of 1 or more is read as per cent). ValueError if it is no share below 100 %."""
    text = str(value).strip()
    try:
        number = float(text.removesuffix("%"))
    except ValueError:
        raise ValueError(f"{value!r} is not a share like 5% or 0.05") from None
    share = number / 100 if text.endswith("%") or number >= 1 else number
    if not 0 < share < 1:
        raise ValueError(f"{value!r} is not a share between 0 and 100 %")
    return share
