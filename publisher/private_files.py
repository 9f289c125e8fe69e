"""Files that hold a secret or readers' data (the store with its signing key, previews with live
links, outbox mail, exports, backups): created 0600 in folders created 0700, whatever the umask,
so nobody else on the host can read them (docs/operations.md, Security)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from .errors import OutputError

FILE_MODE = 0o600
FOLDER_MODE = 0o700


def private_folder(path: Path) -> Path:
    """Make `path` and any missing parents 0700. A folder that exists keeps its mode: it is the
    operator's (a shared var/, a mount point)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=FOLDER_MODE, exist_ok=True)
        os.chmod(folder, FOLDER_MODE)  # mkdir's mode passes through the umask
    return path


def create_private(path: Path) -> None:
    """Make `path` an empty 0600 file unless it exists (SQLite then gives its -wal and -shm
    files the same mode)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    os.fchmod(fd, FILE_MODE)
    os.close(fd)


def tighten_store(database: Path) -> list[Path]:
    """Make a SQLite store made by an older publisher (0644), and its -wal and -shm, 0600 when
    this user owns them; the ones changed. `db upgrade` calls it: the store holds the key."""
    changed = []
    for path in (database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")):
        try:
            status = path.stat()
        except FileNotFoundError:
            continue
        if status.st_uid == os.getuid() and status.st_mode & 0o077:
            os.chmod(path, FILE_MODE)
            changed.append(path)
    return changed


@contextmanager
def open_private_text(path: Path) -> Iterator[TextIO]:
    """`path` opened for writing UTF-8 text (newline as written, as csv wants), truncated and
    0600. A write that fails (a full disk) is an OutputError naming `path`."""
    try:
        with os.fdopen(_open_truncated(path), "w", encoding="utf-8", newline="") as handle:
            yield handle
    except OSError as exc:
        raise OutputError(path, exc) from exc


def write_private(path: Path, data: bytes) -> None:
    """`data` as the whole of `path`, 0600; OutputError naming `path` when it cannot be written."""
    try:
        with os.fdopen(_open_truncated(path), "wb") as handle:
            handle.write(data)
    except OSError as exc:
        raise OutputError(path, exc) from exc


def _open_truncated(path: Path) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # a file made before, 0644, is made private too
    return fd
