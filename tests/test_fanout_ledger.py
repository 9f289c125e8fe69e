"""Fan-out's side of the ledger on PostgreSQL: each chunk's rows and its Procrastinate job in one
transaction, hand-overs that never queue a chunk twice, and a digest done only when no delivery
is open; and where fan-out is refused (SQLite, `[fanout] enabled = false`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection

from backends import new_postgres_url
from conftest import Site
from publisher.config import load_settings
from publisher.errors import ConfigError
from publisher.fanout import SEND_CHUNK, ChunkQueue
from publisher.store import Store, job_queue

NOW = datetime(2026, 11, 30, tzinfo=UTC)

pytestmark = pytest.mark.postgresql_only("digest fan-out runs on a PostgreSQL store")


class Crash(Exception):
    pass


@pytest.fixture
def pg_store() -> Iterator[Store]:
    store = Store(new_postgres_url())
    yield store
    store.close()


def readers(count: int) -> Iterator[tuple[str, str]]:
    for n in range(count):
        yield f"r{n}@example.com", f"<d.{n}@example.org>"


def jobs(store: Store) -> list[tuple[Any, ...]]:
    """(chunk, status, queueing lock) of every job of ours, oldest first."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            text("select args, status, queueing_lock from procrastinate_jobs where task_name = :t order by id"),
            {"t": SEND_CHUNK},
        ).all()
    return [(args["chunk"], status, lock) for args, status, lock in rows]


def chunks(store: Store, digest_id: int) -> dict[int | None, int]:
    with store.engine.connect() as conn:
        rows = conn.execute(text("select chunk, count(*) from deliveries where digest_id = :d group by chunk"),
                            {"d": digest_id}).all()  # fmt: skip
    return dict(rows)


def new_digest(store: Store) -> int:
    digest_id, _created = store.open_digest("scheduled:2026-11-30T00:00:00Z", NOW - timedelta(days=7), NOW, NOW)
    return digest_id


def test_each_chunks_rows_and_its_job_are_committed_together_or_not_at_all(pg_store: Store) -> None:
    digest_id, queue = new_digest(pg_store), ChunkQueue()
    deferred: list[int] = []

    def queue_then_crash(conn: Connection, chunk: int) -> None:
        queue.defer(conn, digest_id, chunk)
        deferred.append(chunk)
        if chunk == 1:
            raise Crash  # the planner dies after deferring the second chunk's job, before its commit

    with pytest.raises(Crash):
        pg_store.plan_deliveries(digest_id, readers(25), NOW, chunk_size=10, queue=queue_then_crash)
    assert deferred == [0, 1]
    assert chunks(pg_store, digest_id) == {0: 10}  # the second chunk's rows went with its job
    assert jobs(pg_store) == [(0, "todo", f"digest{digest_id}.chunk0.now")]

    pg_store.plan_deliveries(digest_id, readers(25), NOW, chunk_size=10, queue=queue.for_digest(digest_id))
    assert chunks(pg_store, digest_id) == {0: 10, 1: 10, 2: 5}  # planned again: the rest, numbered on
    assert [chunk for chunk, _status, _lock in jobs(pg_store)] == [0, 1, 2]
    assert pg_store.digest(digest_id).status == "sending"


def test_a_hand_over_queues_each_open_chunk_once_and_chunks_what_one_process_planned(pg_store: Store) -> None:
    digest_id, queue = new_digest(pg_store), ChunkQueue()
    pg_store.plan_deliveries(digest_id, readers(5), NOW)  # planned before fan-out was on: no chunks
    assert chunks(pg_store, digest_id) == {None: 5}
    assert pg_store.hand_over(digest_id, 2, queue.for_digest(digest_id)) == 3
    assert chunks(pg_store, digest_id) == {0: 2, 1: 2, 2: 1}
    assert pg_store.hand_over(digest_id, 2, queue.for_digest(digest_id)) == 3  # again: nothing queued twice
    assert [(c, s) for c, s, _lock in jobs(pg_store)] == [(0, "todo"), (1, "todo"), (2, "todo")]
    with pg_store.engine.begin() as conn:  # a chunk waiting for a retry gets one `later` job, beside its `now` one
        assert queue.defer(conn, digest_id, 2, NOW + timedelta(minutes=5))
        assert not queue.defer(conn, digest_id, 2, NOW + timedelta(minutes=6))
    kinds = [lock.rsplit(".", 1)[1] for c, _s, lock in jobs(pg_store) if c == 2]
    assert kinds == ["now", "later"]


def test_a_digest_is_done_only_when_no_delivery_of_any_chunk_is_open(pg_store: Store) -> None:
    digest_id = new_digest(pg_store)
    pg_store.plan_deliveries(digest_id, readers(4), NOW, chunk_size=2, queue=lambda _conn, _chunk: None)
    [first, *rest] = pg_store.open_deliveries(digest_id)
    for delivery_id, *_ in rest:
        pg_store.mark_delivery(delivery_id, "sent", NOW)
    assert not pg_store.finish_digest(digest_id) and pg_store.digest(digest_id).status == "sending"
    pg_store.mark_delivery(first[0], "sent", NOW)
    assert pg_store.finish_digest(digest_id) and pg_store.digest(digest_id).status == "done"


def test_fan_out_with_a_sqlite_store_is_refused_saying_what_to_do(site: Site) -> None:
    site.use_store(f"sqlite:///{site.db}")
    site.append_config("\n[fanout]\nenabled = true\n")
    with pytest.raises(ConfigError) as refused:
        load_settings(site.config)
    assert "fanout.enabled: fan-out needs a PostgreSQL store" in str(refused.value)
    assert "postgresql+psycopg://" in str(refused.value) and "fanout.enabled = false" in str(refused.value)


def test_a_worker_refuses_a_sqlite_store_and_a_store_without_fan_out(site: Site, pg_store: Store) -> None:
    site.use_store(f"sqlite:///{site.db}")
    result = site.cli("worker")
    assert result.exit_code == 2
    assert "`publisher worker` needs a PostgreSQL store" in result.output and "publisher run" in result.output
    url = pg_store.engine.url.render_as_string(hide_password=False)
    site.use_store(url)
    result = site.cli("worker")
    assert result.exit_code == 2 and "[fanout] enabled is false" in result.output


def test_a_worker_refuses_a_procrastinate_whose_schema_this_code_does_not_know(
    site: Site, pg_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.use_store(pg_store.engine.url.render_as_string(hide_password=False))
    site.append_config("\n[fanout]\nenabled = true\n")
    monkeypatch.setattr(job_queue, "SCHEMA_MIGRATION", "03.00.00_01_pre_cancel_notification.sql")
    result = site.cli("worker")
    assert result.exit_code == 2, result.output
    assert "the installed Procrastinate's schema (up to 03.04.00_50" in result.output
    assert "publisher[postgres]" in result.output and "procrastinate>=3.10,<3.11" in result.output


def test_the_schedulers_digest_job_plans_in_chunks_and_leaves_the_sending_to_workers(
    site: Site, pg_store: Store
) -> None:
    from publisher import jobs as scheduled
    from publisher.model import Subscriber, SubscriberStatus

    url = pg_store.engine.url.render_as_string(hide_password=False)
    site.write_config(site.mail_to_outbox() + "\n[fanout]\nenabled = true\nchunk = 3\n")
    site.use_store(url)
    site.clock_now = NOW
    site.article("policy/a.md", "《人才十条》政策要点解读", date="2026-11-27 10:00")
    site.build()
    pg_store.save_subscribers(
        Subscriber(f"r{n}@example.com", "", (), SubscriberStatus.CONFIRMED, NOW, "import", NOW) for n in range(7)
    )
    app = site.app()
    try:
        assert scheduled.run_digest(app, "weekly") is None  # no retry for the scheduler to wait for
    finally:
        app.close()
    [digest] = pg_store.digests()
    assert digest.status == "sending" and chunks(pg_store, digest.id) == {0: 3, 1: 3, 2: 1}
    assert [(chunk, status) for chunk, status, _lock in jobs(pg_store)] == [(0, "todo"), (1, "todo"), (2, "todo")]
    assert not site.outbox.exists() or not list(site.outbox.iterdir())  # the workers send, not the scheduler
