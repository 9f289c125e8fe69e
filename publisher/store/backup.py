"""`publisher backup`: a SQLite store copied online, safe to restore even when it was taken
while a digest was being sent.

SQLite's online backup API copies a live store in one step (readers never block the writer in
WAL mode), where the `sqlite3` program's `.backup` restarted each time a send wrote, a minute
during a send. A digest in flight at the copy has deliveries that are pending in the copy but
sent by the time a restore is needed; restoring and resuming would send those again (a review
re-sent 5,669 of 6,000). So the copy's unfinished digests are paused, which the service never
resumes by itself, and the copy says which and when: the operator decides after a restore.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import StoreError

if TYPE_CHECKING:
    from . import Store

BACKUP_META = "backup"  # the meta row a copy carries: when it was taken, the digests it paused
PLANNING = "planning"  # in that row: the digests it paused while they were planning


@dataclass(frozen=True, slots=True)
class PausedDigest:
    """A digest that was planning or sending when the copy was taken."""

    key: str
    was: str
    counts: dict[str, int]


@dataclass(frozen=True, slots=True)
class Backup:
    path: Path
    taken_at: datetime
    paused: list[PausedDigest]


def backup_sqlite(database: Path, target: Path, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Backup:
    """Copy the SQLite store at `database` to `target` (a new file, mode 0600), pausing the
    digests the copy has unfinished. Written beside `target` first and renamed, so `target` is
    either whole or absent."""
    if target.exists():
        raise StoreError(f"{target} already exists", "give the backup a new name, e.g. backup/publisher-$(date +%F).db")
    if not database.is_file():
        raise StoreError(f"there is no store at {database}", "check [store] url in the configuration")
    partial = target.with_name(f".{target.name}.partial")
    try:
        os.close(os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        partial.unlink()  # left by a backup that was killed
        os.close(os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise StoreError(f"cannot write {target}: {exc.strerror}", "choose a folder this user may write") from exc
    try:
        taken_at = now()
        _copy(database, partial)
        paused = _pause_in_flight(partial, taken_at)
        _settle(partial, database)
        os.replace(partial, target)
    except BaseException:
        for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm"), Path(f"{partial}-journal")):
            leftover.unlink(missing_ok=True)
        raise
    return Backup(target, taken_at, paused)


def _copy(database: Path, partial: Path) -> None:
    source = sqlite3.connect(database, timeout=120)
    copy = sqlite3.connect(partial)
    try:
        source.backup(copy)  # all pages in one step: no restart when a send writes meanwhile
    except sqlite3.Error as exc:
        raise StoreError(f"cannot copy {database}: {exc}", "is the disk full, or the store damaged?") from exc
    finally:
        copy.close()
        source.close()


def _pause_in_flight(partial: Path, taken_at: datetime) -> list[PausedDigest]:
    """In the copy: every digest still planning or sending becomes paused, and the copy's
    `meta` says when it was taken, which digests it paused, and which of them were still
    planning (their plan is not whole: resuming one plans the rest first, see `resume_paused`)."""
    from . import Store

    copy = Store(f"sqlite:///{partial}")
    try:
        paused = []
        for digest in copy.digests(unfinished_only=True):
            if digest.status in ("planning", "sending"):
                copy.set_digest_status(digest.id, "paused")
                paused.append(PausedDigest(digest.key, digest.status, copy.delivery_counts(digest.id)))
        note = {
            "taken_at": taken_at.astimezone(UTC).isoformat(),
            "paused": [d.key for d in paused],
            PLANNING: [d.key for d in paused if d.was == "planning"],
        }
        copy.set_meta(BACKUP_META, json.dumps(note))
    finally:
        copy.close()
    return paused


def resume_paused(store: Store, digest_id: int, key: str) -> str:
    """Set a paused digest going again, and say to what: `sending`, or `planning` when this
    store is a backup's copy that paused it while it was planning (its plan is not whole; the
    note forgets it once it is back in `planning`, where a crash leaves it to be planned again)."""
    raw = store.get_meta(BACKUP_META)
    note = json.loads(raw) if raw else {}
    # A copy made before backups noted which digests were planning (no such list): any digest
    # it paused may be half-planned. Planning again is safe: only readers not yet planned are added.
    planning = note[PLANNING] if PLANNING in note else note.get("paused", [])
    status = "planning" if key in planning else "sending"
    store.set_digest_status(digest_id, status)
    if status == "planning":
        note[PLANNING] = planning
        note[PLANNING] = [k for k in note[PLANNING] if k != key]
        store.set_meta(BACKUP_META, json.dumps(note))
    return status


def _settle(partial: Path, database: Path) -> None:
    """One self-contained file (no -wal beside it), checked, on the disk."""
    copy = sqlite3.connect(partial)
    try:
        copy.execute("PRAGMA journal_mode=DELETE")
        problem = copy.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.Error as exc:
        raise StoreError(f"cannot finish the copy of {database}: {exc}", "is the disk full?") from exc
    finally:
        copy.close()
    if problem != "ok":
        raise StoreError(f"the copy of {database} does not check: {problem}", "the store itself may be damaged")
    with partial.open("rb") as written:
        os.fsync(written.fileno())
