"""A worker driven over a pipe: the channel every same-sitting comparison talks to its sides through.

Commands go to the worker's stdin and replies come back on its stdout, one JSON line each (harness.worker's
``serve`` task). Everything that can go wrong on the way is turned into one reason: a worker that exits, hangs,
prints something that is no reply, or sends a line without end (held whole, it would exhaust the coordinator).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from harness.launch import CannotStart, exit_reason, start_worker
from harness.protocol import (
    ErrorReply,
    Quit,
    ReadyReply,
    ServeCommand,
    ServeJob,
    ServeReply,
    WorkerReport,
    reply_from_wire,
)

QUIT_GRACE_S = 2.0
# The longest reply line a side's worker may send: past it the side is broken (an interpreter that writes to stdout
# without a newline was kept in memory whole, 8 GB in 25 s). The largest legitimate reply is a duet round's: measured
# on a one-node ONNX model (190,000 inferences a second a side) at 4.0 MB per round second, 21 bytes an inference;
# a reply records at most MAX_REPLY_SAMPLES inferences: 20 MB measured, 42 MB even were every number 19 digits long.
# 64 MB is above both; the line is held while it comes, then parsed (Python's objects for a line of numbers take
# about 4-5 times its size), so the limit is what a side can cost the coordinator: under half a gigabyte.
MAX_REPLY_BYTES = 64_000_000


class SideFailure(Exception):
    """A side's worker failed, crashed or hung; the message is the case's reason."""

    def __init__(self, side: str, reason: str, at_start: bool = False) -> None:
        super().__init__(f"{side} side: {reason}")
        self.side, self.at_start = side, at_start


class SideWorker:
    """One side's worker process and its command channel (JSON lines on stdin and stdout)."""

    def __init__(self, side: str, python: str, job: ServeJob | dict[str, Any], work_dir: Path, name: str,
                 cores: list[int] | None = None) -> None:
        self.side, self.python = side, python
        try:
            wire = job.to_wire() if isinstance(job, ServeJob) else {**job, "task": "serve"}
            launched = start_worker(wire, work_dir, name, piped=True, python=python, cores=cores)
        except CannotStart as error:  # a python= that is not an interpreter (a bad shebang, no such file)
            raise SideFailure(side, f"cannot start {python}: {error.reason}", at_start=True) from None
        self.process, self.result_path, self.log_path = launched.process, launched.result_path, launched.log_path
        self._log = launched.log
        self._buffer = b""
        self.started = False

    def send(self, command: ServeCommand) -> None:
        try:
            assert self.process.stdin is not None
            self.process.stdin.write((json.dumps(command.to_wire()) + "\n").encode())
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise SideFailure(self.side, self._why_gone(), not self.started) from None

    def receive(self, timeout_s: float, cap_at: float | None = None) -> ServeReply:
        """The next reply; a hang past ``timeout_s`` or an exit becomes a SideFailure with the reason. No reply by
        ``cap_at`` (a perf_counter time: the case's time cap) kills the worker and raises TimeUp: nobody's fault."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        asked = time.perf_counter()
        deadline = asked + timeout_s
        chunks, end = [self._buffer], self._buffer.find(b"\n")
        held = len(self._buffer)
        ends = min(deadline, cap_at) if cap_at is not None else deadline
        while end < 0:  # only each new chunk is searched: a duet's reply can be megabytes
            if held > MAX_REPLY_BYTES:
                raise self._overlong()
            # what has arrived is read first, so that a reply that made it before the cap or the timeout counts
            if not select.select([fd], [], [], max(ends - time.perf_counter(), 0.0))[0]:
                if time.perf_counter() < ends:
                    continue
                self.kill()
                if cap_at is not None and cap_at <= deadline:
                    raise TimeUp(self.side, time.perf_counter() - asked)
                what = "did not finish loading" if not self.started else "stopped answering"
                raise SideFailure(self.side, f"worker {what} within {timeout_s:g} s (hung) and was killed; "
                                  f"log: {self.log_path}", not self.started)
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise SideFailure(self.side, self._why_gone(), not self.started)
            newline = chunk.find(b"\n")
            if newline >= 0:
                end = held + newline
            chunks.append(chunk)
            held += len(chunk)
        if end > MAX_REPLY_BYTES:
            raise self._overlong()
        data = b"".join(chunks)
        line, self._buffer = data[:end], data[end + 1:]
        try:
            reply = reply_from_wire(json.loads(line))
        except ValueError:  # not JSON, or JSON that is no reply (ProtocolError is a ValueError)
            reply = None
        if reply is None:  # a wrapper script or a sitecustomize that prints to stdout
            self.kill()
            shown = line[:200].decode(errors="replace")
            raise SideFailure(self.side, f"worker sent {shown!r} instead of a reply (does {self.side}'s python print "
                              f"at start-up?); log: {self.log_path}", not self.started)
        if isinstance(reply, ReadyReply):
            self.started = True
        elif isinstance(reply, ErrorReply):
            raise SideFailure(self.side, f"worker refused a command: {reply.error}", not self.started)
        return reply

    def _overlong(self) -> SideFailure:
        """The worker is killed: whatever it writes without a newline is no reply (and would be held whole)."""
        self.kill()
        return SideFailure(self.side, f"its worker sent a reply over {MAX_REPLY_BYTES // 10**6} MB without a newline "
                           f"(a reply is one JSON line: does the {self.side} side's python={self.python} print to "
                           f"stdout?); log: {self.log_path}", not self.started)

    def ask(self, command: ServeCommand, timeout_s: float, cap_at: float | None = None) -> ServeReply:
        self.send(command)
        return self.receive(timeout_s, cap_at)

    def _why_gone(self) -> str:
        """Why the worker is gone: its own one-line reason, a signal, or its exit status and log tail."""
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
        code = self.process.returncode
        try:
            report: WorkerReport | None = WorkerReport.from_wire(json.loads(self.result_path.read_text()), "serve")
        except (OSError, ValueError):  # no result file, or one that is not a worker's report
            report = None
        if report is not None and not report.ok:
            return f"{report.reason} (log: {self.log_path})"
        return exit_reason(code, self.log_path)

    def kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def close(self) -> None:
        """Ask the worker to quit; kill it if it does not within a moment (or at once if it is stuck)."""
        if self.process.poll() is None:
            try:
                self.send(Quit())
                self.process.wait(timeout=QUIT_GRACE_S)
            except (SideFailure, subprocess.TimeoutExpired):
                pass
        self.kill()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        self._log.close()


class TimeUp(Exception):
    """The case's time cap was reached inside a round: that round is dropped and the comparison judged. ``side``:
    the side whose reply was awaited, silent for ``silent_s`` (None: a slice pair that would not fit, not begun);
    ``starting``: the reply awaited was a start-up's."""

    def __init__(self, side: str | None, silent_s: float, starting: bool = False) -> None:
        super().__init__(side)
        self.side, self.silent_s, self.starting = side, silent_s, starting
