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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from .mail import Message
from .model import Delivery
from .store import EARLIER, GAVE_UP, SENT_AGAIN, UNANSWERED, Ledger, Store
from .transports import BatchTransport, Sent, Transport, TransportError, split

log = logging.getLogger(__name__)


Build = Callable[[Delivery], Message | None]  # None: skip (unsubscribed since the plan, say)
Refused = Callable[[Delivery, str], None]  # the receiver says the address does not exist: why


class SharedRate(Protocol):
    """A bucket every sender shares (store.SendTokens): take n tokens, the seconds to wait
    before sending them; `give_back` what was taken and not spent when the run ends."""

    def __call__(self, count: int) -> float: ...

    def give_back(self) -> None: ...


@dataclass
class SendReport:
    sent: int = 0
    uncertain: int = 0
    failed: int = 0
    skipped: int = 0
    retried: int = 0
    paused: bool = False
    pause_reason: str = ""  # why it paused itself, for the operator (and the alert)
    stopped: bool = False  # asked to stop (SIGTERM): unfinished, resumed at the next start
    waiting: int = 0  # deliveries left for a later try (the digest stays `sending`)
    next_try: datetime | None = None  # when the first of them is due
    queued: int = 0  # fan-out: chunks handed to the workers, which send them


class BuildProblem(Exception):
    """This one subscriber's message cannot be made (bad data): their delivery fails, the rest go."""


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
        whose answer was not committed yet."""
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


class _Run:
    """One run's state (errors in a row, the pacing, the report): what happens to each
    delivery before its send, and with the transport's answer."""

    def __init__(self, sender: Sender, digest_id: int, ledger: Ledger, report: SendReport,
                 tick: Callable[[int], None]) -> None:  # fmt: skip
        self.sender, self.digest_id, self.ledger, self.report, self.tick = sender, digest_id, ledger, report, tick
        self.clock, self.counted = sender.clock, sender.counted
        self.errors_in_a_row = 0
        self.next_slot = sender.monotonic()
        self.in_flight: Delivery | None = None  # handed over, its answer not read yet
        self.stopped = False  # paused by errors in a row while building: the run returns its report

    def pace(self, count: int) -> bool:
        """Wait for the slot of the next `count` messages: `messages_per_second` at most, in
        this process or (`rate`) in every process sharing the bucket; True when it waited (a
        stop may have come meanwhile). An answer still to be recorded is recorded before any wait."""
        sender = self.sender
        if sender.rate is not None:
            wait = sender.rate(count)
        else:
            now = sender.monotonic()
            start = max(self.next_slot, now)
            self.next_slot, wait = start + count * sender.interval, start - now
        if wait <= 0:
            return False
        self.ledger.flush()
        sender.sleep(wait)
        return True

    def mark(self, delivery_id: int, status: str, *, error: str | None = None, provider_id: str | None = None,
             later: bool = False) -> None:  # fmt: skip
        """Record an answer; `later`: with the next claim, or at the latest before any wait."""
        self.ledger.mark(delivery_id, status, self.clock(), error=error, provider_id=provider_id, later=later)
        self.counted("retried" if status in ("pending", "sending") else status)

    def give_up(self, delivery: Delivery, reason: str, later: bool = False) -> None:
        """Failed; or, when an earlier try may have been delivered, uncertain still."""
        if delivery.doubtful:
            self.mark(delivery.id, "uncertain", error=f"{UNANSWERED}by an earlier try; then {reason}", later=later)
            self.report.uncertain += 1
        else:
            self.mark(delivery.id, "failed", error=reason, later=later)
            self.report.failed += 1

    def prepare(self, delivery: Delivery, build: Build) -> Message | None:
        """The delivery's message; None when there is nothing to send (settled, given up,
        skipped; `stopped` when errors in a row paused the digest)."""
        report = self.report
        if delivery.status == "sending":  # claimed, never answered: stopped mid-send
            why = f"{UNANSWERED}the sending process stopped before its answer was recorded"
            if self.ledger.settle_unanswered(delivery, self.clock(), why):
                self.counted("uncertain")
                report.uncertain += 1
                log.warning("delivery to %s is uncertain: %s", delivery.email_key, why)
            return None
        if delivery.attempts >= self.sender.max_tries:  # the waits were shortened since
            self.give_up(delivery, f"{GAVE_UP}{delivery.attempts} tries")
            return None
        try:
            message = build(delivery)
        except BuildProblem as exc:
            self.give_up(delivery, f"cannot build the message: {exc}")
            log.warning("delivery to %s failed: cannot build the message: %s", delivery.email_key, exc)
            # One reader's data fails one delivery; every message failing means
            # something all share is broken: pause for the operator, never `done`.
            self.errors_in_a_row += 1
            if self.errors_in_a_row >= self.sender.pause_after:
                self.sender._pause(self.digest_id, report, self.errors_in_a_row)
                self.stopped = True
            return None
        if message is None:  # unsubscribed since the plan, or nothing for them
            self.mark(delivery.id, "skipped")
            report.skipped += 1
        return message

    def build_ahead(self, delivery: Delivery, build: Build) -> tuple[Build, Message | None]:
        """`build` run now, when `prepare` will ask for the message (while the last message's
        answer is on its way): (what `prepare` then gets instead of `build`, the message if one
        was made). A BuildProblem is given back to `prepare`, so it is counted after the last
        answer is, as when built in turn."""
        if delivery.status == "sending" or delivery.attempts >= self.sender.max_tries:
            return build, None  # prepare builds nothing
        try:
            message = build(delivery)
        except BuildProblem as exc:
            problem = exc

            def refused(_delivery: Delivery) -> Message | None:
                raise problem

            return refused, None
        return (lambda _delivery: message), message

    def hand_over(self, delivery: Delivery, message: Message, following: Message | None) -> SendReport | None:
        """Start sending a claimed delivery's message (`following`: the next one's, when it was
        built ahead); `answer_in_flight` reads its answer. An error raised at once (nothing was
        handed over) is recorded at once: the report when the digest paused."""
        try:
            self.sender.steps.start(message, following)
        except TransportError as exc:
            return self.answered(delivery, exc)
        self.in_flight = delivery
        return None

    def answer_in_flight(self) -> SendReport | None:
        """Wait for the answer to the message handed over, if any, and record it (a success
        with the next claim, see Ledger.mark); the report when the digest paused."""
        delivery, self.in_flight = self.in_flight, None
        if delivery is None:
            return None
        try:
            answer: Sent | TransportError = self.sender.steps.finish()
        except TransportError as exc:
            answer = exc
        return self.answered(delivery, answer)

    def answered(self, delivery: Delivery, answer: Sent | TransportError) -> SendReport | None:
        """Record the transport's answer (a success with the next claim, see Ledger.mark); the
        report when the digest paused and the run must end."""
        if isinstance(answer, TransportError) and answer.broken:  # nothing can go: give it back, stop
            self.ledger.unclaim(delivery, str(answer))
            return self.broken(answer)
        if self.record(delivery, answer, later=isinstance(answer, Sent)):
            self.errors_in_a_row += 1
            if self.errors_in_a_row >= self.sender.pause_after:
                return self.sender._pause(self.digest_id, self.report, self.errors_in_a_row)
        else:
            self.errors_in_a_row = 0
        return None

    def broken(self, exc: TransportError) -> SendReport:
        """The transport cannot send at all: the digest pauses for the operator."""
        report = self.report
        self.sender.store.set_digest_status(self.digest_id, "paused")
        report.paused, report.pause_reason = True, f"{exc} ({exc.hint})" if exc.hint else str(exc)
        log.error("paused: %s (%s); fix it, then `publisher digest resume`", exc, exc.hint)
        return report

    def record(self, delivery: Delivery, answer: Sent | TransportError, later: bool) -> bool:
        """Mark a claimed delivery with its answer (not a `broken` one); True for an error."""
        report, sender = self.report, self.sender
        if isinstance(answer, TransportError):
            exc = answer
            tries = delivery.attempts + 1
            if exc.uncertain:  # it may have gone out: never sent again by itself
                self.mark(delivery.id, "uncertain", error=UNANSWERED + exc.message, later=later)
                report.uncertain += 1
                log.warning("delivery to %s is uncertain: %s", delivery.email_key, exc)
            elif exc.retryable and tries < sender.max_tries:  # back in the queue
                error = EARLIER + exc.message if delivery.doubtful else exc.message  # the reply
                self.mark(delivery.id, "pending", error=error, later=later)
                report.retried += 1
            else:
                reason = f"{GAVE_UP}{tries} tries: {exc.message}" if exc.retryable else exc.message
                self.give_up(delivery, reason, later=later)
                log.warning("delivery to %s failed: %s", delivery.email_key, exc)
                if exc.bounced:
                    self.ledger.flush()
                    sender.refused(delivery, str(exc))
            return True
        sent = answer
        if delivery.doubtful:  # sent again on request: the earlier try may have arrived too
            self.mark(delivery.id, "uncertain", error=SENT_AGAIN, provider_id=sent.provider_id, later=later)
            report.uncertain += 1
        else:
            self.mark(delivery.id, "sent", provider_id=sent.provider_id, later=True)
            report.sent += 1
        self.tick(1)
        return False

    def send_calls(self, transport: BatchTransport, due: list[Delivery], build: Build,
                   should_stop: Callable[[], bool]) -> bool:  # fmt: skip
        """Send `due` through a batch API, one call at a time (claimed together, each delivery
        marked with its own outcome); True when the run must end (stopped or paused)."""
        ready: list[tuple[Delivery, Message]] = []
        for delivery in due:
            if should_stop():
                self.report.stopped = True
                return True
            message = self.prepare(delivery, build)
            if message is not None:
                ready.append((delivery, message))
            elif self.stopped:
                return True
        for call in transport.calls([message for _, message in ready]):
            if should_stop():  # a clean stop: what was not claimed stays pending
                self.report.stopped = True
                return True
            if self.pace(len(call)) and should_stop():  # asked during the wait: nothing claimed yet
                self.report.stopped = True
                return True
            group = [ready[i] for i in call]
            claimed = self.ledger.claim_all([delivery for delivery, _ in group], self.clock())
            group = [pair for pair, mine in zip(group, claimed, strict=True) if mine]  # else another sender's
            if not group:
                continue
            whole: TransportError | None = None
            try:
                outcomes: list[Sent | TransportError] = transport.send_batch([message for _, message in group])
            except TransportError as exc:
                whole, outcomes = exc, [exc] * len(group)
            if self.answered_call([delivery for delivery, _ in group], outcomes, whole):
                return True
        return False

    def answered_call(self, deliveries: list[Delivery], outcomes: list[Sent | TransportError],
                      whole: TransportError | None) -> bool:  # fmt: skip
        """Record one call's outcomes, committed together; True when the digest paused. A call
        that failed as a whole (`whole`) counts as one error in a row."""
        broken: TransportError | None = None
        for delivery, outcome in zip(deliveries, outcomes, strict=True):
            if isinstance(outcome, TransportError) and outcome.broken:
                self.ledger.unclaim(delivery, str(outcome))
                broken = outcome
                continue
            error = self.record(delivery, outcome, later=True)
            if whole is None:
                self.errors_in_a_row = self.errors_in_a_row + 1 if error else 0
        self.errors_in_a_row += whole is not None
        self.ledger.flush()
        if broken is not None:
            self.broken(broken)
            return True
        if self.errors_in_a_row >= self.sender.pause_after:
            self.sender._pause(self.digest_id, self.report, self.errors_in_a_row)
            return True
        return False
