"""The one exception type the zoo raises for problems a user can act on.

In a module of its own so that `model_zoo.calibration` and `model_zoo.artifacts` can both raise it without
importing each other; `model_zoo.artifacts` re-exports it, which is where callers import it from.
"""

from __future__ import annotations


class ArtifactError(Exception):
    """A model or artefact problem worth showing to the user as is (names the model/file and the cause)."""
