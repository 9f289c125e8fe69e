"""The delivery ledger: at most one e-mail per digest and subscriber, resumable, paced, able to pause."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address

import pytest

from conftest import Site
from publisher.delivery import Sender, SendReport
from publisher.mail import Envelope, Message, build_message
from publisher.model import Delivery
from publisher.store import Store
from publisher.transports import Sent, TransportError
from publisher.transports.outbox import MemoryTransport

NOW = datetime(2026, 11, 30, tzinfo=UTC)
READERS = [f"r{n}@example.com" for n in range(5)]


def build(delivery: Delivery) -> Message:
    envelope = Envelope(
        Address("高新院", addr_spec="news@example.org"), Address(addr_spec=delivery.email_key), "周报", NOW,
        "example.org", "周报 <digest.example.org>", "https://example.org/unsubscribe/t",
        message_id=delivery.message_id,
    )  # fmt: skip
    return build_message(envelope, "正文", "<p>正文</p>")


class Flaky:
    """Fails as scripted per address (a list of errors to raise first), then delivers."""

    def __init__(self, script: dict[str, list[TransportError]]) -> None:
        self.script = {k: list(v) for k, v in script.items()}
        self.delivered: list[str] = []

    def send(self, message: Message) -> Sent:
        to = message.recipient
        if self.script.get(to):
            raise self.script[to].pop(0)
        self.delivered.append(to)
        return Sent(provider_id=f"id-{to}")

    def close(self) -> None:
        pass


@pytest.fixture
def planned(site: Site) -> Iterator[tuple[Store, int]]:
    """A digest planned for READERS, on the run's backend."""
    yield from _planned(site.store_url)


def _planned(url: str) -> Iterator[tuple[Store, int]]:
    store = Store(url)
    digest_id, created = store.open_digest("scheduled:2026-11-30T00:00:00Z", NOW - timedelta(days=7), NOW, NOW)
    assert created
    store.plan_deliveries(digest_id, [(r, f"<d1.{i}@example.org>") for i, r in enumerate(READERS)], NOW)
    try:
        yield store, digest_id
    finally:
        store.close()


class FakeTime:
    """A clock that moves only when the sender sleeps, so tests wait for nothing."""

    def __init__(self, waits: list[float]) -> None:
        self.now, self.waits = NOW, waits

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += timedelta(seconds=seconds)

    def monotonic(self) -> float:
        return (self.now - NOW).total_seconds()


def refused_at_sending(store: Store) -> Callable[[Delivery, str], None]:
    """What the newsletter's recorder comes to for a refused address: the reader marked bounced."""
    return lambda delivery, why: store.mark_bounced(delivery.email_key, NOW, why)


def sender(store: Store, transport: object, waits: list[float] | None = None, **options: object) -> Sender:
    fake = FakeTime(waits if waits is not None else [])
    return Sender(store, transport, lambda: fake.now, sleep=fake.sleep, monotonic=fake.monotonic,  # type: ignore[arg-type]
                  refused=refused_at_sending(store), **options)  # fmt: skip


class Clocked:
    """A sender on a clock the test moves: runs until nothing waits, each run at the time its
    predecessor said the next try is due (as the scheduler's resume job does)."""

    def __init__(self, store: Store, transport: object, **options: object) -> None:
        self.store, self.transport, self.options = store, transport, options
        self.time = FakeTime([])
        self.tried_at: list[float] = []  # seconds after NOW of each send, of any reader

    def run(self, digest_id: int) -> SendReport:
        def timed(delivery: Delivery) -> Message:
            self.tried_at.append((self.time.now - NOW).total_seconds())
            return build(delivery)

        fake = self.time
        engine = Sender(self.store, self.transport, lambda: fake.now, sleep=fake.sleep, monotonic=fake.monotonic,
                        messages_per_second=0, refused=refused_at_sending(self.store), **self.options)  # type: ignore[arg-type]  # fmt: skip
        return engine.run(digest_id, timed)

    def until_done(self, digest_id: int) -> list[SendReport]:
        reports = [self.run(digest_id)]
        while reports[-1].next_try is not None:
            assert reports[-1].next_try > self.time.now  # a run leaves only what is not due
            self.time.now = reports[-1].next_try
            reports.append(self.run(digest_id))
        return reports


def test_everyone_once_and_a_second_run_sends_nothing(planned: tuple[Store, int]) -> None:
    store, digest_id = planned
    memory = MemoryTransport()
    report = sender(store, memory).run(digest_id, build)
    assert report.sent == 5 and [m.recipient for m in memory.sent] == READERS
    again = MemoryTransport()
    assert sender(store, again).run(digest_id, build).sent == 0 and again.sent == []
    assert store.open_digest("scheduled:2026-11-30T00:00:00Z", NOW, NOW, NOW) == (digest_id, False)
    store.plan_deliveries(digest_id, [(r, "<other>") for r in READERS], NOW)  # planning twice adds nothing
    assert store.delivery_counts(digest_id) == {"sent": 5}


def test_a_temporary_error_waits_for_its_next_try_without_sleeping(planned: tuple[Store, int]) -> None:
    store, digest_id = planned
    later = TransportError("451 later", retryable=True)
    never = TransportError("550 no such user", retryable=False)
    flaky = Flaky({"r1@example.com": [later], "r3@example.com": [never]})
    waits: list[float] = []
    report = sender(store, flaky, waits, messages_per_second=0).run(digest_id, build)
    assert (report.sent, report.failed, report.retried, report.waiting) == (3, 1, 1, 1)
    assert report.next_try == NOW + timedelta(minutes=1) and waits == []  # the run returned instead of sleeping
    assert store.digest(digest_id).status == "sending"  # unfinished: a resume picks it up
    assert sender(store, flaky, messages_per_second=0).run(digest_id, build).sent == 0  # not due yet

    clocked = Clocked(store, flaky)
    clocked.time.now = NOW + timedelta(minutes=1)
    report = clocked.run(digest_id)
    assert (report.sent, report.waiting, report.next_try) == (1, 0, None)
    assert sorted(flaky.delivered) == sorted(set(READERS) - {"r3@example.com"})
    assert store.delivery_counts(digest_id) == {"sent": 4, "failed": 1}
    assert store.digest(digest_id).status == "done"
    [refused] = [p for p in store.delivery_problems(digest_id) if p.status == "failed"]
    assert refused.error == "550 no such user" and not refused.temporary  # `digest retry` leaves it


def test_greylisting_is_outlived_then_the_tries_run_out(planned: tuple[Store, int]) -> None:
    """The default window, 1, 5, 15, 60 minutes and 4 hours: six tries, each at its time."""
    store, digest_id = planned
    greylisted = TransportError("451 4.7.1 greylisted, try again later", retryable=True)
    flaky = Flaky({"r0@example.com": [greylisted] * 6, "r2@example.com": [greylisted] * 5})
    clocked = Clocked(store, flaky)
    reports = clocked.until_done(digest_id)
    minutes = [t / 60 for t in clocked.tried_at]
    assert minutes == [0, 0, 0, 0, 0, 1, 1, 6, 6, 21, 21, 81, 81, 321, 321]
    assert "r2@example.com" in flaky.delivered and "r0@example.com" not in flaky.delivered
    assert [r.waiting for r in reports] == [2, 2, 2, 2, 2, 0]
    [gave_up] = store.delivery_problems(digest_id)
    assert (gave_up.email_key, gave_up.status, gave_up.attempts) == ("r0@example.com", "failed", 6)
    assert gave_up.error == "gave up after 6 tries: 451 4.7.1 greylisted, try again later" and gave_up.temporary


def test_a_waiting_delivery_is_counted_and_listed_with_its_next_try(planned: tuple[Store, int]) -> None:
    store, digest_id = planned
    flaky = Flaky({"r4@example.com": [TransportError("421 too busy", retryable=True)] * 2})
    clocked = Clocked(store, flaky, retry_after=[timedelta(minutes=10), timedelta(hours=2)])
    clocked.run(digest_id)
    clocked.time.now += timedelta(minutes=10)
    report = clocked.run(digest_id)
    assert report.next_try == NOW + timedelta(minutes=10, hours=2)
    delays = [timedelta(minutes=10), timedelta(hours=2)]
    assert store.waiting(digest_id, delays) == (1, report.next_try)
    assert store.due_count(digest_id, report.next_try - timedelta(microseconds=1), delays) == 0
    assert store.due_count(digest_id, report.next_try, delays) == 1
    [waiting] = store.delivery_problems(digest_id)
    assert (waiting.status, waiting.attempts, waiting.waiting, waiting.error) == ("pending", 2, True, "421 too busy")
    assert waiting.last_try == NOW + timedelta(minutes=10)


def confirmed(store: Store, emails: list[str]) -> None:
    from publisher.model import Subscriber, SubscriberStatus

    store.save_subscribers([Subscriber(r, "", (), SubscriberStatus.CONFIRMED, NOW, "import", NOW) for r in emails])


def test_a_timeout_that_may_have_delivered_is_uncertain_and_never_sent_again_by_itself(
    planned: tuple[Store, int],
) -> None:
    store, digest_id = planned
    confirmed(store, READERS)
    timeout = TransportError("no answer after the message was handed over", uncertain=True, retryable=False)
    flaky = Flaky({"r2@example.com": [timeout], "r4@example.com": [timeout]})
    clocked = Clocked(store, flaky, retry_after=[timedelta(minutes=1), timedelta(minutes=5)])
    reports = clocked.until_done(digest_id)
    assert len(reports) == 1 and (reports[0].sent, reports[0].uncertain, reports[0].waiting) == (3, 2, 0)
    assert store.delivery_counts(digest_id) == {"sent": 3, "uncertain": 2}
    assert store.digest(digest_id).status == "done"  # nothing waits: the scheduler has nothing to resume
    clocked.time.now += timedelta(hours=5)
    assert clocked.run(digest_id).sent == 0 and sorted(flaky.delivered) == ["r0@example.com", "r1@example.com",
                                                                          "r3@example.com"]  # fmt: skip
    assert store.retry_deliveries(digest_id, clocked.time.now) == 0  # `digest retry` leaves them alone
    problems = store.delivery_problems(digest_id)
    assert [(p.email_key, p.status, p.unanswered, p.retry_with) for p in problems] == [
        ("r2@example.com", "uncertain", True, "retry --all (may arrive twice)"),
        ("r4@example.com", "uncertain", True, "retry --all (may arrive twice)"),
    ]
    assert problems[0].error == "may have been delivered: no answer after the message was handed over"
    assert [p.email_key for p in store.delivery_problems(digest_id, newest=1)] == ["r4@example.com"]  # the poll's


def test_retry_all_sends_an_uncertain_one_again_and_it_stays_uncertain(planned: tuple[Store, int]) -> None:
    store, digest_id = planned
    confirmed(store, READERS)
    timeout = TransportError("no answer after the message was handed over", uncertain=True, retryable=False)
    greylisted = TransportError("451 greylisted", retryable=True)
    # r2: unanswered, then on the operator's retry greylisted once, then taken.
    flaky = Flaky({"r2@example.com": [timeout, greylisted], "r4@example.com": [timeout]})
    clocked = Clocked(store, flaky, retry_after=[timedelta(minutes=1)])
    clocked.until_done(digest_id)
    assert store.retry_deliveries(digest_id, clocked.time.now, everything=True) == 2
    reports = clocked.until_done(digest_id)
    assert [(r.sent, r.uncertain, r.retried) for r in reports] == [(0, 1, 1), (0, 1, 0)]
    assert flaky.delivered.count("r2@example.com") == 1 and flaky.delivered.count("r4@example.com") == 1
    # The second success does not erase the doubt: the first try may have arrived too.
    assert store.delivery_counts(digest_id) == {"sent": 3, "uncertain": 2}
    problems = store.delivery_problems(digest_id)
    assert {(p.email_key, p.error, p.unanswered, p.retry_with) for p in problems} == {
        (r, "sent again on request after a try that may have been delivered: it may have arrived twice", False, "")
        for r in ("r2@example.com", "r4@example.com")
    }
    assert store.retry_deliveries(digest_id, clocked.time.now, everything=True) == 0  # never a third copy


def test_a_retried_uncertain_one_that_fails_stays_uncertain(planned: tuple[Store, int]) -> None:
    store, digest_id = planned
    confirmed(store, READERS)
    timeout = TransportError("no answer after the message was handed over", uncertain=True, retryable=False)
    flaky = Flaky({"r2@example.com": [timeout, TransportError("552 mailbox full", retryable=False)]})
    clocked = Clocked(store, flaky)
    clocked.until_done(digest_id)
    assert store.retry_deliveries(digest_id, clocked.time.now, everything=True) == 1
    assert clocked.run(digest_id).uncertain == 1
    [problem] = store.delivery_problems(digest_id)
    assert problem.status == "uncertain" and problem.unanswered  # the first try may still have arrived
    assert problem.error == "may have been delivered: by an earlier try; then 552 mailbox full"


def test_a_retried_uncertain_one_keeps_its_doubt_through_a_pause(planned: tuple[Store, int]) -> None:
    """Giving the delivery back at a refused login erased the prefix that says an earlier try may
    have arrived, so the success after `digest resume` was recorded `sent`."""
    store, digest_id = planned
    confirmed(store, READERS)
    timeout = TransportError("no answer after the message was handed over", uncertain=True, retryable=False)
    refused = TransportError("535 login refused", retryable=False, broken=True)
    flaky = Flaky({"r2@example.com": [timeout, refused]})
    clocked = Clocked(store, flaky)
    clocked.until_done(digest_id)
    assert store.retry_deliveries(digest_id, clocked.time.now, everything=True) == 1
    assert clocked.run(digest_id).paused
    [waiting] = store.delivery_problems(digest_id)
    assert waiting.error.startswith("an earlier try may have been delivered; 535 login refused"), waiting.error
    assert clocked.run(digest_id).uncertain == 1  # resumed once the login is fixed
    assert store.delivery_counts(digest_id) == {"sent": 4, "uncertain": 1}
    [problem] = store.delivery_problems(digest_id)
    assert "it may have arrived twice" in problem.error


def test_a_crash_mid_send_is_uncertain_and_not_sent_again_by_itself(planned: tuple[Store, int]) -> None:
    store, digest_id = planned
    confirmed(store, READERS)
    first = store.open_deliveries(digest_id)[0][0]
    store.mark_delivery(first, "sending", NOW, tried=True)  # killed after marking, before the answer
    memory = MemoryTransport()
    report = sender(store, memory).run(digest_id, build)
    assert (report.sent, report.uncertain) == (4, 1) and len(memory.sent) == 4
    assert store.delivery_counts(digest_id) == {"sent": 4, "uncertain": 1}
    assert "r0@example.com" not in [m.recipient for m in memory.sent]
    [problem] = store.delivery_problems(digest_id)
    assert problem.unanswered and "stopped before its answer was recorded" in problem.error
    assert store.retry_deliveries(digest_id, NOW, everything=True) == 1  # the operator asks
    assert sender(store, memory).run(digest_id, build).uncertain == 1
    resent = [m for m in memory.sent if m.recipient == "r0@example.com"]
    assert [m.message_id for m in resent] == ["<d1.0@example.org>"]  # the same id as the lost try


def test_a_crash_on_a_later_try_is_uncertain_at_the_next_run_not_after_its_wait(planned: tuple[Store, int]) -> None:
    """A `sending` row that already had an error was due only after its retry wait (up to hours),
    listed as waiting for `retry`, which skips `sending` rows."""
    store, digest_id = planned
    confirmed(store, READERS)
    waits = [timedelta(hours=4), timedelta(hours=4)]
    clocked = Clocked(store, Flaky({"r0@example.com": [TransportError("451 greylisted", retryable=True)]}),
                      retry_after=waits)  # fmt: skip
    assert clocked.run(digest_id).retried == 1
    clocked.time.now += waits[0]
    [r0] = store.next_deliveries(digest_id, 10)
    store.mark_delivery(r0.id, "sending", clocked.time.now, tried=True)  # killed on its second try
    clocked.time.now += timedelta(minutes=1)
    assert store.waiting(digest_id, waits) == (1, clocked.time.now - timedelta(minutes=1))  # due: the next run
    [problem] = store.delivery_problems(digest_id)
    assert (problem.status, problem.waiting, problem.retry_with) == ("sending", False, "")
    report = clocked.run(digest_id)
    assert (report.uncertain, report.next_try) == (1, None)
    assert store.delivery_counts(digest_id) == {"sent": 4, "uncertain": 1}


def test_the_untried_go_first_in_plan_order_then_the_tried_by_attempts(planned: tuple[Store, int]) -> None:
    """Deliveries are taken in the order of (attempts, id), however the answers are cut: the
    untried ones are asked for alone while there are any, then the rest, sorted."""
    store, digest_id = planned
    ids = {d.email_key: d.id for d in store.next_deliveries(digest_id, 10)}
    r0, r1, r2, r3, r4 = READERS
    for reader, tries, status in ((r3, 2, "pending"), (r1, 1, "pending"), (r4, 1, "sending")):
        for _ in range(tries):
            store.mark_delivery(ids[reader], status, NOW, tried=True)
    taken: list[list[str]] = []
    while batch := store.next_deliveries(digest_id, 2):
        taken.append([d.email_key for d in batch])
        for d in batch:
            store.mark_delivery(d.id, "sent", NOW)
    assert taken == [[r0, r2], [r1, r4], [r3]]


def test_too_many_errors_in_a_row_pause_the_digest_and_resume_continues(planned: tuple[Store, int]) -> None:
    store, digest_id = planned
    down = TransportError("connection refused", retryable=True)
    flaky = Flaky({r: [down] * 5 for r in READERS})
    report = sender(store, flaky, pause_after=3, messages_per_second=0).run(digest_id, build)
    assert report.paused and flaky.delivered == []
    store.set_digest_status(digest_id, "sending")  # resumed (Newsletter.send does it): never `done` from `paused`
    clocked = Clocked(store, MemoryTransport())  # the server is back
    reports = clocked.until_done(digest_id)
    assert [r.sent for r in reports] == [2, 3] and not reports[-1].paused  # the 3 errors after their wait
    assert store.digest(digest_id).status == "done"


def test_retry_puts_back_the_temporary_failures_and_leaves_the_rest(planned: tuple[Store, int]) -> None:
    from dataclasses import replace

    from publisher.model import Subscriber, SubscriberStatus

    store, digest_id = planned
    store.save_subscribers(
        [Subscriber(r, "", (), SubscriberStatus.CONFIRMED, NOW, "import", NOW) for r in READERS]
    )  # fmt: skip
    greylisted = TransportError("451 greylisted", retryable=True)
    flaky = Flaky({
        "r0@example.com": [greylisted] * 3,
        "r1@example.com": [TransportError("552 mailbox full", retryable=False)],
        "r2@example.com": [greylisted] * 4,  # runs out of tries, then unsubscribes
        "r3@example.com": [greylisted],
    })  # fmt: skip
    clocked = Clocked(store, flaky, retry_after=[timedelta(minutes=1)])
    clocked.run(digest_id)
    assert store.delivery_counts(digest_id) == {"sent": 1, "failed": 1, "pending": 3}
    clocked.time.now += timedelta(seconds=30)  # the operator does not wait the minute
    assert store.retry_deliveries(digest_id, clocked.time.now) == 3
    assert clocked.run(digest_id).sent == 1  # r3; r0 and r2 wait again, with both tries again
    clocked.time.now += timedelta(minutes=1)
    clocked.run(digest_id)  # r0 and r2 give up
    r2 = store.subscriber("r2@example.com")
    assert r2 is not None
    store.save_subscribers([replace(r2, status=SubscriberStatus.UNSUBSCRIBED)])
    assert store.digest(digest_id).status == "done"

    assert store.retry_deliveries(digest_id, clocked.time.now) == 1  # r0 only
    assert store.digest(digest_id).status == "sending"
    assert (clocked.run(digest_id).sent, flaky.delivered.count("r0@example.com")) == (1, 1)
    assert store.retry_deliveries(digest_id, clocked.time.now, everything=True) == 1  # r1, never r2
    assert clocked.run(digest_id).sent == 1
    assert store.delivery_counts(digest_id) == {"sent": 4, "failed": 1}
    [left] = store.delivery_problems(digest_id)
    assert left.email_key == "r2@example.com" and left.error == "gave up after 2 tries: 451 greylisted"


def test_pacing_keeps_to_messages_per_second(planned: tuple[Store, int]) -> None:
    store, digest_id = planned

    class FakeTime:
        now = 0.0
        waits: list[float] = []

        def monotonic(self) -> float:
            return self.now

        def sleep(self, seconds: float) -> None:
            self.waits.append(seconds)
            self.now += seconds

    fake = FakeTime()
    Sender(store, MemoryTransport(), lambda: NOW, messages_per_second=2, sleep=fake.sleep,
           monotonic=fake.monotonic, refused=refused_at_sending(store)).run(digest_id, build)  # fmt: skip
    assert fake.waits == pytest.approx([0.5, 0.5, 0.5, 0.5]) and fake.now == pytest.approx(2.0)


def test_two_senders_that_read_the_same_rows_send_each_once(planned: tuple[Store, int]) -> None:
    """Claims: after the first sender has read its chunk, a second one sends everything; the
    first then finds every row changed and sends nothing. (A row in flight is protected by
    Store.send_lock, which the digest commands hold: see the next test.)"""
    store, digest_id = planned
    inner, outer = MemoryTransport(), MemoryTransport()
    started: list[bool] = []

    def build_then_race(delivery: Delivery) -> Message:
        if not started:
            started.append(True)
            sender(store, inner).run(digest_id, build)
        return build(delivery)

    sender(store, outer).run(digest_id, build_then_race)
    assert sorted(m.recipient for m in inner.sent) == sorted(READERS) and outer.sent == []
    assert store.delivery_counts(digest_id) == {"sent": 5}


def test_a_broken_transport_pauses_without_using_up_attempts(planned: tuple[Store, int]) -> None:
    store, digest_id = planned
    refused = TransportError("535 login refused", "check the password", retryable=False, broken=True)
    flaky = Flaky({"r0@example.com": [refused]})
    report = sender(store, flaky, messages_per_second=0).run(digest_id, build)
    assert report.paused and report.failed == 0 and not flaky.delivered
    assert store.delivery_counts(digest_id) == {"pending": 5}
    [first] = [d for d in store.next_deliveries(digest_id, 10) if d.email_key == "r0@example.com"]
    assert first.attempts == 0  # the refused login was nobody's fault
    report = sender(store, flaky, messages_per_second=0).run(digest_id, build)
    assert report.sent == 5 and not report.paused


def test_a_stop_asked_during_the_pacing_wait_claims_nothing_more(planned: tuple[Store, int]) -> None:
    store, digest_id = planned
    transport, stop = MemoryTransport(), []
    fake = FakeTime([])

    def sleep_then_asked_to_stop(seconds: float) -> None:
        fake.sleep(seconds)
        stop.append(True)  # the worker's shutdown came while it waited

    paced = Sender(store, transport, lambda: fake.now, messages_per_second=1, sleep=sleep_then_asked_to_stop,
                   monotonic=fake.monotonic, refused=refused_at_sending(store))  # fmt: skip
    report = paced.run(digest_id, build, should_stop=lambda: bool(stop))
    assert report.stopped and len(transport.sent) == 1  # the first needed no wait; the second was not sent
    assert store.delivery_counts(digest_id) == {"sent": 1, "pending": 4}


def test_one_process_sends_from_a_store_at_a_time(planned: tuple[Store, int]) -> None:
    from publisher.errors import StoreError

    store, _digest_id = planned
    with store.send_lock():
        with pytest.raises(StoreError, match="another process"):
            with store.send_lock():
                pass
    with store.send_lock():  # released
        pass
