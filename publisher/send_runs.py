"""Digest sends started from the console: each in a thread of the web process, through the
same Newsletter, send engine and ledger as `publisher digest send` (and under the ledger's
send lock, so never beside another sender of the store), one run per digest at a time.

What a page shows of a send (counts, rate, ETA, failures) is read from the ledger, so it is
true whoever sends: this process, the scheduler, or a `digest resume` in a shell.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from .errors import PublisherError

if TYPE_CHECKING:
    from .delivery import SendReport
    from .newsletter import Newsletter
    from .store import DigestRow
    from .transports import Transport

log = logging.getLogger(__name__)

NEXT = 0  # the run key of "send the next digest now" until it is planned
DONE_STATES = ("sent", "uncertain", "failed", "skipped")


class SendBusy(PublisherError):
    """A send of this digest is running already in this process."""


@dataclass
class SendRun:
    """One send started from the console; `report` and `error` are set when it ends."""

    digest_id: int
    action: str  # send | resume | retry
    started: datetime
    sent_before: int  # deliveries sent or uncertain when it started: the rate counts from there
    report: SendReport | None = None
    error: str = ""
    finished: datetime | None = None
    thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


@dataclass(frozen=True)
class Progress:
    """A digest's send as the ledger has it now, with the rate and ETA of this process's run."""

    digest_id: int
    status: str
    counts: dict[str, int]
    total: int
    done: int
    running: bool
    rate: float | None  # messages a second since the run started
    eta_seconds: int | None
    error: str

    def as_json(self) -> dict[str, object]:
        return {
            "digest": self.digest_id, "status": self.status, "counts": self.counts, "total": self.total,
            "done": self.done, "running": self.running, "rate": self.rate, "eta_seconds": self.eta_seconds,
            "error": self.error,
        }  # fmt: skip


class SendRuns:
    """The console's send threads, by digest id."""

    def __init__(self, letters: Newsletter, transport: Callable[[], Transport]) -> None:
        self.letters, self.transport = letters, transport
        self._runs: dict[int, SendRun] = {}
        self._lock = threading.Lock()

    def run(self, digest_id: int) -> SendRun | None:
        with self._lock:
            return self._runs.get(digest_id)

    def start(self, digest: DigestRow, action: str) -> SendRun:
        """Send what is due of `digest` in a thread (`retry`: its temporary failures first, as
        `digest retry`); SendBusy when this process sends it already."""
        return self._start(digest.id, action, lambda: digest)

    def start_next(self) -> SendRun:
        """Plan the digest due now and send it, both in the thread (planning reads every reader)."""

        def planned() -> DigestRow:
            plan = self.letters.plan_scheduled()
            with self._lock:
                run = self._runs.pop(NEXT)
                run.digest_id = plan.digest.id
                run.sent_before = _sent(self.letters.store.delivery_counts(plan.digest.id))
                self._runs[plan.digest.id] = run
            return plan.digest

        return self._start(NEXT, "send", planned)

    def _start(self, key: int, action: str, digest: Callable[[], DigestRow]) -> SendRun:
        with self._lock:
            existing = self._runs.get(key)
            if existing is not None and existing.running:
                raise SendBusy(f"digest #{key} is being sent already", "follow its progress on its page")
            counts = self.letters.store.delivery_counts(key) if key != NEXT else {}
            run = SendRun(key, action, self.letters.clock(), _sent(counts))
            run.thread = threading.Thread(
                target=self._work, args=(run, digest), name=f"publisher-send-{key}", daemon=True
            )
            self._runs[key] = run
            run.thread.start()
        return run

    def _work(self, run: SendRun, digest: Callable[[], DigestRow]) -> None:
        letters = self.letters
        try:
            row = digest()
            if run.action == "retry":
                letters.retry(row)
            run.report = letters.send(letters.store.digest(row.id), self.transport())
        except (PublisherError, ValueError, OSError) as exc:
            run.error = str(exc)
            log.error("digest #%s: the console's %s stopped: %s", run.digest_id, run.action, exc)
        except Exception as exc:  # a thread's death must still show on the page
            run.error = f"{type(exc).__name__}: {exc}"
            log.exception("digest #%s: the console's %s failed", run.digest_id, run.action)
        finally:
            run.finished = letters.clock()

    def progress(self, digest: DigestRow) -> Progress:
        """The digest's counts from the ledger; rate and ETA when this process sends it."""
        counts = self.letters.store.delivery_counts(digest.id)
        total = sum(counts.values())
        done = sum(counts.get(s, 0) for s in DONE_STATES)
        run = self.run(digest.id)
        rate = eta = None
        if run is not None:
            end = run.finished or self.letters.clock()
            elapsed = (end - run.started).total_seconds()
            sent_now = _sent(counts) - run.sent_before
            if elapsed > 0 and sent_now > 0:
                rate = round(sent_now / elapsed, 2)
                eta = round((total - done) / rate) if run.running else None
        status = self.letters.store.digest(digest.id).status
        return Progress(
            digest.id, status, counts, total, done, run is not None and run.running, rate, eta,
            run.error if run is not None else "",
        )  # fmt: skip


def _sent(counts: dict[str, int]) -> int:
    return counts.get("sent", 0) + counts.get("uncertain", 0)
