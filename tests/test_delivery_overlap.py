"""A transport that sends in two steps (SMTP: `start` hands the message over, `finish` reads the
answer) lets the send engine build the next message while the receiver reads the last one. The
ledger keeps its order all the same: a delivery is claimed before its message is handed over,
its answer recorded after it is read, errors in a row counted in send order, and a run that
ends for any reason (a stop, a pause, an error) records the answer of the message in flight."""

from __future__ import annotations

import pytest
from test_delivery import READERS, build, planned, sender  # noqa: F401  (planned: fixture)
from test_delivery_marks import statuses

from publisher.delivery import BuildProblem
from publisher.mail import Message
from publisher.model import Delivery
from publisher.store import Store
from publisher.transports import Sent, TransportError


class TwoSteps:
    """Hands over in `start`, answers in `finish` (as scripted per address: an error to raise),
    and logs both in `events` beside whatever the test logs there."""

    def __init__(self, events: list[str], errors: dict[str, TransportError] | None = None) -> None:
        self.events, self.errors = events, dict(errors or {})
        self.started: Message | None = None
        self.delivered: list[str] = []

    def start(self, message: Message, following: Message | None = None) -> None:
        assert self.started is None, "one message at a time"
        self.started = message
        self.events.append(f"start {message.recipient}" + (f" then {following.recipient}" if following else ""))

    def finish(self) -> Sent:
        message, self.started = self.started, None
        assert message is not None
        to = message.recipient
        self.events.append(f"finish {to}")
        if to in self.errors:
            raise self.errors.pop(to)
        self.delivered.append(to)
        return Sent(provider_id=f"id-{to}")

    def send(self, message: Message) -> Sent:
        self.start(message)
        return self.finish()

    def close(self) -> None:
        self.events.append("close")


def logged(events: list[str], store: Store, digest_id: int) -> object:
    """`build`, logging each build with the statuses the ledger holds at that moment."""

    def make(delivery: Delivery) -> Message:
        events.append(f"build {delivery.email_key}")
        if delivery.email_key == READERS[1]:
            # r0 was handed over and its answer not read yet: claimed, not marked.
            assert statuses(store, digest_id)[READERS[0]] == "sending"
        return build(delivery)

    return make


def test_the_next_message_is_built_while_the_last_ones_answer_is_on_its_way(planned: tuple[Store, int]) -> None:  # noqa: F811
    store, digest_id = planned
    events: list[str] = []
    transport = TwoSteps(events)
    report = sender(store, transport, messages_per_second=0).run(digest_id, logged(events, store, digest_id))  # type: ignore[arg-type]
    assert report.sent == len(READERS) and transport.delivered == READERS
    r0, r1, r2, r3, r4 = READERS
    # r1 and r2 built while r0's answer is on its way; from then on each message is started
    # naming the next (built already), and the one after is built during its answer.
    assert events == [
        f"build {r0}", f"start {r0}",
        f"build {r1}", f"build {r2}", f"finish {r0}", f"start {r1} then {r2}",
        f"build {r3}", f"finish {r1}", f"start {r2} then {r3}",
        f"build {r4}", f"finish {r2}", f"start {r3} then {r4}",
        f"finish {r3}", f"start {r4}", f"finish {r4}", "close",
    ]  # fmt: skip
    assert set(statuses(store, digest_id).values()) == {"sent"}


def test_an_error_building_the_next_message_still_records_the_one_in_flight(planned: tuple[Store, int]) -> None:  # noqa: F811
    store, digest_id = planned
    events: list[str] = []

    def broken_template(delivery: Delivery) -> Message:
        if delivery.email_key == READERS[1]:
            raise RuntimeError("the theme's template is broken")
        return build(delivery)

    with pytest.raises(RuntimeError, match="template"):
        sender(store, TwoSteps(events), messages_per_second=0).run(digest_id, broken_template)
    assert statuses(store, digest_id)[READERS[0]] == "sent"  # its answer read and recorded, not left `sending`
    assert statuses(store, digest_id)[READERS[1]] == "pending"
    assert events[-1] == "close"


def test_errors_in_a_row_count_in_send_order(planned: tuple[Store, int]) -> None:  # noqa: F811
    """r0 and r2 cannot be built, r1 is sent between them: r2's problem is built while r1's
    answer is on its way, and counted after it (a success resets the count), so two problems
    with a success between them do not pause a digest that pauses after two in a row."""
    store, digest_id = planned

    def some_broken(delivery: Delivery) -> Message:
        if delivery.email_key in (READERS[0], READERS[2]):
            raise BuildProblem("a name no header can carry")
        return build(delivery)

    report = sender(store, TwoSteps([]), messages_per_second=0, pause_after=2).run(digest_id, some_broken)
    assert not report.paused and (report.sent, report.failed) == (3, 2)
    assert store.digest(digest_id).status == "done"


def test_an_error_in_the_answer_counts_before_the_next_messages_problem(planned: tuple[Store, int]) -> None:  # noqa: F811
    """r0's answer is an error and r1 cannot be built: two errors in a row, in that order."""
    store, digest_id = planned
    refused = TransportError("452 mailbox full", "later", retryable=True)

    def second_broken(delivery: Delivery) -> Message:
        if delivery.email_key == READERS[1]:
            raise BuildProblem("a name no header can carry")
        return build(delivery)

    transport = TwoSteps([], {READERS[0]: refused})
    report = sender(store, transport, messages_per_second=0, pause_after=2).run(digest_id, second_broken)
    assert report.paused and report.pause_reason == "2 errors in a row"
    assert (report.retried, report.failed, transport.delivered) == (1, 1, [])
    assert statuses(store, digest_id)[READERS[0]] == "pending"


def test_a_stop_while_a_message_is_in_flight_records_its_answer(planned: tuple[Store, int]) -> None:  # noqa: F811
    store, digest_id = planned
    events: list[str] = []
    asked = iter([False, False, True])  # before r0, before r1 (r0 in flight), then stop
    report = sender(store, TwoSteps(events), messages_per_second=0).run(
        digest_id, build, should_stop=lambda: next(asked)
    )
    assert report.stopped and report.sent == 2
    assert [statuses(store, digest_id)[r] for r in READERS[:3]] == ["sent", "sent", "pending"]
    r0, r1, r2 = READERS[:3]
    assert events == [f"start {r0}", f"finish {r0}", f"start {r1} then {r2}", f"finish {r1}", "close"]
