"""Atomic, durable file writes: every output goes to a temporary name in the same folder, is fsynced, then renamed
(and the folder fsynced), so a crash at any moment leaves the old file or the new one, never a mix."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

import dacite

from lfwbench.errors import LfwbenchError, brief

T = TypeVar("T")

TEMPORARY_PREFIX = ".lfwbench-tmp-"  # what a writer killed mid-write leaves; run folders and caches sweep these


def sync_file(path: str | Path) -> None:
    """Flush a file's (or a folder's entries') data to disk, so a rename after it never exposes an empty file."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary sibling of `path` (same suffix) to write; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f"{TEMPORARY_PREFIX}{path.stem}.", suffix=path.suffix
    )
    os.close(descriptor)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield Path(temporary)
        sync_file(temporary)
        os.replace(temporary, path)
        sync_file(path.parent)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary sibling of `path` for writing; it replaces `path` only if the block succeeds."""
    with (
        replacing(path) as temporary,
        open(temporary, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle,
    ):
        yield handle


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json_text(data))


def write_bytes(path: str | Path, content: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(content)


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path) as handle:
        handle.write(text)


def csv_text(rows: list[dict]) -> str:
    """Rows of one shape as CSV with a header, readable with `pandas.read_csv`."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def typed_record(cls: type[T], stored: object) -> T:
    """`cls` (a dataclass) built from a JSON object, every field's type checked and none unknown; ValueError naming
    what fails, for the owner of the file to put in its one line."""
    if not isinstance(stored, dict):
        raise ValueError(f"expected an object, got {type(stored).__name__}")
    try:
        return dacite.from_dict(cls, stored, config=dacite.Config(strict=True))
    except dacite.DaciteError as error:
        raise ValueError(brief(str(error), 200)) from None


def json_text(data: Any) -> str:
    """What `write_json` writes: sorted keys, two-space indents, a final newline, and standard JSON: an undefined
    figure (NaN, infinity) is written as null, which JSON readers elsewhere understand."""
    return json.dumps(_defined(data), indent=2, sort_keys=True, allow_nan=False) + "\n"


def _defined(data: Any) -> Any:
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: _defined(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_defined(value) for value in data]
    return data


def write_csv(path: str | Path, rows: list[dict]) -> None:
    write_text(path, csv_text(rows))


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file read in 1 MiB blocks (checkpoints and archives can be hundreds of MB)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_file_name(name: object) -> bool:
    """A plain name of a file in its folder: never a path, never `.` or `..`."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= 255
        and name not in (".", "..")
        and not any(character in name for character in "/\\\0")
    )


def _identity(path: Path) -> object:
    """What makes two paths one file: device and inode where it exists (a link, a hard link), else the path."""
    try:
        status = os.stat(path)
    except OSError:
        return Path(os.path.abspath(path))
    return (status.st_dev, status.st_ino)


def refuse_overwriting(outputs: Iterable[Path], inputs: Iterable[Path]) -> None:
    """Refuse, before anything is written, an output that is one of the inputs (the same file by any name) or that
    another output of the same command names too."""
    read = {_identity(Path(path)) for path in inputs}
    written: dict[object, Path] = {}
    for output in outputs:
        key = _identity(Path(output))
        if key in read:
            raise LfwbenchError(f"{output}: is also an input of this command; choose another output path")
        if key in written:
            raise LfwbenchError(f"{output}: named for two outputs of this command ({written[key]}); give each its own")
        written[key] = Path(output)


def write_texts(outputs: dict[Path, str]) -> None:
    """Write every output or none: each goes to a temporary sibling first, and all are renamed only once all are
    written (a full disk midway leaves the old files, never some of the new)."""
    with contextlib.ExitStack() as stack:
        for path, text in outputs.items():
            temporary = stack.enter_context(replacing(path))
            temporary.write_text(text, encoding="utf-8")


class FolderLock:
    """An exclusive lock held for a writer's life (flock, so a killed holder releases it); the file says its pid."""

    def __init__(self, path: Path):
        self.path = path
        self.descriptor: int | None = None

    def acquire(self, wait: bool = False) -> bool:
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(descriptor)
            return False
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        self.descriptor = descriptor
        return True

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def release(self) -> None:
        if self.descriptor is not None:
            os.close(self.descriptor)
            self.descriptor = None
