"""The measurement defaults, once: the scenario schema offers them and the worker falls back on them.

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
