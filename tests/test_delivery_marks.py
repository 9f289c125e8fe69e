"""A success's mark waits for the next claim's transaction (one commit per message), so every way
a run ends must still record it: a stop, the operator's pause, a claim the database refuses, a
PostgreSQL connection lost between two messages. And a run whose last marks cannot be recorded
raises the store's error and still closes its transport."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from test_delivery import READERS, build, confirmed, planned, sender  # noqa: F401  (planned: fixture)

from publisher.mail import Message
from publisher.model import Delivery
from publisher.store import Store
from publisher.transports.outbox import MemoryTransport


def statuses(store: Store, digest_id: int) -> dict[str, str]:
    with store.engine.connect() as conn:
        rows = conn.execute(text("select email_key, status from deliveries where digest_id = :d"), {"d": digest_id})
        return {key: status for key, status in rows.all()}


def refuse_update(store: Store, status: str, email_key: str) -> None:
    """The database refuses to set `email_key`'s delivery to `status` (as a lock timeout, a
    serialization failure or a dropped connection would fail that statement)."""
    with store.engine.begin() as conn:
        if store.engine.dialect.name == "sqlite":
            conn.execute(text(
                "create trigger refuse before update of status on deliveries "
                f"when new.status = '{status}' and new.email_key = '{email_key}' "
                "begin select raise(abort, 'refused'); end"))  # fmt: skip
        else:
            conn.execute(text(
                "create function refuse() returns trigger language plpgsql as $$ begin "
                f"if new.status = '{status}' and new.email_key = '{email_key}' then "
                "raise exception 'refused'; end if; return new; end $$"))  # fmt: skip
            trigger = "create trigger refuse before update on deliveries for each row execute function refuse()"
            conn.execute(text(trigger))


def allow_updates(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(text("drop trigger refuse" + ("" if store.engine.dialect.name == "sqlite" else " on deliveries")))


def test_a_stop_right_after_a_success_records_it_sent(planned: tuple[Store, int]) -> None:  # noqa: F811
    store, digest_id = planned
    confirmed(store, READERS)
    memory = MemoryTransport()
    stop = lambda: len(memory.sent) == 1  # noqa: E731
    report = sender(store, memory, messages_per_second=0).run(digest_id, build, should_stop=stop)
    assert report.stopped and [m.recipient for m in memory.sent] == READERS[:1]
    assert statuses(store, digest_id)[READERS[0]] == "sent"


def test_the_operators_pause_right_after_a_success_records_it_sent(planned: tuple[Store, int]) -> None:  # noqa: F811
    store, digest_id = planned
    confirmed(store, READERS)
    memory = MemoryTransport()

    def pausing(delivery: Delivery) -> Message:  # the operator pauses while r0 is on its way
        if delivery.email_key == READERS[0]:
            store.set_digest_status(digest_id, "paused")
        return build(delivery)

    seen_paused = lambda: store.digest(digest_id).status == "paused"  # noqa: E731  (what Newsletter.send watches)
    report = sender(store, memory, messages_per_second=0).run(digest_id, pausing, should_stop=seen_paused)
    assert report.stopped and [m.recipient for m in memory.sent] == READERS[:1]
    assert statuses(store, digest_id)[READERS[0]] == "sent" and store.digest(digest_id).status == "paused"


def test_a_refused_claim_keeps_the_previous_success_and_records_it_sent(planned: tuple[Store, int]) -> None:  # noqa: F811
    store, digest_id = planned
    confirmed(store, READERS)
    refuse_update(store, "sending", READERS[1])  # r1's claim fails, with r0's mark in its transaction
    memory = MemoryTransport()
    with pytest.raises(DBAPIError):
        sender(store, memory, messages_per_second=0).run(digest_id, build)
    assert [m.recipient for m in memory.sent] == READERS[:1]
    assert statuses(store, digest_id)[READERS[0]] == "sent"  # not left `sending`, to end uncertain
    allow_updates(store)
    report = sender(store, MemoryTransport(), messages_per_second=0).run(digest_id, build)
    assert report.sent == len(READERS) - 1 and report.uncertain == 0


class Closing(MemoryTransport):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_marks_that_cannot_be_recorded_raise_the_stores_error_and_the_transport_is_closed(
    planned: tuple[Store, int],  # noqa: F811
) -> None:
    store, digest_id = planned
    confirmed(store, READERS)
    refuse_update(store, "sent", READERS[0])  # r1's claim fails, and so does the last flush
    transport = Closing()
    with pytest.raises(DBAPIError):
        sender(store, transport, messages_per_second=0).run(digest_id, build)
    assert transport.closed and [m.recipient for m in transport.sent] == READERS[:1]
    allow_updates(store)
    assert statuses(store, digest_id)[READERS[0]] == "sending"  # the next run settles it uncertain


@pytest.mark.postgresql_only("a PostgreSQL server's connection dropped")
def test_a_postgresql_connection_lost_between_two_messages(planned: tuple[Store, int]) -> None:  # noqa: F811
    """The claim after the drop raises SQLAlchemy's DBAPIError (what the CLI and the jobs
    explain), the ledger's connection is invalidated, and the success before it is recorded on
    a fresh connection."""
    store, digest_id = planned
    confirmed(store, READERS)
    memory = MemoryTransport()

    def terminating(delivery: Delivery) -> Message:
        if len(memory.sent) == 1:  # r0 went out; its mark waits for r1's claim
            with store.engine.begin() as conn:
                conn.execute(text(
                    "select pg_terminate_backend(pid) from pg_stat_activity "
                    "where datname = current_database() and pid <> pg_backend_pid()"))  # fmt: skip
        return build(delivery)

    with pytest.raises(DBAPIError) as lost:
        sender(store, memory, messages_per_second=0).run(digest_id, terminating)
    assert lost.value.connection_invalidated
    store.engine.dispose()
    assert [m.recipient for m in memory.sent] == READERS[:1]
    assert statuses(store, digest_id)[READERS[0]] == "sent"
