"""A frozen state's model files: what `accelbench freeze` may copy, the manifest (artifacts.json) it writes, and what
an ``artifacts=`` side checks before it runs a file from one.

Neither a run folder's records nor a manifest is an authority: both are files anyone can edit. So a model file is
copied or run only when it passes the checks a scenario's model path gets (scenario.checks: a regular file of a
kind accelbench reads, within the size limit, or a SavedModel folder of regular files), with its sidecars (an ONNX
file's external data) and never through a link out of the model's own folder. The manifest keeps each file's size
and sha256, so that a file changed since the freeze is refused instead of silently measured as the "known good"
state.

Manifest, format 2::

    {"format": 2,
     "cases": {"<case id>": "models/<case>/model.onnx", ...},
     "models": {"models/<case>/model.onnx": {"models/<case>/model.onnx": {"bytes": 123, "sha256": "..."},
                                             "models/<case>/model.onnx.data": {...}}, ...}}

Paths are relative to the manifest's folder. A manifest written before checksums (case id -> path) is still read,
its files checked as a scenario's model path is: a nightly workflow's cached last good state was written so, and
refusing it would keep the gate from ever moving; the next freeze writes format 2.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import reprlib
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from scenario.checks import MAX_MODEL_ENV, MAX_MODEL_FILES, _model_file_problem, max_model_bytes
from scenario.yaml_lines import excerpt

FORMAT = 2
MANIFEST = "artifacts.json"
# A manifest is a line or two per case and per file: 64 MiB holds the most cases a scenario may have (100,000) many
# times over, and bounds what a mistyped path (a disk image, /dev/zero) costs.
MAX_MANIFEST_BYTES = 64 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


class FrozenError(ValueError):
    """A model file that cannot be frozen or used, or a manifest that cannot be read; one line that says why."""


@dataclass(frozen=True)
class FileFacts:
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    path: Path  # the manifest file, resolved
    cases: dict[str, str]  # case id -> model file or folder, relative to the manifest's folder (or absolute: old)
    models: dict[str, dict[str, FileFacts]] | None  # model -> each of its files; None: written before checksums

    @property
    def folder(self) -> Path:
        return self.path.parent


# -- what a model is made of ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelFiles:
    """A model's files: (name relative to the model's folder, real path). The model's folder is the SavedModel
    folder itself, or the folder a model file sits in (whose first file is then the model)."""

    root: Path  # the model file or folder, resolved
    is_folder: bool
    files: list[tuple[str, Path]]


def model_files(path: Path) -> ModelFiles:
    """The files of the model at ``path`` (absolute): a file and its ONNX external data, or every file of a
    SavedModel folder. FrozenError when the model fails a scenario model path's checks, reaches through a link out
    of its own folder, or holds anything but regular files."""
    if not path.is_absolute():
        raise FrozenError(f"{excerpt(str(path))} is not an absolute path")
    try:
        real = Path(os.path.realpath(path))
        mode = real.stat().st_mode
    except FileNotFoundError:
        raise FrozenError(f"no such model file or folder: {path}") from None
    except (OSError, ValueError) as error:
        raise FrozenError(f"unusable path {excerpt(str(path))}: {_why(error)}") from None
    if stat.S_ISDIR(mode):
        if not (real / "saved_model.pb").is_file():  # the loader's refusal, before anything walks the folder
            raise FrozenError(_model_file_problem(path) or f"{path} is not a SavedModel folder")
        files = _folder_files(real, path)
    else:
        if problem := _model_file_problem(path):  # kind, regular file, size: as a scenario's model path
            raise FrozenError(problem)
        files = [(real.name, real), *_onnx_sidecars(real, path)]
    _check_model_size(path, sum(file.stat().st_size for _, file in files))
    return ModelFiles(real, stat.S_ISDIR(mode), files)


def _check_model_size(path: Path, total: int) -> None:
    """The loader's size limit on a model, counted over all its files (a scenario's check counts no sidecar)."""
    if total > max_model_bytes():
        raise FrozenError(f"{path} is {total / 2**30:.1f} GiB with all its files, over the "
                          f"{max_model_bytes() / 2**30:g} GiB limit on a model ({MAX_MODEL_ENV}=<GiB> raises it)")


def _folder_files(real_root: Path, shown_root: Path) -> list[tuple[str, Path]]:
    """Every file below a model folder. A link may point only inside the folder (it is then followed, each real
    folder once per chain, so a loop ends); anything but a regular file or a folder is refused. At most
    MAX_MODEL_FILES entries are looked at, folders too: links inside may reach one folder by many paths."""
    found: list[tuple[str, Path]] = []
    root = str(real_root)
    visited = 0
    pending: list[tuple[Path, PurePosixPath, frozenset[str]]] = [(real_root, PurePosixPath(), frozenset({root}))]
    while pending:  # a stack, not recursion: a folder may nest deeper than Python recurses
        real, relative, chain = pending.pop()
        try:
            with os.scandir(real) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError as error:
            raise FrozenError(f"cannot read {shown_root / relative}: {_why(error)}") from None
        for entry in entries:
            visited += 1
            if visited > MAX_MODEL_FILES:
                raise FrozenError(f"{shown_root} holds more than {MAX_MODEL_FILES:,} files and folders: not a "
                                  "SavedModel")
            shown = shown_root / relative / entry.name
            # the folder being read is a real path: only a link needs resolving (realpath costs a look per level)
            target = os.path.realpath(entry.path) if entry.is_symlink() else os.path.join(real, entry.name)
            if entry.is_symlink() and not _inside(target, root):
                raise FrozenError(f"{shown} links out of the model's folder (to {excerpt(target)})")
            try:
                mode = os.stat(target).st_mode
            except OSError as error:
                raise FrozenError(f"{shown}: {_why(error)}") from None
            if stat.S_ISDIR(mode):
                if target in chain:
                    raise FrozenError(f"{shown} is a link loop")
                pending.append((Path(target), relative / entry.name, chain | {target}))
            elif not stat.S_ISREG(mode):
                raise FrozenError(f"{shown} is not a regular file")
            else:
                found.append(((relative / entry.name).as_posix(), Path(target)))
    return sorted(found)


def _onnx_sidecars(real: Path, shown: Path) -> list[tuple[str, Path]]:
    """The external data files an ONNX model names (model.onnx.data, weights/*.bin), each inside the model's folder
    and a regular file; only those, so a sibling that merely shares the name's start (model.onnx.bak) stays."""
    if real.suffix.lower() != ".onnx":
        return []
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    try:
        proto = onnx.load(str(real), load_external_data=False)
        locations = sorted({ExternalDataInfo(t).location for t in _get_all_tensors(proto) if uses_external_data(t)})
    except Exception as error:  # protobuf and onnx raise their own kinds on a file that is not a model
        raise FrozenError(f"{shown}: not a readable ONNX model ({_why(error)})") from None
    folder = str(real.parent)
    sidecars = []
    for location in locations:
        target = os.path.realpath(real.parent / location) if location else ""
        if not location or os.path.isabs(location) or not _inside(target, folder):
            raise FrozenError(f"{shown}: its external data {excerpt(location)} is outside the model's folder")
        try:
            mode = os.stat(target).st_mode
        except OSError as error:
            raise FrozenError(f"{shown}: its external data {excerpt(location)}: {_why(error)}") from None
        if not stat.S_ISREG(mode):
            raise FrozenError(f"{shown.parent / location} is not a regular file")
        sidecars.append((PurePosixPath(os.path.relpath(target, folder)).as_posix(), Path(target)))
    return sidecars


def copy_checked(source: Path, target: Path, limit: int) -> FileFacts:
    """Copy one regular file (refused if it became anything else since it was looked at), hashing what is copied."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError as error:
        raise FrozenError(f"cannot read {source}: {_why(error)}") from None
    digest, size = hashlib.sha256(), 0
    with os.fdopen(fd, "rb") as reader:
        if not stat.S_ISREG(os.fstat(reader.fileno()).st_mode):
            raise FrozenError(f"{source} is not a regular file")
        with open(target, "xb") as writer:
            while chunk := reader.read(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise FrozenError(f"{source} grew past the {limit / 2**30:g} GiB limit on a model while copied")
                digest.update(chunk)
                writer.write(chunk)
    return FileFacts(size, digest.hexdigest())


def write_manifest(folder: Path, cases: dict[str, str], models: dict[str, dict[str, FileFacts]]) -> Path:
    path = folder / MANIFEST
    data = {"format": FORMAT, "cases": cases,
            "models": {model: {name: {"bytes": f.bytes, "sha256": f.sha256} for name, f in files.items()}
                       for model, files in models.items()}}
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


# -- reading a manifest --------------------------------------------------------------------------------------------

def read_manifest(path: Path) -> Manifest:
    """A manifest, checked whole (FrozenError, one line, if it is not one). It must be a regular file of at most
    MAX_MANIFEST_BYTES, looked at before it is opened: a FIFO would block the read forever, /dev/zero never ends."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise FrozenError("not a regular file; a manifest is the artifacts.json `accelbench freeze` writes")
        if info.st_size > MAX_MANIFEST_BYTES:
            raise FrozenError(f"{info.st_size:,} bytes, over the {MAX_MANIFEST_BYTES:,}-byte limit on a manifest")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):  # replaced since it was looked at
                raise FrozenError("not a regular file")
            content = handle.read(MAX_MANIFEST_BYTES + 1)
    except OSError as error:
        raise FrozenError(f"cannot read it: {_why(error)}") from None
    if len(content) > MAX_MANIFEST_BYTES:
        raise FrozenError(f"over the {MAX_MANIFEST_BYTES:,}-byte limit on a manifest")
    try:  # an editor's byte order mark is no reason to refuse
        data = json.loads(content.decode("utf-8-sig"), parse_constant=_no_constant)
    except UnicodeDecodeError as error:
        raise FrozenError(f"not UTF-8 text (byte {error.start})") from None
    except json.JSONDecodeError as error:
        raise FrozenError(f"not JSON: {error}") from None
    except RecursionError:
        raise FrozenError("not a manifest: nested too deeply") from None
    except ValueError as error:  # NaN, Infinity; an integer of more digits than Python converts
        raise FrozenError(f"not a manifest: {_why(error)}") from None
    return _parse(Path(path).resolve(), data)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _parse(path: Path, data: Any) -> Manifest:
    if isinstance(data, dict) and "format" not in data and all(isinstance(v, str) for v in data.values()):
        for model in data.values():  # written before checksums: case id -> model path, as freeze wrote it (relative)
            _relative(model, "model")
        return Manifest(path, dict(data), None)
    if not isinstance(data, dict):
        raise FrozenError("a manifest is a JSON object: the artifacts.json `accelbench freeze` writes")
    if "format" not in data:
        raise FrozenError("not a manifest: it has no 'format' (as `accelbench freeze` writes it), and not every value "
                          "is a model path (as an older freeze wrote it)")
    if data["format"] != FORMAT or isinstance(data["format"], bool):
        raise FrozenError(f"format {excerpt(str(data['format']))}; this accelbench reads format {FORMAT} (and the "
                          "older case id -> path map)")
    cases, models = data.get("cases"), data.get("models")
    if not isinstance(cases, dict) or not isinstance(models, dict):
        raise FrozenError("'cases' and 'models' must be JSON objects")
    checked: dict[str, dict[str, FileFacts]] = {}
    for model, files in models.items():
        _relative(model, "model")
        if not isinstance(files, dict) or not files:
            raise FrozenError(f"model {_shown(model)}: its files are a JSON object, not {excerpt(str(files))}")
        inside = model if model not in files else str(PurePosixPath(model).parent)
        facts = {}
        for name, fact in files.items():
            _relative(name, "file")
            if not _inside(name, inside) or (name == inside and inside != model):
                raise FrozenError(f"model {_shown(model)}: file {_shown(name)} is outside the model's folder")
            if not isinstance(fact, dict) or set(fact) != {"bytes", "sha256"}:
                raise FrozenError(f"file {_shown(name)}: bytes and sha256, and nothing else")
            size, sha = fact["bytes"], fact["sha256"]
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise FrozenError(f"file {_shown(name)}: bytes is a size, not {excerpt(str(size))}")
            if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
                raise FrozenError(f"file {_shown(name)}: sha256 is 64 hex digits, not {excerpt(str(sha))}")
            facts[name] = FileFacts(size, sha)
        checked[model] = facts
    for case, model in cases.items():
        if not isinstance(model, str) or model not in checked:
            raise FrozenError(f"case {_shown(case)}: {_shown(str(model))} is not one of the manifest's models")
    return Manifest(path, dict(cases), checked)


def _relative(name: Any, what: str) -> None:
    """A path the freeze wrote: relative, inside the manifest's folder, nothing the system refuses outright."""
    if not isinstance(name, str) or not name:
        raise FrozenError(f"a {what} is a path, not {excerpt(str(name))}")
    parts = PurePosixPath(name).parts
    if any(len(part.encode()) > 255 for part in parts) or len(name.encode()) > 4000:
        raise FrozenError(f"{what} {_shown(name)}: a name longer than the file system allows")
    if name.startswith("/") or "\\" in name or "\x00" in name or ".." in parts or "." in parts:
        raise FrozenError(f"{what} {_shown(name)}: not a path inside the manifest's folder, as freeze writes it")


# -- using a manifest's files ----------------------------------------------------------------------------------

def checked_model(manifest: Manifest, case_id: str) -> tuple[str | None, str | None]:
    """(the case's model, None) when its files are as frozen, else (None, why not): one line, the file named."""
    if case_id not in manifest.cases:
        return None, f"{manifest.path} has no model file for this case"
    entry = manifest.cases[case_id]
    try:
        if manifest.models is None:  # an older manifest: its files get the checks a scenario's model path gets
            path = manifest.folder / entry
            real = os.path.realpath(path)
            if not _inside(real, str(manifest.folder)):
                raise FrozenError(f"{path} links out of the manifest's folder (to {excerpt(real)})")
            model_files(path)
            return real, None
        return _as_frozen(manifest, entry), None
    except FrozenError as error:
        return None, str(error)
    except (OSError, ValueError) as error:  # a name the system refuses outright (too long, a NUL byte)
        return None, f"unusable path {excerpt(entry)} (from {manifest.path}): {_why(error)}"


def _as_frozen(manifest: Manifest, model: str) -> str:
    """The model's real path once each of its files is the regular file frozen (size, then sha256), inside the
    manifest's folder, and the model passes a scenario model path's checks (kind, the size limit, its ONNX external
    data or SavedModel files: model_files). The manifest's own list is no authority on what the model loads: a
    file the model would read that the freeze did not hold (a sidecar, a file planted in a folder) is refused."""
    assert manifest.models is not None
    folder = str(manifest.folder)
    path = manifest.folder / model
    files = manifest.models[model]
    checked = []
    for name, facts in files.items():
        file = manifest.folder / name
        real = os.path.realpath(file)
        if not _inside(real, folder):
            raise FrozenError(f"{file} links out of the manifest's folder (to {excerpt(real)})")
        try:
            info = os.stat(real)
        except FileNotFoundError:
            raise FrozenError(f"{file} (from {manifest.path}) does not exist") from None
        if not stat.S_ISREG(info.st_mode):
            raise FrozenError(f"{file} is not a regular file")
        if info.st_size != facts.bytes:
            raise FrozenError(f"{file} changed since freeze")
        checked.append((file, real, info, facts))
    _check_model_size(path, sum(info.st_size for _, _, info, _ in checked))  # before hashing: any size is claimed
    for file, real, info, facts in checked:
        if _sha256(real, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino) != facts.sha256:
            raise FrozenError(f"{file} changed since freeze")
    real_model = os.path.realpath(path)
    if not _inside(real_model, folder):
        raise FrozenError(f"{path} links out of the manifest's folder (to {excerpt(real_model)})")
    found = model_files(Path(real_model))
    base = PurePosixPath(model) if found.is_folder else PurePosixPath(model).parent
    frozen = set()
    for name in files:
        with contextlib.suppress(ValueError):  # a name outside the model's folder: checked above, loads nothing
            frozen.add(PurePosixPath(name).relative_to(base).as_posix())
    for name, _ in found.files:
        if name not in frozen:
            raise FrozenError(f"{manifest.folder / base / name} changed since freeze (the freeze did not hold it)")
    return real_model


@functools.lru_cache(maxsize=1024)
def _sha256(real: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str:
    """A file's sha256, once per version of it (size, mtime, ctime, inode): every case of a run checks its file.
    The ctime is in the key because a user can set the mtime back (touch -r) after an edit in place, not the ctime."""
    del size, mtime_ns, ctime_ns, inode  # the cache key
    fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise FrozenError(f"{real} is not a regular file")
        return hashlib.file_digest(handle, "sha256").hexdigest()


_SHOWN = reprlib.Repr()
_SHOWN.maxstring = 160  # a path or case id in a message: long enough to tell two apart, never megabytes


def _shown(text: str) -> str:
    return _SHOWN.repr(text)


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _why(error: BaseException) -> str:
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return " ".join(text.split())
