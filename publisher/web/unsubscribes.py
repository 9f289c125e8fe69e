"""A reader's unsubscribe is never lost to a busy store.

The web records an unsubscribe in the store at once, waiting for the write lock at most
`STORE_WAIT` seconds (a mail provider's one-click POST and nginx do not wait two minutes).
When the store is still busy, or refuses ("database is locked"), the unsubscribe goes to a file
beside a SQLite store (`<database>.unsubscribes`: one JSON line each, mode 0600, on the disk
before the answer), which this process applies as soon as the store takes writes: every
`RETRY_EVERY` seconds, and at start for what a stopped process left. The reader's answer says
unsubscribed only once one of the two holds it; when neither can (no such file for other
databases, a full disk), the answer is 503, try again.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TextIO

from sqlalchemy.engine import make_url

from ..store import Store
from ..subscriptions import unsubscribe

log = logging.getLogger(__name__)

STORE_WAIT = 10.0  # seconds a request waits for the store before the file takes the unsubscribe
RETRY_EVERY = 5.0  # seconds between two tries to apply the file

Apply = Callable[[int, datetime, str], object]  # subscriber id, when, how: records it in the store


def queue_file_for(store_url: str) -> Path | None:
    """`<database>.unsubscribes` beside a SQLite store; None for other databases, whose writers
    lock rows, not the whole database."""
    url = make_url(store_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(f"{url.database}.unsubscribes")


def store_applier(store: Store) -> Apply:
    """Unsubscribe in `store` (a second time changes nothing)."""

    def apply(subscriber_id: int, at: datetime, how: str) -> None:
        unsubscribe(store, subscriber_id, at, how)

    return apply


class Unsubscribes:
    """Records unsubscribes in the store, or durably beside it when the store is busy."""

    def __init__(self, queue_file: Path | None, apply: Apply, wait: float | None = None) -> None:
        self.queue_file, self.apply = queue_file, apply
        self.wait = STORE_WAIT if wait is None else wait
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        if self.has_pending():
            self._start()

    def record(self, subscriber_id: int, at: datetime, how: str) -> bool:
        """Unsubscribe now, or queue it on the disk; False when neither could be done."""
        outcome: list[BaseException | None] = []
        done = threading.Event()

        def attempt() -> None:
            try:
                self.apply(subscriber_id, at, how)
                outcome.append(None)
            except Exception as exc:  # noqa: BLE001 - "database is locked" and the like: queue it
                outcome.append(exc)
            done.set()

        # A daemon thread, not a pool's: one still waiting on the store must not hold up a stop.
        threading.Thread(target=attempt, name="publisher-unsubscribe", daemon=True).start()
        if done.wait(self.wait) and outcome[0] is None:
            return True
        why = f"{outcome[0]}" if outcome else f"the store took no write for {self.wait:.0f} s"
        log.warning("could not record unsubscribe #%s now (%s): queued", subscriber_id, why)
        # The attempt may still succeed later; applying the queued line again changes nothing.
        return self._queue(subscriber_id, at, how)

    def has_pending(self) -> bool:
        return self.queue_file is not None and self.queue_file.is_file() and self.queue_file.stat().st_size > 0

    def apply_pending(self) -> int:
        """Apply every queued unsubscribe the store now takes; those it still refuses stay."""
        if self.queue_file is None or not self.queue_file.exists():
            return 0
        applied = 0
        with _locked(self.queue_file) as handle:
            lines = [line for line in handle.read().splitlines() if line.strip()]
            left, damaged = [], []
            for line in lines:
                try:
                    entry = json.loads(line)
                    int(entry["id"]), datetime.fromisoformat(entry["at"]), str(entry["how"])
                except (ValueError, KeyError, TypeError):  # a line torn by a kill or a full disk
                    damaged.append(line)
                    continue
                try:
                    self.apply(int(entry["id"]), datetime.fromisoformat(entry["at"]), str(entry["how"]))
                    applied += 1
                except Exception as exc:  # noqa: BLE001 - still busy: kept for the next try
                    log.info("queued unsubscribe #%s not applied yet: %s", entry["id"], exc)
                    left.append(line)
            if damaged:
                self._set_aside(damaged)
            handle.seek(0)
            handle.truncate()
            handle.write("".join(f"{line}\n" for line in left))
            handle.flush()
            os.fsync(handle.fileno())
        if applied:
            log.info("applied %d queued unsubscribe(s)", applied)
        return applied

    def close(self) -> None:
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _set_aside(self, lines: list[str]) -> None:
        """Lines that cannot be read go to `<queue>.damaged` (0600), so they never block the rest."""
        assert self.queue_file is not None
        aside = self.queue_file.with_name(self.queue_file.name + ".damaged")
        descriptor = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(descriptor, "a", encoding="utf-8") as handle:
            handle.write("".join(f"{line}\n" for line in lines))
        log.error("%d unreadable line(s) of %s moved to %s: look at them by hand", len(lines), self.queue_file, aside)

    def _queue(self, subscriber_id: int, at: datetime, how: str) -> bool:
        if self.queue_file is None:
            return False
        line = json.dumps({"id": subscriber_id, "at": at.isoformat(), "how": how})
        try:
            with _locked(self.queue_file) as handle:
                end = handle.seek(0, os.SEEK_END)
                if end and (handle.seek(end - 1), handle.read(1))[1] != "\n":
                    handle.write("\n")  # a line torn by a kill stays on its own line
                handle.write(line + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            log.error("could not queue unsubscribe #%s in %s: %s", subscriber_id, self.queue_file, exc)
            return False
        self._start()
        return True

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._retry, name="publisher-unsubscribe-queue", daemon=True)
                self._thread.start()
        self._wake.set()

    def _retry(self) -> None:
        while not self._stopped.is_set():
            try:
                self.apply_pending()
            except Exception:  # noqa: BLE001 - a damaged line must not end the retries
                log.exception("could not apply the queued unsubscribes in %s", self.queue_file)
            if not self.has_pending():
                return
            self._wake.clear()
            self._wake.wait(RETRY_EVERY)


@contextmanager
def _locked(path: Path) -> Iterator[TextIO]:
    """The queue file opened for reading and writing (made 0600), under an exclusive flock, so
    two processes serving one store never interleave or lose each other's lines."""
    with os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "r+", encoding="utf-8") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # released when the file closes
        yield handle
