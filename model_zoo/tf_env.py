"""The one place that imports TensorFlow, quietly.

TensorFlow, absl and oneDNN print start-up chatter that would bury the harness's own output (and, in
`python -m model_zoo.build`, the JSON the parent parses), so the log level is set before the first import.
An explicit TF_CPP_MIN_LOG_LEVEL from the user is respected.
"""

from __future__ import annotations

import logging
import os
from types import ModuleType


def import_tf() -> ModuleType:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.get_logger().setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # absl comes with TensorFlow today; its absence only costs log noise
        pass
    return tf
