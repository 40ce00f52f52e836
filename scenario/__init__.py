"""Scenario files: the schema, the line-aware YAML loader, checks against the backend and model registries,
and expansion into cases."""
