"""One send run's steps (delivery.Sender.run drives them): what happens to each delivery before
its send (settled, given up, skipped, built, possibly ahead of its turn) and with the
transport's answer (marked, counted as an error in a row, a refused address recorded), and
the pacing between messages."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from .mail import Message
from .model import Delivery
from .store import EARLIER, GAVE_UP, SENT_AGAIN, UNANSWERED, Ledger
from .transports import BatchTransport, Sent, TransportError

if TYPE_CHECKING:
    from .delivery import Sender

log = logging.getLogger("publisher.delivery")  # the send engine's log, as before the split


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
    pause_reason: str = ""  # why it paused itself, for the operator (and the alert)
    stopped: bool = False  # asked to stop (SIGTERM): unfinished, resumed at the next start
    waiting: int = 0  # deliveries left for a later try (the digest stays `sending`)
    next_try: datetime | None = None  # when the first of them is due
    queued: int = 0  # fan-out: chunks handed to the workers, which send them


class BuildProblem(Exception):
    """This one subscriber's message cannot be made (bad data): their delivery fails, the rest go."""


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
