"""Whole-file writes: a temporary file beside the target, renamed over it, so a reader never
sees half a file; and the sweep of temporaries that a killed writer left behind.

A temporary is named `.<name>.<pid>.<random>.tmp`: a later run removes the ones whose writing
process no longer exists, and never one that a live process is still writing.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

_TEMPORARY = re.compile(r"\..*\.(\d+)\.[^.]+\.tmp")


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """`data` as the whole of `path` (file mode `mode`); on any error the temporary is removed
    and `path` is as it was. OSError (a full disk) goes to the caller, who knows what to say."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder: Path, recursive: bool = False) -> list[Path]:
    """Remove the temporaries in `folder` whose writer is dead (killed mid-write); the removed."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for path in folder.rglob(".*.tmp") if recursive else folder.glob(".*.tmp"):
        found = _TEMPORARY.fullmatch(path.name)
        if found and not _alive(int(found.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True
