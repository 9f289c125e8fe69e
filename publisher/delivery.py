"""The send engine: one delivery row per digest and subscriber, marked before and after each send.

A row is `sending` from the moment before the transport is called until its answer is
recorded, each committed (a success with the next delivery's claim, see `Sender.run`); a
`sent` row is never sent again. A message that may
have gone out is never sent again by itself: an error that says so (no answer after the
message was handed over: a timeout after the final "." of DATA, an HTTP API that took the
request and did not answer) makes the delivery `uncertain`, and so does a `sending` row found
by the next run (its process stopped mid-send). Only `digest retry --all` sends those again,
and whatever that retry ends in keeps the doubt (store.retries: UNANSWERED, EARLIER,
SENT_AGAIN). Retryable errors (the receiver cannot have taken the message) put the delivery
back in the queue as `pending` with its error, due again after the next wait of `retry_after`
(1, 5, 15, 60 minutes, 4 hours: greylisting and a server that is down for hours). A run sends
what is due and returns, saying when the next try is (`SendReport.next_try`); the digest stays
`sending`, so whoever runs next (the scheduler at that time, `digest resume`, a restart) picks
it up. After the last wait, a temporary error fails the delivery (`GAVE_UP`: `digest retry`
may try it again).

Permanent errors are `failed`; an error that says the transport cannot send at all (a refused
login) pauses the digest without using up anybody's attempts. A message that cannot be made for
one reader (a header their data cannot carry) fails that delivery, with the reason. After
`pause_after` consecutive errors of either kind the digest is paused, as listmonk does, for the
operator.

A transport that takes many messages in one call (a `BatchTransport`: the providers' batch
APIs) goes through the same loop: the batch read is built, split into the transport's calls,
and each call's deliveries are claimed in one transaction, sent in one call and marked each
with its own outcome (a refused address as a hard bounce, a retry, a success with its provider
id). A call whose answer was lost makes every delivery of it uncertain, so a crash leaves at
most one call's deliveries unanswered. A call that failed as a whole counts as one error in a
row. The operator's pause and a stop are read between calls.

`messages_per_second` is kept here, in this process, unless a `rate` is given: a bucket every
sender shares (store.take_send_tokens, on PostgreSQL), so the rate is the fleet's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from .delivery_run import Build, BuildProblem, Refused, SendReport, _Run
from .mail import Message
from .store import Store
from .transports import BatchTransport, Transport, split

__all__ = ["Build", "BuildProblem", "Refused", "SendReport", "Sender", "SharedRate"]

log = logging.getLogger(__name__)


class SharedRate(Protocol):
    """A bucket every sender shares (store.SendTokens): take n tokens, the seconds to wait
    before sending them; `give_back` what was taken and not spent when the run ends."""

    def __call__(self, count: int) -> float: ...

    def give_back(self) -> None: ...


DEFAULT_RETRY_AFTER = tuple(timedelta(minutes=m) for m in (1, 5, 15, 60, 240))


class Sender:
    def __init__(
        self,
        store: Store,
        transport: Transport,
        clock: Callable[[], datetime],
        *,
        messages_per_second: float = 10.0,
        retry_after: Sequence[timedelta] = DEFAULT_RETRY_AFTER,
        pause_after: int = 20,
        refused: Refused,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        counted: Callable[[str], None] = lambda _outcome: None,
        rate: SharedRate | None = None,
    ) -> None:
        self.store, self.transport, self.clock = store, transport, clock
        self.steps = split(transport)  # start, then finish: the next message is built between
        self.interval = 1.0 / messages_per_second if messages_per_second > 0 else 0.0
        self.rate = rate if messages_per_second > 0 else None
        # Deliveries read at a time, and so the most a batch call holds: about two seconds of
        # sending (5 at least), or a batch API's limit when that is less. A call's messages
        # leave at once, so a bigger one would send faster than the rate (docs/scale.md).
        most = transport.limit if isinstance(transport, BatchTransport) else 200
        self.batch = max(5, min(most, int(2 * messages_per_second))) if messages_per_second > 0 else most
        self.retry_after, self.pause_after = tuple(retry_after), pause_after
        self.max_tries = len(self.retry_after) + 1
        # A hard bounce at sending time (SMTP 550 to RCPT, an API's invalid address): the
        # newsletter records it as a mail event, and its rules mark the reader.
        self.refused = refused
        self.sleep, self.monotonic = sleep, monotonic
        self.counted = counted  # each delivery's outcome as it happens (metrics)

    def run(
        self,
        digest_id: int,
        build: Build,
        tick: Callable[[int], None] = lambda _n: None,
        should_stop: Callable[[], bool] = lambda: False,
        chunk: int | None = None,
    ) -> SendReport:
        """Send every delivery of the digest that is due (`chunk`: of that chunk only, one
        fan-out job's share); the digest, if `sending`, is `done` when none is left open (one
        still `planning` never is: Newsletter.send plans the rest first), else the report says
        how many wait and when the first is due. Safe to call again
        after any interruption, and safe beside another sender (each delivery is claimed before
        it is sent). It never sleeps longer than the pacing between two messages.

        A success's answer is recorded in the transaction of the next delivery's claim (one
        commit per message), or on its own before any wait, any other answer and the next
        batch's read: a delivery is still claimed before its send and marked after its answer,
        and a crash leaves at most one unanswered (`sending`), the one in flight or the one
        whose answer was not committed yet. The transport's send comes in two steps (`split`):
        a message is handed over naming the next one (built already: SMTP sends its envelope
        ahead), the one after is built while the answer is on its way, then the answer is read
        and recorded; nothing about the ledger's order changes."""
        report = SendReport()
        ledger = self.store.ledger()
        run = _Run(self, digest_id, ledger, report, tick)
        rechecks = 0
        try:
            while True:
                # Subscribers are read with each batch: an unsubscribe counts within seconds.
                ledger.flush()  # the batch must see every answer
                due = self.store.next_deliveries(digest_id, self.batch, (self.clock(), self.retry_after), chunk)
                if not due:
                    report.waiting, report.next_try = self.store.waiting(digest_id, self.retry_after, chunk)
                    if report.next_try is not None and report.next_try <= self.clock() and rechecks < 3:
                        rechecks += 1
                        continue  # became due since the query
                    break
                # Every delivery seen changes state (or another sender took it), so this ends.
                if isinstance(self.transport, BatchTransport):
                    if run.send_calls(self.transport, due, build, should_stop):
                        return report
                    continue
                ahead: dict[int, tuple[Build, Message | None]] = {}  # built ahead, by position in `due`
                for i, delivery in enumerate(due):
                    if should_stop():  # a clean stop: the digest stays `sending` for the next start
                        report.stopped = run.answer_in_flight() is None  # else it paused the digest
                        return report
                    if run.in_flight is not None:  # built while its answer is on its way: this one, the next
                        for j in range(i, min(i + 2, len(due))):
                            if j not in ahead:
                                ahead[j] = run.build_ahead(due[j], build)
                    if run.answer_in_flight() is not None:
                        return report
                    message = run.prepare(delivery, ahead.pop(i, (build, None))[0])
                    if message is None:
                        if run.stopped:
                            return report
                        continue
                    if run.pace(1) and should_stop():  # asked during the wait: nothing claimed yet
                        report.stopped = True
                        return report
                    if not ledger.claim(delivery, self.clock()):
                        continue  # another sender has it
                    if run.hand_over(delivery, message, ahead.get(i + 1, (build, None))[1]) is not None:
                        return report
                if run.answer_in_flight() is not None:
                    return report
            if report.waiting:
                when = f"{report.next_try:%Y-%m-%d %H:%M:%S} UTC" if report.next_try else "?"
                log.info("%d deliveries wait for another try, the first at %s", report.waiting, when)
            elif not self.store.finish_digest(digest_id):
                # Never `done` from `planning` (its readers not all planned: Newsletter.send
                # plans the rest first) nor from `paused` (the operator's, at the last message),
                # nor while another chunk has open deliveries (its job finishes the digest).
                log.info("digest #%d: nothing due; left %s", digest_id, self.store.digest(digest_id).status)
            return report
        finally:  # each runs even when the one before raises (a lost database connection)
            try:
                run.answer_in_flight()  # a message handed over before an error: its answer recorded
            finally:
                try:
                    ledger.flush()
                finally:
                    try:
                        ledger.close()
                    finally:
                        try:
                            self.transport.close()
                        finally:
                            if self.rate is not None:
                                self.rate.give_back()  # the tokens taken and not spent

    def _pause(self, digest_id: int, report: SendReport, errors_in_a_row: int) -> SendReport:
        self.store.set_digest_status(digest_id, "paused")
        report.paused, report.pause_reason = True, f"{errors_in_a_row} errors in a row"
        log.error("paused after %d errors in a row; `digest resume` continues", errors_in_a_row)
        return report
