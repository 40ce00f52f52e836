"""Results over time and between runs: run comparison, change points in nightly histories."""
