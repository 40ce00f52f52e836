"""Size limits set from the environment: what a mistyped path or a hostile description may cost is bounded, and a
user with a real need raises the bound (a number of GiB, or "inf" for none)."""

from __future__ import annotations

import os


def gib_limit(variable: str, default_gib: float) -> int:
    """Bytes allowed by ``$variable`` (GiB), else ``default_gib``. Zero, negative, NaN or unreadable is a mistake,
    not "refuse everything": the default then holds; "inf" means no limit (8 EiB is beyond any file system or
    memory)."""
    try:
        gib = float(os.environ.get(variable, default_gib))
    except ValueError:
        gib = default_gib
    if not gib > 0:
        gib = default_gib
    return int(min(gib, 2.0**33) * 2**30)


# One input's data for one call (a feed), at the case's batch size: generated in every worker that runs the case,
# in the fidelity reference and in calibration. A shape typed with one digit too many asks for gigabytes.
DEFAULT_MAX_FEED_GIB = 2
MAX_FEED_ENV = "ACCELBENCH_MAX_FEED_GIB"


def max_feed_bytes() -> int:
    return gib_limit(MAX_FEED_ENV, DEFAULT_MAX_FEED_GIB)
