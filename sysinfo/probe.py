"""Asking a runtime a question in a child process: "does the GPU start?", "does this library load?".

Native runtimes answer such questions by crashing, hanging or printing to stderr as often as by raising.
A child process keeps all three away from the caller, and its stderr holds the reason the caller reports.
The child is `python -m <module> --probe ARGS...` and prints one JSON object on its last `{` line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_probe(module: str, args: list[str], timeout_s: float, what: str) -> tuple[dict[str, Any], str]:
    """(the child's JSON answer, its stderr); a child that hangs or dies answers {"ok": False, "error": ...}."""
    try:
        done = subprocess.run([sys.executable, "-m", module, "--probe", *args], capture_output=True, text=True,
                              timeout=timeout_s, cwd=REPO_ROOT)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return {"ok": False, "error": f"{what} did not finish in {timeout_s:g} s"}, stderr
    answers = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not answers:
        code = done.returncode
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        return {"ok": False, "error": f"{what} died ({how})"}, done.stderr
    return json.loads(answers[-1]), done.stderr
