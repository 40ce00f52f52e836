"""Registers the accelbench pytest plugin for in-repo runs when the package is not pip-installed.

An installed accelbench registers it through its pytest11 entry point; loading it twice would fail.
"""

from importlib.metadata import entry_points

if not any(ep.value == "harness.pytest_plugin" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["harness.pytest_plugin"]
