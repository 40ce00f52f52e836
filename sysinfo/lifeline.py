"""Child processes (workers, the zoo's build) die with the harness that started them, even when it is killed by
SIGKILL: an orphaned worker would go on measuring and load the CPU under the cases of a resumed run.

The child asks the kernel itself (prctl PR_SET_PDEATHSIG) as the first thing it does, rather than through
Popen's preexec_fn: that runs between fork and exec while the parent has threads (rich's status refresher),
which Python documents as unsafe.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PARENT_ENV = "ACCELBENCH_PARENT_PID"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def child_env(env: dict[str, str]) -> dict[str, str]:
    """The environment for a child that should die with this process."""
    return {**env, PARENT_ENV: str(os.getpid())}


def die_with_parent() -> None:
    """In the child: SIGKILL when the parent named by the environment dies; exit now if it already has."""
    parent = os.environ.get(PARENT_ENV)
    if not parent or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        return  # not permitted here: the parent's own cleanup (killpg on exit) still applies
    if os.getppid() != int(parent):  # the parent died before the request took effect
        os._exit(1)
