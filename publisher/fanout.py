"""Digest fan-out on Procrastinate workers (PostgreSQL stores, `[fanout] enabled`; docs/scale.md).

Planning writes a digest's deliveries a chunk of readers at a time, and defers the chunk's job
(`send_chunk`: the digest's id and the chunk's number) in the transaction of its rows
(`ChunkQueue.defer`, through Procrastinate's public `configure(connection=...)` on the driver
connection SQLAlchemy holds), so rows and job exist together or not at all. `publisher worker`
runs Procrastinate's worker: a job sends its chunk through the one send engine
(`Newsletter.send_chunk`, `delivery.Sender.run` bounded to the chunk), which claims each
delivery before its send and marks it after, as in one process.

Two jobs of one chunk never run at once (Procrastinate's `lock`, one per chunk): a `sending`
row found by a chunk's job is the in-flight message of a killed worker, recorded uncertain. A
killed worker's jobs stay `doing`; every worker runs `retry_stalled` periodically, which puts
back the jobs of workers whose heartbeat stopped (`get_stalled_jobs`). A chunk whose deliveries
wait for another try defers its job again for when the first is due; a stop (SIGTERM) defers it
at once, for another worker. Two queueing locks per chunk, `now` and `later`, keep at most one
job of each kind waiting; a `now` job goes first (priority 1: Procrastinate runs a lock's jobs
by priority, then in order).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from procrastinate import App as JobApp
from procrastinate import JobContext, PsycopgConnector, RetryStrategy, SyncPsycopgConnector
from procrastinate.exceptions import AlreadyEnqueued
from sqlalchemy.engine import Connection, make_url

from .store import QueueChunk

if TYPE_CHECKING:
    from .app import App
    from .newsletter import Newsletter

log = logging.getLogger(__name__)

SEND_CHUNK = "publisher.send_chunk"
RETRY_STALLED = "publisher.retry_stalled"
QUEUE = "digest"


def send_chunk(context: JobContext, digest_id: int, chunk: int) -> None:
    """The job of one chunk: its worker's `ChunkSender` sends it."""
    sender: ChunkSender = context.additional_context["chunks"]
    sender.send(digest_id, chunk, should_stop=context.should_abort)


# A job that raised (the store unreachable a moment, a bug) runs again after 4, 16, 64, 256 and
# 1024 s (Procrastinate's retry); past that its chunk waits for the next hand-over (`digest
# resume`, `publisher run`'s start or its next digest), as its deliveries are still open.
_RETRY = RetryStrategy(max_attempts=5, exponential_wait=4)


def _job_app(connector: Any) -> JobApp:
    """A Procrastinate app with our task, over `connector`."""
    jobs = JobApp(connector=connector)
    jobs.task(name=SEND_CHUNK, queue=QUEUE, pass_context=True, retry=_RETRY)(send_chunk)
    return jobs


class ChunkQueue:
    """Defers chunks' jobs in our own transactions. Its Procrastinate app is never opened: every
    job is written on the connection it is given (`SyncPsycopgConnector` takes a psycopg one)."""

    def __init__(self) -> None:
        self._task = _job_app(SyncPsycopgConnector()).tasks[SEND_CHUNK]

    def for_digest(self, digest_id: int) -> QueueChunk:
        """What the store calls with each chunk it plans or hands over (store.QueueChunk)."""

        def queue(conn: Connection, chunk: int) -> None:
            self.defer(conn, digest_id, chunk)

        return queue

    def defer(self, conn: Connection, digest_id: int, chunk: int, at: datetime | None = None) -> bool:
        """The chunk's job, due now or `at`, in `conn`'s transaction; False when one of that kind
        waits already (its queueing lock: then the transaction goes on without it)."""
        name = f"digest{digest_id}.chunk{chunk}"
        kind = "now" if at is None else "later"
        deferrer = self._task.configure(
            lock=name,
            queueing_lock=f"{name}.{kind}",
            priority=1 if at is None else 0,
            schedule_at=at,
            connection=conn.connection.driver_connection,
        )
        try:
            with conn.begin_nested():  # a refused insert must not end the transaction
                deferrer.defer(digest_id=digest_id, chunk=chunk)
        except AlreadyEnqueued:
            return False
        return True


class ChunkSender:
    """A worker's side of `send_chunk`: one Newsletter per thread (Procrastinate runs a sync job
    on a thread; a Renderer's cache is not shared between threads), and what happens to a chunk
    after its run. The rate is the fleet's: every chunk takes its tokens from the store's bucket."""

    def __init__(self, app: App) -> None:
        self.app, self.queue = app, ChunkQueue()
        self._local = threading.local()

    def letters(self) -> Newsletter:
        from .newsletter import Newsletter

        letters: Newsletter | None = getattr(self._local, "letters", None)
        if letters is None:
            letters = self._local.letters = Newsletter(self.app)
        return letters

    def send(self, digest_id: int, chunk: int, should_stop: Callable[[], bool]) -> None:
        letters = self.letters()
        report = letters.send_chunk(digest_id, chunk, self.app.transport(), should_stop)
        if report.paused:
            return  # the operator's or errors in a row: `digest resume` hands the chunks over again
        if report.stopped:  # the worker stops: another one takes the chunk
            self._again(digest_id, chunk, None)
        elif report.next_try is not None:
            self._again(digest_id, chunk, report.next_try)

    def _again(self, digest_id: int, chunk: int, at: datetime | None) -> None:
        with self.app.store.engine.begin() as conn:
            self.queue.defer(conn, digest_id, chunk, at)
        when = f"at {at:%Y-%m-%d %H:%M:%S} UTC" if at is not None else "now"
        log.info("digest #%d chunk %d: deferred again, %s", digest_id, chunk, when)


def conninfo(store_url: str) -> str:
    """libpq's connection string for the store's SQLAlchemy URL (its driver name dropped)."""
    return make_url(store_url).set(drivername="postgresql").render_as_string(hide_password=False)


def every(seconds: int) -> str:
    """A cron line (with Procrastinate's seconds column) for about every `seconds`."""
    if seconds < 60:
        return f"* * * * * */{max(1, seconds)}"
    return f"*/{max(1, seconds // 60)} * * * *"


def run_worker(app: App, name: str) -> None:
    """Run Procrastinate's worker on the store's database until SIGTERM or SIGINT: it sends
    chunks (`send_chunk`), beats its heartbeat, and retries the jobs of stalled workers. A stop
    ends each running chunk after its message in flight and defers it again for another worker."""
    fanout = app.settings.fanout
    connector = PsycopgConnector(conninfo=conninfo(app.settings.store.url), min_size=1, max_size=fanout.concurrency + 3)
    jobs = _job_app(connector)
    stalled_after = fanout.stalled_seconds

    async def retry_stalled(context: JobContext, timestamp: int) -> None:
        """Put back the jobs of workers whose heartbeat stopped `stalled_after` ago."""
        manager = jobs.job_manager
        for job in await manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after):
            log.warning("job %s of a worker that stopped beating: retried", job.call_string)
            await manager.retry_job(job)

    stalled_task = jobs.task(name=RETRY_STALLED, queue=QUEUE, queueing_lock=RETRY_STALLED, pass_context=True)
    jobs.periodic(cron=every(stalled_after // 2))(stalled_task(retry_stalled))
    jobs.run_worker(
        name=name,
        queues=[QUEUE],
        concurrency=fanout.concurrency,
        update_heartbeat_interval=float(fanout.heartbeat_seconds),
        stalled_worker_timeout=float(stalled_after),
        shutdown_graceful_timeout=0.0,  # a stop asks the running chunks to stop after their message in flight
        additional_context={"chunks": ChunkSender(app)},
        delete_jobs="successful",
    )
