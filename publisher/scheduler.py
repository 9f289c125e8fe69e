"""The scheduler of `publisher run`: APScheduler 3.11, its jobs kept in the store's database.

The traps it avoids (../shared/research/library-pitfalls.md section 2):

- one scheduler per database: a process schedules only while it holds the store's scheduler
  lock (`Store.scheduler_lock`); a second `publisher run` serves the web and says so;
- jobs are import strings with the config path as the only argument, `coalesce=True`,
  `max_instances=1`, a misfire grace of `[schedule] misfire_grace` minutes (APScheduler's
  default is one second, which silently skips a digest after a restart);
- jobs are added only when missing, so a stored, overdue next run survives a restart and runs
  once (within the grace); a changed schedule is rescheduled explicitly;
- cron in the site's time zone, with day names (config refuses numbers);
- a digest job that leaves deliveries waiting for another try returns when the first is due;
  the listener puts the one-off resume job there, in the job store (it survives a restart);
- the ingest runs in its own daemon threads (`IngestExecutor`): a stop waits a few seconds for
  it, then leaves it. A source that hangs cannot hold the stop, and the abandoned pass is one
  uncommitted transaction, rolled back; the next start ingests again.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.executors.base import BaseExecutor, run_job
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from .config import Settings
from .errors import PublisherError
from .metrics import Metrics
from .model import DAILY, WEEKLY
from .store import Store

log = logging.getLogger(__name__)

INGEST_JOB, DIGEST_JOB, RESUME_JOB, BOUNCES_JOB = "ingest", "digest", "resume", "bounce-mailbox"
# One digest job per cadence; the weekly one keeps the id it had before cadences existed.
DIGEST_JOBS = {WEEKLY: DIGEST_JOB, DAILY: f"{DIGEST_JOB}-{DAILY}"}
TARGETS = {
    INGEST_JOB: "publisher.jobs:ingest_and_build",
    RESUME_JOB: "publisher.jobs:resume_digests",
    BOUNCES_JOB: "publisher.jobs:poll_bounce_mailbox",
} | {job_id: "publisher.jobs:send_digest" for job_id in DIGEST_JOBS.values()}
JOBS_TABLE = "apscheduler_jobs"
INGEST_EXECUTOR = "ingest"
# The mailbox poll, like the ingest, may wait on a network read: a stop leaves it (nothing in
# the mailbox changes before a poll ends), so it runs in the executor that can be left.
EXECUTORS = {INGEST_JOB: INGEST_EXECUTOR, RESUME_JOB: "default", BOUNCES_JOB: INGEST_EXECUTOR} | {
    job_id: "default" for job_id in DIGEST_JOBS.values()
}
STOP_WAITS_FOR_INGEST = 5.0  # seconds; then the process ends without it
RESUME_AT_THE_EARLIEST = 2.0  # seconds from now: a resume that finds nothing due never spins


class IngestExecutor(BaseExecutor):  # type: ignore[misc]
    """Runs each job in a daemon thread and knows since when each one runs. Its shutdown waits
    at most `grace` seconds: the interpreter does not wait for daemon threads, so a job stuck
    in a network read cannot keep the process alive (concurrent.futures' threads would)."""

    def __init__(self, grace: float = STOP_WAITS_FOR_INGEST) -> None:
        super().__init__()
        self.grace = grace
        self.running: dict[str, datetime] = {}  # job id -> when its run started
        self._threads: set[threading.Thread] = set()
        self._guard = threading.Lock()

    def _do_submit_job(self, job: Job, run_times: list[datetime]) -> None:
        def work() -> None:
            try:
                events = run_job(job, job._jobstore_alias, run_times, self._logger.name)
            except BaseException as exc:  # noqa: BLE001 - APScheduler reports it as the job's error
                self._run_job_error(job.id, exc, exc.__traceback__)
            else:
                self._run_job_success(job.id, events)
            finally:
                with self._guard:
                    self.running.pop(job.id, None)
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=work, name=f"publisher-{job.id}", daemon=True)
        with self._guard:
            self.running[job.id] = datetime.now(run_times[-1].tzinfo)
            self._threads.add(thread)
        thread.start()

    def shutdown(self, wait: bool = True) -> None:
        if not wait:
            return
        deadline = time.monotonic() + self.grace
        with self._guard:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._guard:
            left = dict(self.running)
        for job_id, since in left.items():
            log.warning(
                "stopping without the %s running since %s: its work is rolled back",
                job_id,
                since.isoformat(timespec="seconds"),
            )


def _explained_elsewhere(record: logging.LogRecord) -> bool:
    """False for a job's PublisherError (a full disk, a locked store): `_record` logs it as one
    line, `<job> failed: <what and what to do>`; a bug keeps its traceback."""
    error = record.exc_info[1] if record.exc_info else None
    return not isinstance(error, PublisherError)


def triggers(settings: Settings) -> dict[str, Any]:
    """The recurring jobs this configuration wants: the ingest, one digest job per cadence, the
    bounce mailbox's only when it has one."""
    zone = settings.site.timezone
    wanted: dict[str, Any] = {INGEST_JOB: IntervalTrigger(minutes=settings.schedule.ingest_every, timezone=zone)}
    for cadence in settings.digest.cadences:
        wanted[DIGEST_JOBS[cadence]] = CronTrigger.from_crontab(settings.digest.schedule_of(cadence), timezone=zone)
    if settings.bounces.mailbox is not None:
        wanted[BOUNCES_JOB] = IntervalTrigger(minutes=settings.bounces.mailbox.interval, timezone=zone)
    return wanted


def _last_fire(trigger: CronTrigger, now: datetime, grace_minutes: int) -> datetime | None:
    """The trigger's latest fire time in the last `grace_minutes` up to now, if any."""
    start = now - timedelta(minutes=grace_minutes)
    last, fire = None, trigger.get_next_fire_time(None, start)
    while fire is not None and fire <= now:
        last, fire = fire, trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
    return last


class Scheduler:
    """Owns the scheduler lock and the BackgroundScheduler of this process, if it can."""

    def __init__(self, settings: Settings, config_path: str, store: Store, metrics: Metrics | None = None) -> None:
        self.settings, self.config_path, self.store = settings, config_path, store
        self.metrics = metrics or Metrics()  # job runs and lateness (`publisher run` passes its App's)
        self._lock: AbstractContextManager[bool] | None = None
        self.scheduler: BackgroundScheduler | None = None
        self.ingests = IngestExecutor()
        self.owner = False
        self.last_event: dict[str, str] = {}

    def start(self, ingest_now: bool = False) -> bool:
        """Start scheduling if no other process does; False: another one owns this database.
        `ingest_now`: the first ingest and build run at once, in the background, as the ingest
        job (so never two at a time); otherwise one interval from now."""
        self._lock = self.store.scheduler_lock()
        self.owner = self._lock.__enter__()
        if not self.owner:
            self._lock.__exit__(None, None, None)
            self._lock = None
            return False
        grace = self.settings.schedule.misfire_grace * 60
        scheduler = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.store.engine, tablename=JOBS_TABLE)},
            executors={"default": ThreadPoolExecutor(max_workers=2), INGEST_EXECUTOR: self.ingests},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": grace},
            timezone=self.settings.site.timezone,
        )
        scheduler.add_listener(self._record, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
        scheduler.add_listener(self._started, EVENT_JOB_SUBMITTED)
        for alias in ("default", INGEST_EXECUTOR):  # APScheduler logs a job's error with its traceback
            logging.getLogger(f"apscheduler.executors.{alias}").addFilter(_explained_elsewhere)
        scheduler.start(paused=True)  # load the stored jobs before touching them
        self.scheduler = scheduler
        self._ensure_jobs(scheduler)
        interval = timedelta(minutes=0 if ingest_now else self.settings.schedule.ingest_every)
        scheduler.modify_job(INGEST_JOB, next_run_time=datetime.now(scheduler.timezone) + interval)
        scheduler.resume()
        return True

    def _job_args(self, job_id: str) -> list[str]:
        """The config path, and a digest job's cadence unless weekly (its job as it always was)."""
        cadence = next((c for c, j in DIGEST_JOBS.items() if j == job_id), WEEKLY)
        return [self.config_path] if cadence == WEEKLY else [self.config_path, cadence]

    def _ensure_jobs(self, scheduler: BackgroundScheduler) -> None:
        grace = self.settings.schedule.misfire_grace * 60
        wanted = triggers(self.settings)
        if BOUNCES_JOB not in wanted and scheduler.get_job(BOUNCES_JOB) is not None:
            log.info("%s: no [bounces.mailbox] any more, so no more polls", BOUNCES_JOB)
            scheduler.remove_job(BOUNCES_JOB)
        for cadence, job_id in DIGEST_JOBS.items():
            if job_id not in wanted and scheduler.get_job(job_id) is not None:
                log.info("%s: %r is not in [digest] cadences any more, so no more of its digests", job_id, cadence)
                scheduler.remove_job(job_id)
        for job_id, trigger in wanted.items():
            job = scheduler.get_job(job_id)
            executor, args = EXECUTORS[job_id], self._job_args(job_id)
            if job is None:
                scheduler.add_job(TARGETS[job_id], trigger, id=job_id, args=args, name=job_id, executor=executor)
                continue
            if (list(job.args), job.misfire_grace_time, job.executor) != (args, grace, executor):
                scheduler.modify_job(job_id, args=args, misfire_grace_time=grace, executor=executor)
            if (str(job.trigger), str(job.trigger.timezone)) != (str(trigger), str(trigger.timezone)):
                # The schedule was changed in the config: that, and only that, moves the next run.
                log.info("%s: schedule changed from %s to %s", job_id, job.trigger, trigger)
                scheduler.reschedule_job(job_id, trigger=trigger)
        # A run APScheduler itself will not make up: a fire time within the grace that no
        # scheduled digest of its cadence covers (its shutdown race can consume a due run, research 2.4).
        now, any_will_run = datetime.now(scheduler.timezone), False
        for cadence in self.settings.digest.cadences:
            job_id = DIGEST_JOBS[cadence]
            digest = scheduler.get_job(job_id)
            last_end = self.store.last_scheduled_end(cadence)
            missed = _last_fire(wanted[job_id], now, self.settings.schedule.misfire_grace)
            will_run = digest is not None and digest.next_run_time is not None and digest.next_run_time <= now
            if missed is not None and last_end is not None and last_end < missed and not will_run:
                log.info("the %s digest due at %s was not sent: sending it now", cadence, missed)
                scheduler.modify_job(job_id, next_run_time=now)
                will_run = True
            any_will_run = any_will_run or will_run
        if self.store.digests(unfinished_only=True) and not any_will_run:
            # Finish at once what a stop or a crash left unfinished (a one-off job; the send
            # lock makes it and a digest job wait for each other).
            scheduler.add_job(
                TARGETS[RESUME_JOB], id=RESUME_JOB, args=[self.config_path], replace_existing=True, next_run_time=now
            )

    def _started(self, event: JobSubmissionEvent) -> None:
        """A job handed to its executor: how late it starts, against the first run it stands
        for (coalesced runs after a stop are one run, as late as the oldest)."""
        if event.scheduled_run_times:
            first = min(event.scheduled_run_times)
            self.metrics.job_late(event.job_id, (datetime.now(first.tzinfo) - first).total_seconds())

    def _record(self, event: JobExecutionEvent) -> None:
        what = {EVENT_JOB_EXECUTED: "ran", EVENT_JOB_ERROR: "failed", EVENT_JOB_MISSED: "missed"}[event.code]
        outcome = {EVENT_JOB_EXECUTED: "ok", EVENT_JOB_ERROR: "error", EVENT_JOB_MISSED: "missed"}[event.code]
        self.metrics.job_ran(event.job_id, outcome)
        if event.code == EVENT_JOB_MISSED:  # given up: as late as it was when the scheduler saw it
            late = datetime.now(event.scheduled_run_time.tzinfo) - event.scheduled_run_time
            self.metrics.job_late(event.job_id, late.total_seconds())
        self.last_event[event.job_id] = f"{what} {event.scheduled_run_time:%Y-%m-%dT%H:%M:%S%z}"
        if event.code == EVENT_JOB_EXECUTED and isinstance(event.retval, datetime):
            self._resume_at(event.retval)  # a digest job left deliveries waiting for another try
        if event.code == EVENT_JOB_MISSED:
            log.warning("%s missed its run at %s (beyond the misfire grace)", event.job_id, event.scheduled_run_time)
        elif event.code == EVENT_JOB_ERROR:
            log.error("%s failed: %s", event.job_id, event.exception)

    def _resume_at(self, due: datetime) -> None:
        """The resume job, one-off, at `due` (a few seconds from now at the earliest): it is kept
        in the job store, so a restart in between keeps it, and a start resumes anyway."""
        scheduler = self.scheduler
        if scheduler is None or not scheduler.running:
            return  # stopping: the next start resumes the unfinished digest
        when = max(due, datetime.now(scheduler.timezone) + timedelta(seconds=RESUME_AT_THE_EARLIEST))
        try:
            scheduler.add_job(
                TARGETS[RESUME_JOB], id=RESUME_JOB, args=[self.config_path], replace_existing=True, next_run_time=when
            )
        except (KeyError, SchedulerNotRunningError):  # its job store detached by `stop`
            return
        log.info("deliveries wait for another try: resuming the digest at %s", when.isoformat(timespec="seconds"))

    def health(self) -> dict[str, Any]:
        if not self.owner or self.scheduler is None:
            return {"state": "standby", "detail": "another process schedules this database"}
        jobs = {}
        for job in self.scheduler.get_jobs():
            run = job.next_run_time
            jobs[job.id] = {"next_run": run.isoformat() if run else None, "last": self.last_event.get(job.id)}
        since = self.ingests.running.get(INGEST_JOB)
        ingest = f"running since {since.isoformat(timespec='seconds')}" if since else "idle"
        return {"state": "running" if self.scheduler.running else "stopped", "ingest": ingest, "jobs": jobs}

    def stop(self) -> None:
        """Let running digests finish (they stop between messages when jobs.STOP is set); wait
        for a running ingest `STOP_WAITS_FOR_INGEST` seconds at most (see `IngestExecutor`)."""
        if self.scheduler is not None:
            # APScheduler's shutdown wakes its loop for one last pass over the job stores, which
            # hands due jobs to the closed executor and stores their next run: a digest due at
            # that moment would be lost (research 2.4). Detach the store first; its rows stay.
            self.scheduler.pause()
            self.scheduler.remove_jobstore("default", shutdown=False)
            self.scheduler.shutdown(wait=True)
            self.scheduler = None
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None
