"""The results contract: one run folder with results.jsonl, env.json and benchmark.json (race.jsonl when its
groups were raced, budgets.jsonl when its cases had performance budgets, and ab.jsonl after an `accelbench ab`).

Records are appended and fsync'ed one by one, so killing a run loses no finished case; a reader skips a
partially written last line instead of failing on it.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import stat
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from results.ab_record import AbRecord
from results.budgets import BudgetVerdict
from results.environment import EnvFileError, check_environment
from results.race_record import RaceRecord
from results.record import Record, RecordError
from sysinfo import ACCELBENCH_VERSION
from sysinfo.envinfo import env_differences

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
T = TypeVar("T")
MIN_FREE_MB = 64  # a smoke run writes a few MB; a long scenario's raw samples, tens
LOCK_NAME = ".accelbench.lock"  # held (flock) by the one process that writes the folder; readers ignore it
LOCK_INFO_LIMIT = 4096  # bytes of the holder's pid and command line read back for a refused writer's message


class RunFolderProblem(OSError):
    """The results folder cannot take a run (full, unwritable, another machine's): one line that names it."""


class DiskFull(RunFolderProblem):
    """The results folder's disk filled up during the run: what is recorded stays, --resume runs the rest."""


def safe_file_name(text: str, limit: int = 150) -> str:
    """`text` as one file-name component: labels and case ids come from scenarios and file names and may hold
    "/" (which would nest folders), spaces or markup. A name that had to change, or was too long, ends with a
    hash of the original, so two labels that differ only in such characters never share a file."""
    safe = re.sub(r"[^A-Za-z0-9._+-]", "_", text).strip(".") or "_"
    if safe != text or len(safe) > limit:
        safe = f"{safe[:limit]}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
    return safe


class RunLock:
    """The run folder's lock, held by the one process that writes it, for as long as that process lives.

    Two writers of one folder (two `run --resume` at once) would each run the cases the other is running, and leave
    two records of one case. The lock is an flock on a file inside the folder: the kernel drops it when its holder
    ends however it ends (kill -9 included), so a stale lock never stands in the way of a resume, and no pid file
    has to be guessed dead. The holder writes its pid and command line into the file, for the refused writer's
    message; the file itself is never removed (removing a lock file races with the next locker)."""

    def __init__(self, run_dir: Path) -> None:
        """Take the lock of ``run_dir`` (an existing folder) or raise RunFolderProblem: held by another process
        (named by pid and command line), or a lock file that is not a regular file, or one that cannot be made."""
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:  # no link followed, no FIFO or device waited on: the lock file is ours or refused
            self._fd = os.open(self.path, flags, 0o644)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise RunFolderProblem(f"{self.path}: a symbolic link where the run folder's lock file should be; "
                                       "remove it") from None
            raise RunFolderProblem(f"cannot write results to {run_dir}: its lock file {LOCK_NAME} cannot be made "
                                   f"({error.strerror or error})") from None
        try:
            if not stat.S_ISREG(os.fstat(self._fd).st_mode):
                raise RunFolderProblem(f"{self.path}: not a regular file where the run folder's lock file should "
                                       "be; remove it")
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunFolderProblem(
                    f"{run_dir} is being written by another process, held by {self._holder()}: one writer at a "
                    "time (wait for it to end, or stop it; a resumed run goes on where it stopped)") from None
            except OSError as error:  # a file system without locks (some network mounts)
                raise RunFolderProblem(f"cannot lock {self.path} ({error.strerror or error}): write results to a "
                                       "local disk") from None
            self._write_holder()
        except BaseException:
            self.release()
            raise

    def _holder(self) -> str:
        """ "pid N (command line)": the pid from the kernel's table of locks, the command line as the holder wrote
        it. The file may still name the previous holder for a moment (the lock is taken before the file is
        written), so it is read again until it names the kernel's pid."""
        holder = self._kernel_holder()
        pid, command = None, None
        for _ in range(40):
            pid, command = self._written_holder()
            if holder is None or pid == holder:
                break
            time.sleep(0.025)
        if holder is not None and pid != holder:
            pid, command = holder, _command_of(holder)
        if pid is None:
            return "a process that has not named itself yet"
        command = " ".join((command or "?").split())  # one line, whatever the command line held
        command = command if len(command) <= 200 else command[:199] + "…"
        return f"pid {pid} ({command})"

    def _written_holder(self) -> tuple[int | None, str | None]:
        try:
            data = json.loads(os.pread(self._fd, LOCK_INFO_LIMIT, 0).decode("utf-8", errors="replace"))
            return int(data["pid"]), str(data["command"])
        except (OSError, ValueError, TypeError, KeyError, OverflowError):
            return None, None

    def _kernel_holder(self) -> int | None:
        """The pid holding the flock on our lock file, from /proc/locks (Linux); None where it cannot be told."""
        try:
            info = os.fstat(self._fd)
            table = Path("/proc/locks").read_text(encoding="ascii", errors="replace")
        except OSError:
            return None
        exact = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
        found: dict[str, set[int]] = {"exact": set(), "inode": set()}
        for line in table.splitlines():
            parts = line.split()
            if len(parts) < 6 or parts[1] != "FLOCK" or "->" in parts or not parts[4].isdigit():
                continue  # another kind of lock, or a process waiting for one
            if parts[5] == exact:
                found["exact"].add(int(parts[4]))
            elif parts[5].rsplit(":", 1)[-1] == str(info.st_ino):  # a file system that shows another device number
                found["inode"].add(int(parts[4]))
        for pids in found.values():
            if len(pids) == 1:
                return pids.pop()
        return None

    def _write_holder(self) -> None:
        # `accelbench run ...` as sys.argv has it; `python -m pytest ...` as the interpreter was called
        argv = list(sys.orig_argv if sys.orig_argv[1:2] in (["-m"], ["-c"]) else sys.argv) or ["?"]
        argv[0] = Path(argv[0]).name
        data = json.dumps({"pid": os.getpid(), "command": " ".join(argv)}).encode()
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)
        except OSError:  # a full disk: the lock holds all the same, only its message names no one
            pass

    def release(self) -> None:
        """Give the lock up (closing the file drops the flock); a second call does nothing."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __del__(self) -> None:
        self.release()


def _command_of(pid: int) -> str | None:
    """A process's command line as ps shows it, or None when it cannot be read (gone, or another user's)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip() or None
    except OSError:
        return None


def new_run_dir(root: Path, scenario_name: str) -> Path:
    """A fresh folder under root, named after the scenario and the time."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    safe_name = safe_file_name(scenario_name)
    candidate = root / f"{safe_name}-{stamp}"
    suffix = 1
    while candidate.exists():
        suffix += 1
        candidate = root / f"{safe_name}-{stamp}-{suffix}"
    return candidate


class RunStore:
    """Append-only store of one run's records."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.results_path = self.run_dir / "results.jsonl"
        self.ab_path = self.run_dir / "ab.jsonl"
        self.race_path = self.run_dir / "race.jsonl"
        self.budgets_path = self.run_dir / "budgets.jsonl"
        self.logs_dir = self.run_dir / "logs"
        self._lock: RunLock | None = None

    def open(self, env: dict[str, Any], scenario: dict[str, Any]) -> None:
        """Create the folder, lock it and write env.json; fails early and clearly if the folder already holds files
        (they are the user's or another run's: never overwritten, never mixed with this run's), another process is
        writing it, it is not writable, or its file system is nearly full (RunFolderProblem), before any case runs.

        Race-free between two processes given one folder: the emptiness is checked again under the lock, so one of
        them writes the folder and the other is refused (held, or no longer empty)."""
        self.refuse_if_not_empty()  # first without the lock: a folder of the user's files gets no lock file in it
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._lock = RunLock(self.run_dir)
        try:
            self.refuse_if_not_empty()
            self.logs_dir.mkdir(parents=True, exist_ok=True)
            self.check_free_space()
            self._write_json("env.json", env)
            self._write_json("scenario.json", scenario)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Give up the folder's lock: another process may write it from now on (ending the process does too)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def refuse_if_not_empty(self) -> None:
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise RunFolderProblem(f"{self.run_dir} is a file, not a folder for results")
        try:
            held = sorted(entry.name for entry in self.run_dir.iterdir()
                          if entry.name != LOCK_NAME) if self.run_dir.is_dir() else []
        except OSError as error:
            raise RunFolderProblem(f"cannot read {self.run_dir}: {error.strerror or error}") from None
        if held:
            shown = ", ".join(held[:3]) + (f" and {len(held) - 3} more" if len(held) > 3 else "")
            raise RunFolderProblem(
                f"{self.run_dir} is not empty (it holds {shown}): results go to a new or empty folder, so that "
                "no file is overwritten and no other run's records mix with this one's (accelbench run --resume "
                "RUN_DIR completes an interrupted run in its own folder)")

    def reopen(self, env: dict[str, Any], ab: bool | None = None) -> int:
        """Go on with an interrupted run: same machine and software only, since a resumed run's numbers sit
        beside the first part's. A record torn by a kill mid-write is cut off (its case runs again), so the next
        record starts on a line of its own. Returns the bytes cut. The folder is locked first: another process
        writing it (a second resume) is a RunFolderProblem that names it. ``ab``: whether the writer adds A/B
        comparisons (True) or run records (False); a folder of the other kind is refused (None: not checked)."""
        if not self.run_dir.is_dir():
            raise RunFolderProblem(f"{self.run_dir}: not a run folder to resume (no such folder)")
        self._lock = RunLock(self.run_dir)
        try:
            if ab is not None:
                self.refuse_other_kind(ab)
            return self._reopen(env)
        except BaseException:
            self.close()
            raise

    def _reopen(self, env: dict[str, Any]) -> int:
        env_file = self.run_dir / "env.json"
        try:
            previous = read_small_json(env_file)  # bounded, and never a FIFO that would block forever
            if previous is None:
                raise ValueError(f"{env_file} is missing")
            if self.results_path.exists() and not stat.S_ISREG(self.results_path.stat().st_mode):
                raise ValueError(f"{self.results_path} is not a regular file")
        except (OSError, ValueError) as error:
            raise RunFolderProblem(f"{self.run_dir}: not a run folder to resume ({error})") from None
        if not isinstance(previous, dict):
            raise RunFolderProblem(f"{env_file}: not a JSON object")
        try:
            check_environment(previous)
        except EnvFileError as error:
            raise RunFolderProblem(f"{env_file}: {error}") from None
        # what the fingerprint holds, compared fact by fact: an env_id written by an earlier version (which hashed
        # the kernel build and the exact memory) differs on the very same machine, and the message says what differs
        if differences := env_differences(previous, env):
            shown = "; ".join(differences[:3]) + (f"; and {len(differences) - 3} more" if len(differences) > 3 else "")
            raise RunFolderProblem(f"{self.run_dir} was measured on another machine or software ({shown}): start a "
                                   "new run instead of mixing the two")
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.check_free_space()
        # an A/B folder's comparisons too: a record glued onto a torn one would make the whole file unreadable
        return repair_torn_tail(self.results_path) + repair_torn_tail(self.ab_path)

    def is_ab_folder(self) -> bool:
        """Whether `accelbench ab` (or the pytest door's ab: block) wrote this folder: its scenario.json carries the
        sides and settings, or it holds comparisons."""
        if self.ab_path.exists() or self.ab_path.is_symlink():
            return True
        info = read_small_json(self.run_dir / "scenario.json")
        return isinstance(info, dict) and "ab" in info

    def refuse_other_kind(self, ab: bool) -> None:
        """A/B comparisons go on in an A/B folder, run records in a run folder: a resume of the wrong kind would add
        records no reader of the folder looks at ("0 of 3 cases recorded") and never finish what was started."""
        if self.is_ab_folder() == ab:
            return
        if ab:
            raise RunFolderProblem(f"{self.run_dir} is a run folder (accelbench run wrote it), not an A/B "
                                   f"comparison's: accelbench run --resume {self.run_dir} completes it")
        raise RunFolderProblem(f"{self.run_dir} holds A/B comparisons (accelbench ab wrote it), not a run's cases: "
                               f"accelbench ab --resume {self.run_dir} completes it")

    def raise_if_disk_full(self, failure: str | None) -> None:
        """A case that failed while the results' disk was full failed because of the disk, not of itself (its
        worker writes its result and outputs there): stop the run instead of recording it, so that --resume
        measures it again."""
        if shutil.disk_usage(self.run_dir).free < 2**20:
            raise DiskFull(f"the disk of {self.run_dir} is full (No space left on device; the case failed with: "
                           f"{failure})")

    def check_free_space(self) -> None:
        free_mb = shutil.disk_usage(self.run_dir).free / 2**20
        if free_mb < MIN_FREE_MB:
            raise RunFolderProblem(f"only {free_mb:.1f} MB free for the results in {self.run_dir}; a run needs at "
                                   f"least {MIN_FREE_MB} MB (records keep every raw sample, workers write logs)")

    def append(self, record: Record) -> None:
        """One record, fsync'd: a crash later loses nothing already measured. (The record checked its fields as
        they were set: a misspelt or unknown one never gets this far.)"""
        self._append_line(self.results_path, record.to_json())

    def append_ab(self, record: AbRecord) -> None:
        """One A/B record (accelbench ab), to ab.jsonl, as safely as a results record."""
        self._append_line(self.ab_path, record.to_json())

    def ab_records(self) -> list[AbRecord]:
        try:
            return read_ab_records(self.ab_path)
        except RecordError as error:
            raise RunFolderProblem(str(error)) from None

    def append_race(self, record: RaceRecord) -> None:
        """One group's race (harness.race), to race.jsonl, as safely as a results record."""
        self._append_line(self.race_path, record.to_json())

    def race_records(self) -> list[RaceRecord]:
        try:
            return read_race_records(self.race_path)
        except RecordError as error:
            raise RunFolderProblem(str(error)) from None

    def append_budgets(self, verdicts: list[BudgetVerdict]) -> None:
        """Budget verdicts (results.budgets), to budgets.jsonl; a later verdict of the same limit replaces an
        earlier one when read (a resumed run judges again)."""
        for verdict in verdicts:
            self._append_line(self.budgets_path, verdict.to_json())

    def budget_verdicts(self) -> list[BudgetVerdict]:
        try:
            return read_budget_verdicts(self.budgets_path)
        except RecordError as error:
            raise RunFolderProblem(str(error)) from None

    def _append_line(self, path: Path, data: dict[str, Any]) -> None:
        line = json.dumps(data, separators=(",", ":")) + "\n"
        try:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as error:
            if error.errno in DISK_FULL_ERRNOS:
                repair_torn_tail(path)  # the next record must not be glued to half of this one
            raise self._disk_full(error) from None

    def records(self) -> list[Record]:
        """This run's records; a folder whose records were damaged after they were written (an edit, a foreign
        tool) is a RunFolderProblem naming the file, the case and the field."""
        try:
            return read_records(self.results_path)
        except RecordError as error:
            raise RunFolderProblem(str(error)) from None

    def _write_json(self, name: str, data: Any) -> Path:
        path = self.run_dir / name
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(data, indent=2, default=str))
        except OSError as error:
            raise self._disk_full(error) from None
        os.replace(tmp, path)
        return path

    def _disk_full(self, error: OSError) -> OSError:
        """ENOSPC/EDQUOT as the run-level DiskFull (what the front doors stop on); any other error as it is."""
        if error.errno in DISK_FULL_ERRNOS:
            return DiskFull(f"the disk of {self.run_dir} is full ({error.strerror})")
        return error

    def write_benchmark_json(self, env: dict[str, Any]) -> Path:
        return self._write_json("benchmark.json", benchmark_json(self.records(), env))


SMALL_JSON_LIMIT = 16 * 2**20  # scenario.json and env.json: kilobytes when accelbench writes them


def read_small_json(path: Path, limit: int = SMALL_JSON_LIMIT) -> Any:
    """A run folder's small JSON file (scenario.json), or None when it is missing; RunFolderProblem naming it when it
    is not a regular file (a FIFO would block the read forever), is larger than ``limit`` or is not JSON."""
    try:
        with open(path, "rb", opener=lambda name, flags: os.open(name, flags | os.O_NONBLOCK)) as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise RunFolderProblem(f"{path}: not a regular file")
            if info.st_size > limit:
                raise RunFolderProblem(f"{path}: {info.st_size / 2**20:.0f} MiB, more than accelbench ever writes "
                                       f"there ({limit / 2**20:.0f} MiB)")
            return json.loads(handle.read(limit + 1).decode("utf-8"))
    except FileNotFoundError:
        return None
    except RunFolderProblem:
        raise
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise RunFolderProblem(f"{path}: unreadable ({error})") from None


def repair_torn_tail(path: Path) -> int:
    """Cut a last line that was never finished (no newline: the writer was killed mid-record)."""
    if path.exists() and not path.is_file():
        raise RunFolderProblem(f"{path} is not a regular file")
    try:
        with open(path, "rb+") as handle:
            data = handle.read()
            if not data or data.endswith(b"\n"):
                return 0
            keep = data.rfind(b"\n") + 1
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
            return len(data) - keep
    except FileNotFoundError:
        return 0


def read_records(path: Path) -> list[Record]:
    """All complete records, typed; a torn last line (a run killed mid-write) is skipped. Leniently (Record.read):
    fields a newer accelbench added are dropped; a known field of the wrong kind, a line that is not a record, or a
    record without its case id is a RecordError naming the file, the case (or line) and the field."""
    return _read_json_lines(path, Record.read)


def read_ab_records(path: Path) -> list[AbRecord]:
    """The A/B records of ab.jsonl, read as strictly as read_records reads results."""

    def parse(data: dict[str, Any]) -> AbRecord:
        try:
            return AbRecord.read(data, "A/B record")
        except ValueError as error:
            raise RecordError(str(error).removeprefix("A/B record: ")) from None

    return _read_json_lines(path, parse)


def read_race_records(path: Path) -> list[RaceRecord]:
    """The race records of race.jsonl, read as strictly as read_records reads results."""

    def parse(data: dict[str, Any]) -> RaceRecord:
        try:
            return RaceRecord.read(data, "race record")
        except ValueError as error:
            raise RecordError(str(error).removeprefix("race record: ")) from None

    return _read_json_lines(path, parse)


def read_budget_verdicts(path: Path) -> list[BudgetVerdict]:
    """The budget verdicts of budgets.jsonl, the last of each (case, budget, limit) kept, in first-seen order."""
    latest: dict[tuple[str | None, str, str, str], BudgetVerdict] = {}
    for verdict in _read_json_lines(path, BudgetVerdict.read):
        latest[(verdict.scenario, verdict.case_id, verdict.where, verdict.limit_name)] = verdict
    return list(latest.values())


def _read_json_lines(path: Path, parse: Callable[[dict[str, Any]], T]) -> list[T]:
    records: list[T] = []
    try:
        if not stat.S_ISREG(Path(path).stat().st_mode):  # a FIFO would block the read forever
            raise RecordError(f"{path}: not a regular file")
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return records
    except (OSError, UnicodeDecodeError) as error:
        raise RecordError(f"{path}: unreadable ({error})") from None
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) and not text.endswith("\n"):
                continue  # torn: the writer was killed mid-record
            raise RecordError(f"{path}: line {number}: not a JSON record") from None
        if not isinstance(data, dict):
            raise RecordError(f"{path}: line {number}: not a JSON object")
        case = data.get("case_id")
        where = f"case {case[:200]!r}" if isinstance(case, str) else f"line {number}"
        try:
            records.append(parse(data))
        except RecordError as error:
            raise RecordError(f"{path}: {where}: {error}") from None
    return records


def _stats_seconds(record: Record) -> dict[str, Any]:
    """pytest-benchmark's stats block, from our raw samples (its unit is seconds)."""
    samples = np.asarray(record.samples_ns, dtype=np.float64) / 1e9
    q1, median, q3 = np.percentile(samples, (25, 50, 75))
    iqr = q3 - q1
    mean = float(samples.mean())
    std = float(samples.std(ddof=1)) if samples.size > 1 else 0.0
    low_fence, high_fence = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    inside = samples[(samples >= low_fence) & (samples <= high_fence)]
    iqr_outliers = int(samples.size - inside.size)
    stddev_outliers = int(np.sum((samples < mean - std) | (samples > mean + std)))
    return {
        "min": float(samples.min()), "max": float(samples.max()), "mean": mean, "stddev": std,
        "rounds": int(samples.size), "median": float(median), "iqr": float(iqr), "q1": float(q1),
        "q3": float(q3), "iqr_outliers": iqr_outliers, "stddev_outliers": stddev_outliers,
        "outliers": f"{stddev_outliers};{iqr_outliers}",
        "ld15iqr": float(inside.min()) if inside.size else float(samples.min()),
        "hd15iqr": float(inside.max()) if inside.size else float(samples.max()),
        "ops": 1.0 / mean if mean else 0.0, "total": float(samples.sum()), "iterations": 1,
    }


def benchmark_json(records: list[Record], env: dict[str, Any]) -> dict[str, Any]:
    """The run in pytest-benchmark's JSON schema, so `pytest-benchmark compare` and
    github-action-benchmark read it. Only measured cases appear: those tools have no notion of a skip."""
    machine = env.get("machine", {})
    git = env.get("git", {})
    benchmarks = []
    for record in records:
        if not record.samples_ns:
            continue
        benchmarks.append({
            "group": record.model,
            "name": record.case_id,
            "fullname": f"{record.scenario}::{record.case_id}",
            "params": {"backend": record.backend, "precision": record.precision,
                       "batch_size": record.batch_size, "mode": record.mode},
            "param": record.case_id,
            "extra_info": {"status": record.status, "throughput_ips": record.throughput_ips,
                           "p99_ms": record.latency_ms.p99 if record.latency_ms else None,
                           "init_ms": record.init_ms, "peak_rss_mb": record.peak_rss_mb,
                           "env_id": record.env_id},
            "options": {"disable_gc": False, "timer": "perf_counter_ns", "min_rounds": None,
                        "max_time": None, "min_time": None, "warmup": True},
            "stats": _stats_seconds(record),
        })
    return {
        "machine_info": {"node": env.get("hostname"), "processor": platform.processor(),
                         "machine": machine.get("arch"), "python_implementation": platform.python_implementation(),
                         "python_version": machine.get("python"), "system": platform.system(),
                         "release": platform.release(), "cpu": {"brand_raw": machine.get("cpu_model"),
                                                                "count": machine.get("cpu_logical")},
                         "accelbench_env_id": env.get("env_id")},
        "commit_info": {"id": git.get("id"), "time": git.get("time"), "author_time": git.get("author_time"),
                        "dirty": git.get("dirty"), "project": "accelbench", "branch": git.get("branch")},
        "benchmarks": benchmarks,
        "datetime": datetime.now(UTC).isoformat(),
        "version": f"accelbench {ACCELBENCH_VERSION}",
    }
