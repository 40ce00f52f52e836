"""accelbench's engine: scenarios, isolated workers, measurement, statistics, results and front doors."""

from sysinfo import ACCELBENCH_VERSION as __version__  # noqa: F401  (one version, in the leaf)
