"""The delivery ledger: at most one e-mail per digest and subscriber, resumable, paced, able to pause."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.headerregistry import Address

import pytest

from conftest import Site
from publisher.delivery import Sender
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
def planned(site: Site) -> tuple[Store, int]:
    store = Store(f"sqlite:///{site.db}")
    digest_id, created = store.open_digest("scheduled:2026-11-30T00:00:00Z", NOW - timedelta(days=7), NOW, NOW)
    assert created
    store.plan_deliveries(digest_id, [(r, f"<d1.{i}@example.org>") for i, r in enumerate(READERS)], NOW)
    return store, digest_id


class FakeTime:
    """A clock that moves only when the sender sleeps, so tests wait for nothing."""

    def __init__(self, waits: list[float]) -> None:
        self.now, self.waits = NOW, waits

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += timedelta(seconds=seconds)

    def monotonic(self) -> float:
        return (self.now - NOW).total_seconds()


def sender(store: Store, transport: object, waits: list[float] | None = None, **options: object) -> Sender:
    fake = FakeTime(waits if waits is not None else [])
    return Sender(store, transport, lambda: fake.now, sleep=fake.sleep, monotonic=fake.monotonic, **options)  # type: ignore[arg-type]


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


def test_retryable_errors_retry_with_backoff_and_permanent_ones_fail(planned: tuple[Store, int]) -> None:
    store, digest_id = planned
    later = TransportError("451 later", retryable=True)
    never = TransportError("550 no such user", retryable=False)
    flaky = Flaky({"r1@example.com": [later], "r3@example.com": [never]})
    waits: list[float] = []
    report = sender(store, flaky, waits, messages_per_second=0).run(digest_id, build)
    assert (report.sent, report.failed, report.retried) == (4, 1, 1)
    assert sorted(flaky.delivered) == sorted(set(READERS) - {"r3@example.com"})
    assert sum(waits) == 30.0 and max(waits) <= 5.0  # minutes-scale retry, waited in short naps (a stop is seen)
    assert store.delivery_counts(digest_id) == {"sent": 4, "failed": 1}


def test_a_timeout_that_may_have_delivered_makes_the_later_success_uncertain(planned: tuple[Store, int]) -> None:
    store, digest_id = planned
    timeout = TransportError("timed out after DATA", retryable=True, uncertain=True)
    flaky = Flaky({"r2@example.com": [timeout], "r4@example.com": [timeout, timeout, timeout]})
    report = sender(store, flaky, messages_per_second=0, max_attempts=3).run(digest_id, build)
    assert (report.sent, report.uncertain, report.failed) == (3, 1, 1)
    assert store.delivery_counts(digest_id) == {"sent": 3, "uncertain": 1, "failed": 1}


def test_a_crash_mid_send_resends_once_and_marks_it_uncertain(planned: tuple[Store, int]) -> None:
    store, digest_id = planned
    first = store.open_deliveries(digest_id)[0][0]
    store.mark_delivery(first, "sending", NOW, tried=True)  # killed after marking, before the answer
    memory = MemoryTransport()
    report = sender(store, memory).run(digest_id, build)
    assert (report.sent, report.uncertain) == (4, 1) and len(memory.sent) == 5
    assert store.delivery_counts(digest_id) == {"sent": 4, "uncertain": 1}
    resent = [m for m in memory.sent if m.recipient == "r0@example.com"]
    assert [m.message_id for m in resent] == ["<d1.0@example.org>"]  # the same id as the lost try


def test_too_many_errors_in_a_row_pause_the_digest_and_resume_continues(planned: tuple[Store, int]) -> None:
    store, digest_id = planned
    down = TransportError("connection refused", retryable=True)
    flaky = Flaky({r: [down] * 5 for r in READERS})
    report = sender(store, flaky, pause_after=3, max_attempts=10).run(digest_id, build)
    assert report.paused and flaky.delivered == []
    report = sender(store, MemoryTransport()).run(digest_id, build)  # the server is back
    assert report.sent == 5 and not report.paused


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
           monotonic=fake.monotonic).run(digest_id, build)  # fmt: skip
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


def test_one_process_sends_from_a_store_at_a_time(planned: tuple[Store, int]) -> None:
    from publisher.errors import StoreError

    store, _digest_id = planned
    with store.send_lock():
        with pytest.raises(StoreError, match="another process"):
            with store.send_lock():
                pass
    with store.send_lock():  # released
        pass
