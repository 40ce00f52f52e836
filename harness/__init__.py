"""accelbench's engine: scenarios, isolated workers, measurement, statistics, results and front doors."""

__version__ = "0.1.0"
