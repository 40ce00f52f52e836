"""What native runtimes write to file descriptor 2: the only place some of them say why they failed.

LiteRT's C++ logging (which GPU adapter it chose, why a delegate refused a graph) never reaches Python's
exceptions, which arrive as a bare `RuntimeError`. Adapters capture the descriptor around such calls and turn
the telling line into the case's reason.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator

STATIC_SHAPES = "only supports static-sized tensors"


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[Callable[[], str]]:
    """Capture what native code writes to file descriptor 2, then pass it on to the real stderr (worker logs
    keep it). Python's sys.stderr is not enough: C++ logging writes to the descriptor directly."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        text = ""
        try:
            yield lambda: text
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode(errors="replace")
            os.write(2, text.encode())


def static_shapes_reason(native_log: str, who: str) -> str | None:
    """The reason for TFLite's 'delegate only supports static-sized tensors' refusal, in words; else None."""
    if STATIC_SHAPES not in native_log:
        return None
    return (f"{who} needs static tensor shapes, and this model computes a shape at run time (typically a Flatten "
            "or Reshape on the dynamic batch dimension); export it with a fixed batch size")
