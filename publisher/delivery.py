"""The send engine: one delivery row per digest and subscriber, marked before and after each send.

A row is `sending` from the moment before the transport is called until its answer is
recorded, each in its own transaction. After a crash, a `sending` row is sent once more and
recorded as `uncertain` (the first try may have gone out too; the Message-ID is the same, so a
duplicate is recognisable); a `sent` row is never sent again. Retryable errors go back to the
queue, tried again after `retry_delay` (minutes: greylisting), up to `max_attempts`: as
`pending`, or as `sending` when the error says the message may have gone out (a timeout after
DATA), so that its eventual success is recorded as `uncertain` too. Permanent errors are
`failed`; an error that says the transport cannot send at all (a refused login) pauses the
digest without using up anybody's attempts. A message that cannot be made for one reader (a
header their data cannot carry) fails that delivery, with the reason. After `pause_after`
consecutive errors of either kind the digest is paused, as listmonk does, for the operator.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from .mail import Message
from .model import Delivery
from .store import Store
from .transports import Transport, TransportError

log = logging.getLogger(__name__)

Build = Callable[[Delivery], Message | None]  # None: skip (unsubscribed since the plan, say)
Refused = Callable[[Delivery, str], None]  # the receiver says the address does not exist: why


@dataclass
class SendReport:
    sent: int = 0
    uncertain: int = 0
    failed: int = 0
    skipped: int = 0
    retried: int = 0
    paused: bool = False
    stopped: bool = False  # asked to stop (SIGTERM): unfinished, resumed at the next start


class BuildProblem(Exception):
    """This one subscriber's message cannot be made (bad data): their delivery fails, the rest go."""


def retry_delay(attempts: int) -> float:
    """Seconds before try `attempts + 1` after a temporary error: 30 s, 2 min, 8 min, then 15
    min. Greylisting and throttling (421, 451) want minutes, not seconds."""
    return float(min(30 * 4 ** (attempts - 1), 900))


class Sender:
    def __init__(
        self,
        store: Store,
        transport: Transport,
        clock: Callable[[], datetime],
        *,
        messages_per_second: float = 10.0,
        max_attempts: int = 3,
        pause_after: int = 20,
        refused: Refused | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.transport, self.clock = store, transport, clock
        self.interval = 1.0 / messages_per_second if messages_per_second > 0 else 0.0
        # About two seconds of sending per chunk (200 at full speed).
        self.chunk = max(5, min(200, int(2 * messages_per_second))) if messages_per_second > 0 else 200
        self.max_attempts, self.pause_after = max_attempts, pause_after
        # A hard bounce at sending time (SMTP 550 to RCPT, an API's invalid address): the
        # newsletter records it as a mail event; without one, the reader is marked bounced.
        self.refused = refused or (lambda delivery, why: store.mark_bounced(delivery.email_key, clock(), why))
        self.sleep, self.monotonic = sleep, monotonic

    def run(
        self,
        digest_id: int,
        build: Build,
        tick: Callable[[int], None] = lambda _n: None,
        retry_now: bool = False,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> SendReport:
        """Send every open delivery of the digest; safe to call again after any interruption,
        and safe beside another sender (each delivery is claimed before it is sent).
        `retry_now`: the operator resumes by hand, so earlier errors are not waited out."""
        report = SendReport()
        errors_in_a_row = 0
        next_slot = self.monotonic()
        ledger = self.store.ledger()
        mark = ledger.mark
        try:
            while True:
                # Subscribers are read with each chunk: an unsubscribe counts within seconds.
                queue = self.store.next_deliveries(digest_id, self.chunk)
                if not queue:
                    break
                now = self.clock()
                due = queue if retry_now else [d for d in queue if self._due(d, now)]
                retry_now = False  # once: what fails again now waits like any retry
                if not due:  # only retries, all waiting: sleep until the first is due
                    if should_stop():
                        report.stopped = True
                        return report
                    self.sleep(min(max(0.5, min(self._wait(d, now) for d in queue)), 5.0))
                    continue
                # Every delivery seen changes state (or another sender took it), so this ends.
                for delivery in due:
                    if should_stop():  # a clean stop: the digest stays `sending` for the next start
                        report.stopped = True
                        return report
                    if delivery.attempts >= self.max_attempts:
                        maybe = "; an earlier try may have been delivered" if delivery.status == "sending" else ""
                        mark(delivery.id, "failed", self.clock(), error="no attempts left" + maybe)
                        report.failed += 1
                        continue
                    try:
                        message = build(delivery)
                    except BuildProblem as exc:
                        mark(delivery.id, "failed", self.clock(), error=f"cannot build the message: {exc}")
                        report.failed += 1
                        log.warning("delivery to %s failed: cannot build the message: %s", delivery.email_key, exc)
                        # One reader's data fails one delivery; every message failing means
                        # something all share is broken: pause for the operator, never `done`.
                        errors_in_a_row += 1
                        if errors_in_a_row >= self.pause_after:
                            return self._pause(digest_id, report, errors_in_a_row)
                        continue
                    if message is None:  # unsubscribed since the plan, or nothing for them
                        mark(delivery.id, "skipped", self.clock())
                        report.skipped += 1
                        continue
                    next_slot = self._pace(next_slot)
                    if not ledger.claim(delivery, self.clock()):
                        continue  # another sender has it
                    # A `sending` row was tried and not answered (a crash, or an error after
                    # which the message may have gone out): whatever happens now is uncertain.
                    unsure = delivery.status == "sending"
                    try:
                        sent = self.transport.send(message)
                    except TransportError as exc:
                        if exc.broken:  # nothing can go: give the delivery back and stop
                            ledger.unclaim(delivery, str(exc))
                            self.store.set_digest_status(digest_id, "paused")
                            report.paused = True
                            log.error("paused: %s (%s); fix it, then `publisher digest resume`", exc, exc.hint)
                            return report
                        errors_in_a_row += 1
                        last_try = delivery.attempts + 1 >= self.max_attempts
                        if exc.retryable and not last_try:
                            # Back in the queue; `sending` keeps the doubt of an unanswered try.
                            again = "sending" if exc.uncertain or unsure else "pending"
                            mark(delivery.id, again, self.clock(), error=str(exc))
                            report.retried += 1
                        else:
                            mark(delivery.id, "failed", self.clock(), error=str(exc))
                            report.failed += 1
                            log.warning("delivery to %s failed: %s", delivery.email_key, exc)
                            if exc.bounced:
                                self.refused(delivery, str(exc))
                        if errors_in_a_row >= self.pause_after:
                            return self._pause(digest_id, report, errors_in_a_row)
                        continue
                    errors_in_a_row = 0
                    mark(delivery.id, "uncertain" if unsure else "sent", self.clock(), provider_id=sent.provider_id)
                    report.uncertain += unsure
                    report.sent += not unsure
                    tick(1)
            self.store.set_digest_status(digest_id, "done")
            return report
        finally:
            ledger.close()
            self.transport.close()

    def _pause(self, digest_id: int, report: SendReport, errors_in_a_row: int) -> SendReport:
        self.store.set_digest_status(digest_id, "paused")
        report.paused = True
        log.error("paused after %d errors in a row; `digest resume` continues", errors_in_a_row)
        return report

    @staticmethod
    def _due(delivery: Delivery, now: datetime) -> bool:
        # Never tried, or left `sending` by a crash (no error recorded): now. Else after a delay.
        return not delivery.retrying or Sender._wait(delivery, now) <= 0

    @staticmethod
    def _wait(delivery: Delivery, now: datetime) -> float:
        if not delivery.retrying or delivery.updated_at is None:
            return 0.0
        return retry_delay(delivery.attempts) - (now - delivery.updated_at).total_seconds()

    def _pace(self, next_slot: float) -> float:
        """Wait for the next send slot: `messages_per_second` at most."""
        now = self.monotonic()
        if next_slot > now:
            self.sleep(next_slot - now)
            now = next_slot
        return now + self.interval
