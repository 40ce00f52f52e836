"""A content-addressed directory store that several processes may fill at once.

Layout: `<cache_dir>/artifacts/<key>/` holds the model file (or directory) and `meta.json`;
`<cache_dir>/locks/<key>.lock` serialises builders of one key. An entry is written in a temporary sibling
directory and renamed into place, so a `<key>/` directory only ever exists complete: a builder that
crashes half-way leaves a `.tmp-*` directory that no lookup returns and the next builder of the key removes.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import platformdirs
from filelock import FileLock

META = "meta.json"
LOCK_TIMEOUT_S = 3600.0  # a ResNet-50 ONNX conversion takes ~30 s on 2 cores; an hour means a stuck peer


def cache_dir() -> Path:
    return Path(os.environ.get("ACCELBENCH_CACHE_DIR") or platformdirs.user_cache_dir("accelbench"))


def _root() -> Path:
    return cache_dir() / "artifacts"


def find(key: str, filename: str) -> Path | None:
    entry = _root() / key
    if (entry / META).is_file() and (entry / filename).exists():
        return entry / filename
    return None


def read_meta(key: str) -> dict[str, Any] | None:
    try:
        return json.loads((_root() / key / META).read_text())
    except (OSError, ValueError):
        return None


def store(key: str, filename: str, produce: Callable[[Path], dict[str, Any]]) -> Path:
    """Return the entry's file, calling `produce(path)` to create it only if no process has yet.

    `produce` writes the file (or directory) at `path` and returns the metadata to keep beside it.
    """
    found = find(key, filename)
    if found:
        return found
    root = _root()
    locks = cache_dir() / "locks"
    root.mkdir(parents=True, exist_ok=True)
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(locks / f"{key}.lock", timeout=LOCK_TIMEOUT_S):
        found = find(key, filename)
        if found:  # another process finished it while we waited
            return found
        # Holding the key's lock, any temporary directory of this key is a crashed builder's leftover.
        for stale in root.glob(f".tmp-{key}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=root))
        try:
            meta = produce(tmp / filename)
            meta = {**meta, "key": key, "file": filename, "content_sha256": content_hash(tmp / filename)}
            (tmp / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
            entry = root / key
            if entry.exists():  # an entry without meta.json: not ours to explain, but never complete
                shutil.rmtree(entry)
            os.rename(tmp, entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return entry / filename


def content_hash(path: Path) -> str:
    """sha256 of a file's bytes, or of a directory's sorted (relative path, file hash) pairs.

    Memoised on the files' size and mtime, because lookups hash user models and SavedModels repeatedly.
    """
    path = Path(path).resolve()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        signature = tuple((p.relative_to(path).as_posix(), *_stat(p)) for p in files)
    else:
        signature = (("", *_stat(path)),)
    return _hash(str(path), signature)


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


@lru_cache(maxsize=256)
def _hash(path: str, signature: tuple[tuple[str, int, int], ...]) -> str:
    root = Path(path)
    if len(signature) == 1 and signature[0][0] == "":
        return _file_sha256(root).hex()
    digest = hashlib.sha256()
    for relative, *_ in signature:
        digest.update(relative.encode() + b"\0" + _file_sha256(root / relative))
    return digest.hexdigest()


def file_fact(path: Path, info: os.stat_result, fact: str, compute: Callable[[], int]) -> int:
    """A number computed from a file's bytes (``fact`` names which), kept on disk across runs keyed by the file's
    path, size, mtime and inode: an artefact is written once and never changed, and a user's file that changes
    gets a new key. A run of the default scenario gzipped its 300 MB of resnet50 files every time (about 10 s of
    20 spent so); read back, it takes a millisecond. The memo is a convenience: a folder it cannot be read from
    or written to only means the fact is computed."""
    key = hashlib.sha256(f"{fact}\0{Path(path).resolve()}\0{info.st_size}\0{info.st_mtime_ns}\0{info.st_ino}"
                         .encode()).hexdigest()
    memo = cache_dir() / "file-facts" / key
    try:
        return int(memo.read_text())
    except (OSError, ValueError):
        pass
    value = compute()
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=memo.parent, delete=False, prefix=".tmp-") as handle:
            handle.write(str(value))
        os.replace(handle.name, memo)  # whole or absent: a reader never sees half a number
    except OSError:
        pass
    return value


def _file_sha256(path: Path) -> bytes:
    """Opened without blocking and checked to be a regular file once open: the path was checked when the scenario
    or the side was read, but a FIFO put in its place since would block the hash (and the run) forever."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        return hashlib.file_digest(f, "sha256").digest()
