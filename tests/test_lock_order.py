"""Two PostgreSQL transactions that change the same rows take their locks in one order, so one
waits for the other instead of both failing with a deadlock (SQLSTATE 40P01).

Each test stops one transaction at a chosen row, with a trigger that waits on an advisory lock
this test holds (test scaffolding in the test's own database: the code under test is not
touched), lets the other transaction run into its locks, then lets the first go on. Before the
locks were ordered, each of these pairs deadlocked every time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from conftest import Site
from publisher.model import Subscriber, SubscriberStatus
from publisher.store import Store
from publisher.store.websub import Waiting
from publisher.store.writer import upsert_renditions

pytestmark = pytest.mark.postgresql_only("row locks and their order are PostgreSQL's (SQLite has one writer)")

NOW = datetime(2026, 11, 30, tzinfo=UTC)
GATE = 160_516  # the advisory lock a stopped transaction waits on

_PAUSE = """
CREATE FUNCTION publisher_test_pause() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    seen integer := coalesce(nullif(current_setting('publisher_test.rows', true), ''), '0')::integer + 1;
BEGIN
    IF TG_ARGV[0] = 'any' OR pg_backend_pid() = TG_ARGV[0]::integer THEN
        PERFORM set_config('publisher_test.rows', seen::text, true);
        IF seen = TG_ARGV[1]::integer THEN
            PERFORM pg_advisory_xact_lock(TG_ARGV[2]::bigint);
        END IF;
    END IF;
    RETURN NEW;
END $$
"""


@contextmanager
def stopped(
    url: str, table: str, when: str, backend: int | None, at_row: int, only: str = "true"
) -> Iterator[Callable[[], None]]:
    """The transactions of `backend` (None: of any) wait at their `at_row`th row of `table` that
    `only` holds for (SQL over OLD and NEW), until the returned call lets them go. `when`: "AFTER
    UPDATE", that row locked and changed; "BEFORE UPDATE" and "BEFORE DELETE", that row locked;
    "BEFORE INSERT", the rows before it written. The trigger is dropped again on the way out,
    waiting at most 10 s for a transaction a failed test left holding the table."""
    control = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    conn = control.connect()
    try:
        conn.execute(text("SET lock_timeout = '10s'"))
        conn.execute(text(_PAUSE))
        conn.execute(
            text(
                f"CREATE TRIGGER publisher_test_pause {when} ON {table} FOR EACH ROW WHEN ({only}) "
                f"EXECUTE FUNCTION publisher_test_pause('{backend or 'any'}', '{at_row}', '{GATE}')"
            )
        )
        conn.execute(text("SELECT pg_advisory_lock(:gate)"), {"gate": GATE})
        held = [True]

        def release() -> None:
            if held[0]:
                conn.execute(text("SELECT pg_advisory_unlock(:gate)"), {"gate": GATE})
                held[0] = False

        try:
            yield release
        finally:
            release()
            conn.execute(text(f"DROP TRIGGER publisher_test_pause ON {table}"))
            conn.execute(text("DROP FUNCTION publisher_test_pause()"))
    finally:
        conn.close()
        control.dispose()


def waits(url: str, where: str, timeout: float = 15.0, **params: Any) -> None:
    """Until a backend of this database waits as `where` (on pg_stat_activity) says."""
    engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    sql = text(f"SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND {where}")
    try:
        with engine.connect() as conn:
            deadline = time.monotonic() + timeout
            while conn.execute(sql, params).scalar_one() == 0:
                assert time.monotonic() < deadline, f"no backend waits where {where} {params}"
                time.sleep(0.01)
    finally:
        engine.dispose()


class Running:
    """A call in a thread of its own: its answer, or what it raised, once joined."""

    def __init__(self, call: Callable[[], object]) -> None:
        self.answer: object = None
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self.thread.start()

    def _run(self, call: Callable[[], object]) -> None:
        try:
            self.answer = call()
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            self.failure = exc

    def result(self) -> object:
        self.thread.join(30)
        assert not self.thread.is_alive(), "still waiting after 30 s"
        if self.failure is not None:
            raise self.failure
        return self.answer


def results(*running: Running) -> list[object]:
    """Each call's answer, once every one has ended (or waited 30 s): the first failure raised."""
    for r in running:
        r.thread.join(30)
    return [r.result() for r in running]


def backend_of(conn: Connection) -> int:
    return int(conn.connection.driver_connection.info.backend_pid)  # type: ignore[union-attr]


def waiting_deliveries(store: Store, readers: list[str]) -> tuple[int, int, int]:
    """A digest planned for `readers` (ids in that order), both deliveries waiting after
    temporary errors, the first tried more: (digest, first id, second id)."""
    store.save_subscribers([Subscriber(r, "", (), SubscriberStatus.CONFIRMED, NOW, "import", NOW) for r in readers])
    digest_id, _ = store.open_digest("scheduled:2026-11-30T00:00:00Z", NOW, NOW, NOW)
    store.plan_deliveries(digest_id, [(r, f"<{n}@example.org>") for n, r in enumerate(readers)], NOW)
    with store.engine.begin() as conn:
        first, second = conn.execute(text("SELECT id FROM deliveries ORDER BY id")).scalars()
        for row, attempts in ((first, 2), (second, 1)):
            conn.execute(text("UPDATE deliveries SET attempts = :n, last_error = '421 try later' WHERE id = :id"),
                         {"n": attempts, "id": row})  # fmt: skip
    return digest_id, first, second


# An UPDATE alone meets a digest's deliveries in the order of the ledger's (digest, address)
# index: planned a before b, in id order; b before a, not. Each order deadlocked with one half of
# the fix missing (the send loop's statements in id order, or retry's locks in id order).
READER_ORDERS = pytest.mark.parametrize(
    "readers", [["a@example.com", "b@example.com"], ["b@example.com", "a@example.com"]], ids=["ab", "ba"]
)


@READER_ORDERS
def test_a_retry_beside_a_sender_claiming_a_batch_waits_its_turn(store_url: str, readers: list[str]) -> None:
    """`digest retry` while a sender claims a batch of waiting deliveries (a mail API's batch,
    fewest attempts first, so not in id order): the retry waits for the claims and finds
    nothing left to put back; neither fails. Before, the retry's UPDATE locked the rows in the
    order it met them, and the two deadlocked."""
    store = Store(store_url)
    ledger = store.ledger()
    try:
        digest_id, first, second = waiting_deliveries(store, readers)
        batch = store.next_deliveries(digest_id, 10)
        assert [d.id for d in batch] == [second, first]  # fewest attempts first
        sender = backend_of(ledger.conn)
        with stopped(store_url, "deliveries", "AFTER UPDATE", sender, at_row=1) as release:
            claiming = Running(lambda: ledger.claim_all(batch, NOW))
            waits(store_url, "pid = :pid AND wait_event = 'advisory'", pid=sender)  # one row claimed
            retrying = Running(lambda: store.retry_deliveries(digest_id, NOW))
            waits(store_url, "pid <> :pid AND wait_event_type = 'Lock' AND wait_event <> 'advisory'", pid=sender)
            release()
            # Both are being sent: nothing to put back
            assert results(claiming, retrying) == [[True, True], 0]
        assert store.delivery_counts(digest_id) == {"sending": 2}
    finally:
        ledger.close()
        store.close()


@READER_ORDERS
def test_a_retry_beside_a_hand_over_to_the_workers_waits_its_turn(store_url: str, readers: list[str]) -> None:
    """`digest retry` while fan-out hands the digest over to its workers (numbering the chunks of
    deliveries planned for one process): one waits for the other; neither fails. Before, each
    UPDATE locked the rows in the order its own plan met them, and the two deadlocked."""
    from publisher.fanout import ChunkQueue

    store = Store(store_url)
    try:
        digest_id, _first, _second = waiting_deliveries(store, readers)
        numbering = "OLD.chunk IS NULL AND NEW.chunk IS NOT NULL"  # the hand-over's UPDATE, not retry's
        with stopped(store_url, "deliveries", "BEFORE UPDATE", None, at_row=1, only=numbering) as release:
            handing = Running(lambda: store.hand_over(digest_id, 10, ChunkQueue().for_digest(digest_id)))
            waits(store_url, "wait_event = 'advisory'")  # one row locked
            retrying = Running(lambda: store.retry_deliveries(digest_id, NOW))
            waits(store_url, "wait_event_type = 'Lock' AND wait_event <> 'advisory'")
            release()
            assert results(handing, retrying) == [1, 2]  # one chunk; both put back with their tries
        with store.engine.connect() as conn:
            rows = conn.execute(text("SELECT chunk, attempts, status FROM deliveries ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [(0, 0, "pending"), (0, 0, "pending")]
    finally:
        store.close()


def test_two_stores_of_the_same_bodies_in_different_orders_wait_their_turn(site: Site) -> None:
    """A build and a digest's plan store renditions of the same articles, each in its own order:
    the second waits for the first; neither fails. Before, each locked one row the other
    wanted, and they deadlocked."""
    site.article("a.md", "甲", "2026-05-06 14:00")
    site.article("b.md", "乙", "2026-05-07 14:00")
    site.build()
    store = Store(site.store_url)
    try:
        engine: Engine = store.engine
        with engine.connect() as conn:
            ids = list(conn.execute(text("SELECT article_id FROM article_renditions ORDER BY article_id")).scalars())
        assert len(ids) == 2
        rows = [(row, "h" * 64, f"summary {row}", f"<p>{row}</p>") for row in ids]
        one, other = engine.connect(), engine.connect()
        try:
            stopper = backend_of(one)

            def store_rows(conn: Connection, rows: Sequence[tuple[object, ...]]) -> None:
                with conn.begin():
                    upsert_renditions(conn, rows)

            with stopped(site.store_url, "article_renditions", "BEFORE INSERT", stopper, at_row=2) as release:
                first = Running(lambda: store_rows(one, rows))
                waits(site.store_url, "pid = :pid AND wait_event = 'advisory'", pid=stopper)  # one row stored
                second = Running(lambda: store_rows(other, rows[::-1]))
                waits(site.store_url, "pid <> :pid AND wait_event_type = 'Lock' AND wait_event <> 'advisory'",
                      pid=stopper)  # fmt: skip
                release()
                results(first, second)
        finally:
            one.close()
            other.close()
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT article_id, summary FROM article_renditions ORDER BY article_id"))
            assert [tuple(r) for r in stored] == [(row, f"summary {row}") for row in ids]
    finally:
        store.close()


HUB = "https://hub.example/"


def urls_against_their_keys(hub: str) -> tuple[str, str]:
    """Two feed URLs in URL order whose waiting rows' keys (hashes) sort the other way round."""
    return next(
        pair
        for n in range(100)
        if (pair := (f"https://a.example/{n}/rss.xml", f"https://a.example/{n}/s.xml"))
        and Waiting(hub, pair[0], "").key > Waiting(hub, pair[1], "").key
    )


def test_a_ping_delivered_and_a_build_publishing_the_same_feeds_wait_their_turn(store_url: str) -> None:
    """The WebSub ping thread forgets what a hub took while a build publishes the same feeds
    again: the build waits, and its new pings stand; neither fails. Before, the build wrote
    them in URL order and the ping thread deleted them in the order the table held them, and
    the two deadlocked."""
    hub, urls = HUB, urls_against_their_keys(HUB)
    build, pinger = Store(store_url), Store(store_url)
    try:
        build.publish_to_hubs([hub], [urls[1]])  # published one after the other: the table holds
        build.publish_to_hubs([hub], [urls[0]])  # the second URL's row first
        taken = pinger.waiting_for(hub)
        assert [w.url for w in taken] == list(urls)
        with stopped(store_url, "meta", "BEFORE DELETE", None, at_row=1) as release:
            delivering = Running(lambda: pinger.delivered_to_hub(taken))
            waits(store_url, "wait_event = 'advisory'")  # one row of the two deleted
            publishing = Running(lambda: build.publish_to_hubs([hub], list(urls)))
            waits(store_url, "wait_event_type = 'Lock' AND wait_event <> 'advisory'")
            release()
            results(delivering, publishing)
        again = pinger.waiting_for(hub)
        assert [w.url for w in again] == list(urls) and not {w.token for w in again} & {w.token for w in taken}
    finally:
        build.close()
        pinger.close()


def test_a_build_publishing_and_a_ping_delivered_the_other_way_round_wait_their_turn(store_url: str) -> None:
    """As above, the build first: it stops after writing one of the two rows, and the ping
    thread, deleting both, waits for it; neither fails. (Both WebSub changes are needed here:
    the build's rows in key order, and the deletes' locks taken in key order first.)"""
    hub, urls = HUB, urls_against_their_keys(HUB)
    build, pinger = Store(store_url), Store(store_url)
    try:
        build.publish_to_hubs([hub], [urls[0]])  # the table holds the first URL's row first
        build.publish_to_hubs([hub], [urls[1]])
        taken = pinger.waiting_for(hub)
        with stopped(store_url, "meta", "BEFORE INSERT", None, at_row=2) as release:
            publishing = Running(lambda: build.publish_to_hubs([hub], list(urls)))
            waits(store_url, "wait_event = 'advisory'")  # one row of the two written
            delivering = Running(lambda: pinger.delivered_to_hub(taken))
            waits(store_url, "wait_event_type = 'Lock' AND wait_event <> 'advisory'")
            release()
            results(publishing, delivering)
        again = pinger.waiting_for(hub)  # published again, then delivered: the new rows stand
        assert [w.url for w in again] == list(urls) and not {w.token for w in again} & {w.token for w in taken}
    finally:
        build.close()
        pinger.close()
