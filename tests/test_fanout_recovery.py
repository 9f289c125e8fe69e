"""Digest fan-out when a worker dies or stops beside another job of its chunk: the stalled job
is taken back without Procrastinate's retry (whose queueing lock refuses it when a `now` job of
the chunk waits), a stopping worker keeps beating while its last message is in flight, and a
`later` job refused by its queueing lock moves the waiting one earlier."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from test_fanout import add_readers, cli, fanning_site, ledger, wait_for
from test_newsletter import Inbox, this_month
from test_smtp import smtp_on_loopback

from backends import new_postgres_url
from conftest import Site
from publisher.fanout import FAILURES_RETRIED, ChunkQueue, ChunkSender
from publisher.newsletter import Newsletter
from publisher.store import Store

pytestmark = pytest.mark.postgresql_only("digest fan-out runs on a PostgreSQL store")


@pytest.fixture
def postgres_url() -> str:
    return new_postgres_url()


def jobs(url: str) -> list[tuple[str, str, int]]:
    """(lock, status, attempts) of every chunk job in the store's queue, oldest first."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            query = "select lock, status::text, attempts from procrastinate_jobs where lock is not null order by id"
            return [tuple(row) for row in conn.execute(text(query))]  # type: ignore[misc]
    finally:
        engine.dispose()


class SlowOnce(Inbox):
    """An SMTP server answering its message `number` (from 0) after `seconds`, the others at once."""

    def __init__(self, number: int, seconds: float) -> None:
        super().__init__()
        self.number, self.seconds, self.slow_one_started = number, seconds, threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if len(self.received) == self.number:
            self.slow_one_started.set()
            time.sleep(self.seconds)  # blocks aiosmtpd's loop: the other workers' messages wait too
        return await super().handle_DATA(server, session, envelope)


def plan(site: Site) -> None:
    since, until = this_month()
    planner = cli(site, "digest", "send", "--since", since, "--until", until)
    _output, errors = planner.communicate(timeout=60)
    assert planner.returncode == 0, errors.decode()


def hand_over(site: Site) -> int:
    """What `digest resume`, `publisher run`'s start and the next digest do: a `now` job for
    every chunk with open deliveries, beside the jobs already there."""
    app = site.app()
    try:
        [digest] = app.store.digests()
        return Newsletter(app).send(digest, app.transport()).queued
    finally:
        app.close()


def test_a_worker_killed_while_its_chunk_was_handed_over_again_is_taken_back(site: Site, postgres_url: str) -> None:
    """A hand-over while the chunk's job runs puts a `now` job beside it; the worker is then
    SIGKILLed. Another worker ends the stalled job (aborted) and the chunk is sent by the
    waiting job: the digest ends done, once per reader, at most the message in flight uncertain."""
    box, readers_count = Inbox(delay=0.005), 600
    with smtp_on_loopback(box) as port:
        fanning_site(site, postgres_url, port)
        readers = add_readers(site, readers_count)
        plan(site)
        first = cli(site, "worker", "--name", "first")
        second = None
        try:
            assert wait_for(lambda: len(box.received) >= 50, 40), "the worker sent too little"
            assert hand_over(site) == 3
            statuses = {(lock, status) for lock, status, _attempts in jobs(postgres_url)}
            assert {("digest1.chunk0", "doing"), ("digest1.chunk0", "todo")} <= statuses, statuses
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            assert len(box.received) < readers_count, "the run ended before the kill: make the server slower"
            second = cli(site, "worker", "--name", "second")
            assert wait_for(lambda: ledger(postgres_url)[0] == "done", 60), (ledger(postgres_url), jobs(postgres_url))
        finally:
            for worker in (first, second):
                if worker is not None and worker.poll() is None:
                    worker.send_signal(signal.SIGTERM)
            _out, second_errors = second.communicate(timeout=30) if second is not None else (b"", b"")
            first.communicate(timeout=10)
        assert second is not None and second.returncode == 0, second_errors.decode()

    assert b"stopped beating: taken back" in second_errors
    assert ("digest1.chunk0", "aborted", 1) in jobs(postgres_url)  # the stalled job, ended by the second worker
    status, counts, uncertain = ledger(postgres_url)
    per_reader = Counter(rcpt for rcpt, _mid in box.received)
    assert max(per_reader.values()) == 1 and len(uncertain) <= 1
    assert set(readers) - set(per_reader) <= uncertain
    assert counts == {"sent": readers_count - len(uncertain), **({"uncertain": 1} if uncertain else {})}


def test_a_stopping_worker_keeps_beating_until_its_message_in_flight_is_answered(site: Site, postgres_url: str) -> None:
    """SIGTERM while the server takes longer than `stalled_after` to answer: the worker keeps
    its heartbeat until the message is answered, so the worker started beside it does not take
    its chunk back; the chunk goes back to the queue once, and nothing is sent twice or uncertain.
    One chunk: the second worker has nothing else to run than its look for stalled jobs."""
    box, readers_count = SlowOnce(number=50, seconds=6.0), 250
    with smtp_on_loopback(box) as port:
        fanning_site(site, postgres_url, port)
        readers = add_readers(site, readers_count)
        plan(site)
        first = cli(site, "worker", "--name", "first")
        second = None
        try:
            assert wait_for(box.slow_one_started.is_set, 40), "the slow message never came"
            first.send_signal(signal.SIGTERM)
            second = cli(site, "worker", "--name", "second")
            _out, first_errors = first.communicate(timeout=30)
            assert first.returncode == 0, first_errors.decode()
            assert wait_for(lambda: ledger(postgres_url)[0] == "done", 60), (ledger(postgres_url), jobs(postgres_url))
        finally:
            for worker in (first, second):
                if worker is not None and worker.poll() is None:
                    worker.send_signal(signal.SIGTERM)
                    worker.communicate(timeout=30)

    assert [status for _lock, status, _attempts in jobs(postgres_url)] == []  # each succeeded (and deleted)
    assert sorted(rcpt for rcpt, _mid in box.received) == sorted(readers)
    assert ledger(postgres_url)[1:] == ({"sent": readers_count}, set())


def test_a_later_job_refused_by_its_queueing_lock_moves_the_waiting_one_earlier(postgres_url: str) -> None:
    """One `later` job waits per chunk: deferring another makes the waiting one due at the
    earlier of the two times, never later."""
    store, queue = Store(postgres_url), ChunkQueue()
    soon, late = datetime.now(UTC) + timedelta(minutes=1), datetime.now(UTC) + timedelta(hours=1)
    try:
        for at in (late, soon, late):
            with store.engine.begin() as conn:
                queue.defer(conn, 7, 0, at)
        with store.engine.connect() as conn:
            waiting = conn.execute(text("select scheduled_at from procrastinate_jobs where status = 'todo'")).all()
    finally:
        store.close()
    assert [row[0] for row in waiting] == [soon]


def test_a_chunk_job_that_raises_defers_its_chunk_again_after_a_backoff_and_gives_up_after_five(
    site: Site, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job that raises (the store a moment away) is not put back by Procrastinate (its retry
    would be refused beside a waiting `now` job): it defers a new `later` job of its chunk, 4 s
    on, then 16, 64, 256, 1024; the sixth failure in a row leaves the chunk to the next hand-over."""
    with smtp_on_loopback(Inbox()) as port:
        fanning_site(site, postgres_url, port)
        add_readers(site, 10)
        plan(site)
        app = site.app()

        def unreachable(*_args: object) -> None:
            raise RuntimeError("the store is a moment away")

        monkeypatch.setattr(Newsletter, "send_chunk", unreachable)
        sender, waits = ChunkSender(app), []
        try:
            for failures in range(FAILURES_RETRIED + 1):
                before = datetime.now(UTC)
                with pytest.raises(RuntimeError):
                    sender.send(1, 0, should_stop=lambda: False, failures=failures)
                with app.store.engine.begin() as conn:
                    later = "select scheduled_at, args from procrastinate_jobs where queueing_lock like '%.later'"
                    rows = conn.execute(text(later)).all()
                    conn.execute(text("delete from procrastinate_jobs where queueing_lock like '%.later'"))
                waits += [(round((at - before).total_seconds()), args["failures"]) for at, args in rows]
        finally:
            app.close()
    assert waits == [(4, 1), (16, 2), (64, 3), (256, 4), (1024, 5)]
