"""The send engine: one delivery row per digest and subscriber, marked before and after each send.

A row is `sending` from the moment before the transport is called until its answer is
recorded, each in its own transaction. After a crash, a `sending` row is sent once more and
recorded as `uncertain` (the first try may have gone out too; the Message-ID is the same, so a
duplicate is recognisable); a `sent` row is never sent again. Retryable errors go back to the
queue with a backoff, up to `max_attempts`: as `pending`, or as `sending` when the error says
the message may have gone out (a timeout after DATA), so that its eventual success is recorded
as `uncertain` too. Permanent errors are `failed`. After
`pause_after` consecutive errors the digest is paused, as listmonk does, for the operator.
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


@dataclass
class SendReport:
    sent: int = 0
    uncertain: int = 0
    failed: int = 0
    skipped: int = 0
    retried: int = 0
    paused: bool = False


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
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.transport, self.clock = store, transport, clock
        self.interval = 1.0 / messages_per_second if messages_per_second > 0 else 0.0
        # About two seconds of sending per chunk (200 at full speed).
        self.chunk = max(5, min(200, int(2 * messages_per_second))) if messages_per_second > 0 else 200
        self.max_attempts, self.pause_after = max_attempts, pause_after
        self.sleep, self.monotonic = sleep, monotonic

    def run(self, digest_id: int, build: Build, tick: Callable[[int], None] = lambda _n: None) -> SendReport:
        """Send every open delivery of the digest; safe to call again after any interruption."""
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
                # Every pass changes the state of every row it sees, so the loop ends: sent,
                # failed, skipped, or open again with one more attempt counted.
                for delivery in queue:
                    delivery_id, email_key, status, attempts = (
                        delivery.id,
                        delivery.email_key,
                        delivery.status,
                        delivery.attempts,
                    )
                    # A `sending` row was tried and not answered (a crash, or an error after
                    # which the message may have gone out): whatever happens next is uncertain.
                    unsure = status == "sending"
                    if attempts >= self.max_attempts:
                        error = "no attempts left" + ("; an earlier try may have been delivered" if unsure else "")
                        mark(delivery_id, "failed", self.clock(), error=error)
                        report.failed += 1
                        continue
                    message = build(delivery)
                    if message is None:  # unsubscribed since the plan, or nothing for them
                        mark(delivery_id, "skipped", self.clock())
                        report.skipped += 1
                        continue
                    next_slot = self._pace(next_slot)
                    mark(delivery_id, "sending", self.clock(), tried=True)
                    try:
                        sent = self.transport.send(message)
                    except TransportError as exc:
                        errors_in_a_row += 1
                        last_try = attempts + 1 >= self.max_attempts
                        if exc.retryable and not last_try:
                            # Back in the queue; `sending` keeps the doubt of an unanswered try.
                            again = "sending" if exc.uncertain or unsure else "pending"
                            mark(delivery_id, again, self.clock(), error=str(exc))
                            report.retried += 1
                            self.sleep(min(2.0**attempts, 60.0))
                        else:
                            mark(delivery_id, "failed", self.clock(), error=str(exc))
                            report.failed += 1
                            log.warning("delivery to %s failed: %s", email_key, exc)
                        if errors_in_a_row >= self.pause_after:
                            self.store.set_digest_status(digest_id, "paused")
                            report.paused = True
                            log.error("paused after %d errors in a row; `digest resume` continues", errors_in_a_row)
                            return report
                        continue
                    errors_in_a_row = 0
                    mark(delivery_id, "uncertain" if unsure else "sent", self.clock(), provider_id=sent.provider_id)
                    report.uncertain += unsure
                    report.sent += not unsure
                    tick(1)
            self.store.set_digest_status(digest_id, "done")
            return report
        finally:
            ledger.close()
            self.transport.close()

    def _pace(self, next_slot: float) -> float:
        """Wait for the next send slot: `messages_per_second` at most."""
        now = self.monotonic()
        if next_slot > now:
            self.sleep(next_slot - now)
            now = next_slot
        return now + self.interval
