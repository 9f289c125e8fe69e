"""Digest fan-out on Procrastinate workers (PostgreSQL stores, `[fanout] enabled`; docs/scale.md).

Planning writes a digest's deliveries a chunk of readers at a time, and defers the chunk's job
(`send_chunk`: the digest's id and the chunk's number) in the transaction of its rows
(`ChunkQueue.defer`, through Procrastinate's public `configure(connection=...)` on the driver
connection SQLAlchemy holds), so rows and job exist together or not at all. `publisher worker`
runs Procrastinate's worker: a job sends its chunk through the one send engine
(`Newsletter.send_chunk`, `delivery.Sender.run` bounded to the chunk), which claims each
delivery before its send and marks it after, as in one process.

Two jobs of one chunk never run at once (Procrastinate's `lock`, one per chunk). Two queueing
locks per chunk, `now` and `later`, keep at most one job of each kind waiting; a `now` job goes
first (priority 1: Procrastinate runs a lock's jobs by priority, then in order). A chunk job is
never put back to `todo` (Procrastinate's `retry_job`): a `now` job may wait beside it, and the
queueing lock's unique index would refuse the second. Instead a job that ends early defers a
new job: a chunk whose deliveries wait for another try, for when the first is due; a stop
(SIGTERM), at once, for another worker; a job that raised, after a backoff. A killed worker's
jobs stay `doing`: every worker runs `retry_stalled` periodically, which ends each job of a
worker whose heartbeat stopped and defers its chunk at once, in one transaction. While a chunk
job runs, its worker's heartbeat is beaten from the job's side too (`_beating`), so a stopping
worker (whose own heartbeat Procrastinate ends first) does not look dead while its last message
is in flight.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from procrastinate import App as JobApp
from procrastinate import JobContext, PsycopgConnector, SyncPsycopgConnector
from procrastinate import sql as job_sql
from procrastinate.exceptions import AlreadyEnqueued
from procrastinate.jobs import Job, Status
from sqlalchemy.engine import Connection, Engine, make_url

from .store import QueueChunk

if TYPE_CHECKING:
    from .app import App
    from .newsletter import Newsletter

log = logging.getLogger(__name__)

SEND_CHUNK = "publisher.send_chunk"
RETRY_STALLED = "publisher.retry_stalled"
QUEUE = "digest"

# A chunk job that raised (the store unreachable a moment, a bug) is deferred again after 4, 16,
# 64, 256 and 1024 s; past that its chunk waits for the next hand-over (`digest resume`,
# `publisher run`'s start or its next digest), as its deliveries are still open.
FAILURE_WAIT, FAILURES_RETRIED = 4, 5


def send_chunk(context: JobContext, digest_id: int, chunk: int, failures: int = 0) -> None:
    """The job of one chunk: its worker's `ChunkSender` sends it. `failures`: how many jobs of
    this chunk raised in a row before this one."""
    sender: ChunkSender = context.additional_context["chunks"]
    sender.send(digest_id, chunk, should_stop=context.should_abort, worker_id=context.job.worker_id,
                failures=failures)  # fmt: skip


def _job_app(connector: Any) -> JobApp:
    """A Procrastinate app with our task, over `connector`. No Procrastinate retry: see the
    module's docstring (`ChunkSender.send` defers a new job instead)."""
    jobs = JobApp(connector=connector)
    jobs.task(name=SEND_CHUNK, queue=QUEUE, pass_context=True, retry=False)(send_chunk)
    return jobs


# A `later` job refused by its queueing lock (one waits already) moves the waiting one's time
# to the earlier of the two, so a new try due sooner is not kept waiting for an older, later one.
# Procrastinate has no call for this; `scheduled_at` is the column its fetch reads.
_EARLIER = (
    "UPDATE procrastinate_jobs SET scheduled_at = LEAST(scheduled_at, %(at)s) "
    "WHERE queueing_lock = %(queueing_lock)s AND status = 'todo'"
)


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

    def defer(
        self, conn: Connection, digest_id: int, chunk: int, at: datetime | None = None, failures: int = 0
    ) -> bool:
        """The chunk's job, due now or `at`, in `conn`'s transaction; False when one of that kind
        waits already (its queueing lock: then the transaction goes on without it, and a waiting
        `later` job becomes due at `at` if that is earlier)."""
        name = f"digest{digest_id}.chunk{chunk}"
        queueing_lock = f"{name}.{'now' if at is None else 'later'}"
        deferrer = self._task.configure(
            lock=name,
            queueing_lock=queueing_lock,
            priority=1 if at is None else 0,
            schedule_at=at,
            connection=conn.connection.driver_connection,
        )
        try:
            with conn.begin_nested():  # a refused insert must not end the transaction
                deferrer.defer(digest_id=digest_id, chunk=chunk, failures=failures)
        except AlreadyEnqueued:
            if at is not None:
                conn.exec_driver_sql(_EARLIER, {"at": at, "queueing_lock": queueing_lock})
            return False
        return True

    def take_back(self, conn: Connection, job: Job) -> None:
        """End the chunk job `job` of a dead worker (`aborted`, kept as a record) and defer its
        chunk at once, in `conn`'s transaction: a `now` job waiting already is enough."""
        conn.exec_driver_sql(
            job_sql.queries["finish_job"], {"job_id": job.id, "status": Status.ABORTED.value, "delete_job": False}
        )
        digest_id, chunk = job.task_kwargs["digest_id"], job.task_kwargs["chunk"]
        assert isinstance(digest_id, int) and isinstance(chunk, int), job.task_kwargs
        self.defer(conn, digest_id, chunk)


class ChunkSender:
    """A worker's side of `send_chunk`: one Newsletter per thread (Procrastinate runs a sync job
    on a thread; a Renderer's cache is not shared between threads), and what happens to a chunk
    after its run. The rate is the fleet's: every chunk takes its tokens from the store's bucket."""

    def __init__(self, app: App, heartbeat_seconds: float = 10.0) -> None:
        self.app, self.queue, self.heartbeat_seconds = app, ChunkQueue(), heartbeat_seconds
        self._local = threading.local()

    def letters(self) -> Newsletter:
        from .newsletter import Newsletter

        letters: Newsletter | None = getattr(self._local, "letters", None)
        if letters is None:
            letters = self._local.letters = Newsletter(self.app)
        return letters

    def send(
        self, digest_id: int, chunk: int, should_stop: Callable[[], bool], worker_id: int | None = None,
        failures: int = 0,
    ) -> None:  # fmt: skip
        letters = self.letters()
        try:
            with _beating(self.app.store.engine, worker_id, self.heartbeat_seconds):
                report = letters.send_chunk(digest_id, chunk, self.app.transport(), should_stop)
        except Exception:
            if failures < FAILURES_RETRIED:
                wait = timedelta(seconds=FAILURE_WAIT ** (failures + 1))
                self._again(digest_id, chunk, datetime.now(UTC) + wait, failures + 1)
            raise  # Procrastinate logs it and records the job failed
        if report.paused:
            return  # the operator's or errors in a row: `digest resume` hands the chunks over again
        if report.stopped:  # the worker stops: another one takes the chunk
            self._again(digest_id, chunk, None)
        elif report.next_try is not None:
            self._again(digest_id, chunk, report.next_try)

    def _again(self, digest_id: int, chunk: int, at: datetime | None, failures: int = 0) -> None:
        with self.app.store.engine.begin() as conn:
            self.queue.defer(conn, digest_id, chunk, at, failures)
        when = f"at {at:%Y-%m-%d %H:%M:%S} UTC" if at is not None else "now"
        log.info("digest #%d chunk %d: deferred again, %s", digest_id, chunk, when)


@contextmanager
def _beating(engine: Engine, worker_id: int | None, seconds: float) -> Iterator[None]:
    """Beat worker `worker_id`'s heartbeat every `seconds` while the block runs, from a thread
    of its own. Procrastinate's worker stops its heartbeat when asked to stop, before its
    running jobs end; a chunk's message in flight can take the transport's whole timeout."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(seconds):
            try:
                with engine.begin() as conn:
                    conn.exec_driver_sql(job_sql.queries["update_heartbeat"], {"worker_id": worker_id})
            except Exception:  # the store a moment away: the next beat tries again
                log.warning("worker %s: heartbeat not recorded", worker_id, exc_info=True)

    thread = threading.Thread(target=beat, name=f"heartbeat-{worker_id}", daemon=True)
    if worker_id is not None:
        thread.start()
    try:
        yield
    finally:
        done.set()
        if thread.is_alive():
            thread.join()


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
    chunks (`send_chunk`), beats its heartbeat, and takes back the jobs of stalled workers. A
    stop ends each running chunk after its message in flight and defers it again for another worker."""
    fanout = app.settings.fanout
    connector = PsycopgConnector(conninfo=conninfo(app.settings.store.url), min_size=1, max_size=fanout.concurrency + 3)
    jobs = _job_app(connector)
    stalled_after = fanout.stalled_seconds
    queue = ChunkQueue()

    def take_back(job: Job) -> None:
        with app.store.engine.begin() as conn:
            queue.take_back(conn, job)

    async def retry_stalled(context: JobContext, timestamp: int) -> None:
        """Take back the jobs of workers whose heartbeat stopped `stalled_after` ago: a chunk's
        job is ended and its chunk deferred anew; a look like this one is ended (the periodic
        deferrer makes the next). Never `retry_job`: a job of the same queueing lock may wait."""
        manager = jobs.job_manager
        for job in await manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after):
            try:
                if job.task_name == SEND_CHUNK:
                    await asyncio.to_thread(take_back, job)
                else:
                    await manager.finish_job(job, Status.ABORTED, delete_job=False)
            except Exception:  # one job refused (already ended by its worker, the store a moment away)
                log.warning("job %s of a worker that stopped beating: not taken back", job.call_string, exc_info=True)
                continue
            log.warning("job %s of a worker that stopped beating: taken back", job.call_string)

    # Priority 2: a worker whose every slot is sending runs the look when a slot frees, before
    # another chunk (it shares the `digest` queue and the slots with the chunks' jobs).
    stalled_task = jobs.task(
        name=RETRY_STALLED, queue=QUEUE, queueing_lock=RETRY_STALLED, pass_context=True, priority=2
    )
    jobs.periodic(cron=every(stalled_after // 2))(stalled_task(retry_stalled))
    jobs.run_worker(
        name=name,
        queues=[QUEUE],
        concurrency=fanout.concurrency,
        update_heartbeat_interval=float(fanout.heartbeat_seconds),
        stalled_worker_timeout=float(stalled_after),
        shutdown_graceful_timeout=0.0,  # a stop asks the running chunks to stop after their message in flight
        additional_context={"chunks": ChunkSender(app, float(fanout.heartbeat_seconds))},
        delete_jobs="successful",
    )
