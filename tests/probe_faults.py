"""A probe child that misbehaves on request, for tests of sysinfo.probe.run_probe."""

import json
import os
import signal
import sys
import time

if __name__ == "__main__" and sys.argv[1:2] == ["--probe"]:
    action = sys.argv[2]
    if action == "segfault":
        print("native: about to crash", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGSEGV)
    elif action == "hang":
        time.sleep(60)
    print("noise that is not the answer")
    print(json.dumps({"ok": action == "ok", "said": action}))
