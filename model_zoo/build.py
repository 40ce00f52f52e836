"""`python -m model_zoo.build`: build artefacts in a process of their own.

The harness keeps TensorFlow out of its own process by sending the requests here on stdin (a JSON list of
`request_to_json` objects: model, format, precision, and where not at their defaults, compression such as
"prune:0.75" or "prune:2:4" and, for int8, calibration {"samples": N, "source": "dataset" | "random" | an
absolute .npz path}) and reading the answer from the LAST line of stdout: a JSON list, in request
order, of `{"path": ...}` or `{"error": ...}`. One process serves the whole list, so TensorFlow is imported
once and a SavedModel built for one format is reused by the next. Logs go to stderr; so does anything
TensorFlow writes to stdout while building, which would otherwise corrupt the answer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from model_zoo import progress
from model_zoo.artifacts import ArtifactError, build, lookup, request_from_json, unsupported_reason
from sysinfo.lifeline import die_with_parent

log = logging.getLogger("accelbench.zoo")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_zoo.build", description=__doc__.split("\n")[0])
    parser.add_argument("--log-level", default="INFO", help="logging level for stderr (default INFO)")
    args = parser.parse_args(argv)

    die_with_parent()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(), format="%(name)s: %(message)s")

    try:
        requests = json.load(sys.stdin)
        if not isinstance(requests, list):
            raise ValueError("expected a JSON list of requests")
    except ValueError as exc:
        print(json.dumps({"error": f"cannot read requests from stdin: {exc}"}))
        return 2
    with _stdout_to_stderr():
        answers = [_answer(item, index, len(requests)) for index, item in enumerate(requests, 1)]
    print(json.dumps(answers))
    return 0


def _answer(item: Any, index: int, total: int) -> dict[str, str]:
    try:
        req = request_from_json(item)
        reason = unsupported_reason(req)
        if reason is not None:
            return {"error": reason}
        name = req.model.zoo or Path(req.model.path or "").name  # the file's name: its cache path says nothing
        with progress.artefact(f"{name} {req.precision} {req.format}", index, total):
            return {"path": str(lookup(req) or build(req))}
    except ArtifactError as exc:
        return {"error": str(exc)}
    except Exception as exc:  # a bug, not a model problem: keep the traceback for whoever debugs it
        log.exception("unexpected failure on %r", item)
        return {"error": f"unexpected {type(exc).__name__}: {exc}"}


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Point file descriptor 1 at stderr, so that C++ and Python writes alike stay off the answer line."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


if __name__ == "__main__":
    sys.exit(main())
