"""The scheduler: a digest missed while the process was down runs once within the grace and not
after it; missed weeks coalesce into one digest; two processes on one database send one digest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from conftest import Site
from publisher.config import load_settings
from publisher.model import Subscriber, SubscriberStatus
from publisher.scheduler import DIGEST_JOB, INGEST_EXECUTOR, INGEST_JOB, JOBS_TABLE, Scheduler
from publisher.store import Store

ZONE = ZoneInfo("Asia/Shanghai")


def cron_at(moment: datetime) -> str:
    """A weekly cron line that fires at `moment` (site time)."""
    local = moment.astimezone(ZONE)
    return f"{local.minute} {local.hour} * * {local.strftime('%a').lower()}"


def prepare(site: Site, schedule: str, grace_minutes: int = 360) -> Store:
    site.write_config(
        site.mail_to_outbox()
        + f"""
[digest]
schedule = "{schedule}"
messages_per_second = 0
[schedule]
misfire_grace = {grace_minutes}
"""
    )
    site.clock_now = datetime.now(UTC) - timedelta(hours=2)
    recent = datetime.now(ZONE) - timedelta(days=1)
    site.article("tech/a.md", "本周科技新闻", date=f"{recent:%Y-%m-%d %H:%M}")
    site.build()
    store = Store(site.store_url)
    now = datetime.now(UTC)
    store.save_subscribers([Subscriber("r@example.com", "", (), SubscriberStatus.CONFIRMED, now, "cli", now)])
    return store


def edit_stored_job(site: Site, store: Store, job_id: str, edit: Callable[[Job], None]) -> None:
    """What a process that was stopped leaves behind, with its stored job `job_id` changed by
    `edit`. Edited in the job store itself: a scheduler started just for this would, on
    shutdown, hand a now-due job to its closed executor and so consume the run (research 2.4)."""
    first = Scheduler(load_settings(site.config), str(site.config), store)
    assert first.start()
    first.stop()
    jobs = SQLAlchemyJobStore(engine=store.engine, tablename=JOBS_TABLE)
    jobs.start(BackgroundScheduler(), "default")
    job = jobs.lookup_job(job_id)
    assert job is not None
    edit(job)
    jobs.update_job(job)


def store_next_run(site: Site, store: Store, when: datetime) -> None:
    """The digest job stored with its next run at `when`."""
    edit_stored_job(site, store, DIGEST_JOB, lambda job: setattr(job, "next_run_time", when))


def digests_after(store: Store, seconds: float, want: int) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done = [d for d in store.digests() if d.status == "done"]
        if len(done) >= want:
            return len(done)
        time.sleep(0.1)
    return len([d for d in store.digests() if d.status == "done"])


def outbox(site: Site) -> int:
    folder = site.outbox
    return len(list(folder.glob("*.eml"))) if folder.is_dir() else 0


@pytest.mark.parametrize(("late_hours", "runs"), [(1, 1), (7, 0)])
def test_a_digest_due_while_down_runs_once_within_the_grace_and_not_after(
    site: Site, late_hours: int, runs: int
) -> None:
    due = datetime.now(UTC) - timedelta(hours=late_hours)
    store = prepare(site, cron_at(due))
    store_next_run(site, store, due)
    service = Scheduler(load_settings(site.config), str(site.config), store)
    assert service.start()
    try:
        # The scheduler's thread first runs or skips the missed run, then moves the job on to
        # next week; until it has, the job still shows the old time (waiting for it, not for a
        # digest that is not meant to come, keeps the "none" case from racing the thread).
        deadline = time.monotonic() + 10
        while service.scheduler.get_job(DIGEST_JOB).next_run_time <= datetime.now(UTC):  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the missed run was never handled"
            time.sleep(0.05)
        assert digests_after(store, 10, runs) == runs
        time.sleep(1.0)  # a late or second run would show up here
        assert len([d for d in store.digests() if d.status == "done"]) == runs
    finally:
        service.stop()
    assert outbox(site) == runs


def test_three_missed_weeks_give_one_digest(site: Site) -> None:
    last_due = datetime.now(UTC) - timedelta(hours=1)
    store = prepare(site, cron_at(last_due))
    store_next_run(site, store, last_due - timedelta(weeks=2))  # three fire times passed
    service = Scheduler(load_settings(site.config), str(site.config), store)
    assert service.start()
    try:
        assert digests_after(store, 10, 1) == 1
        time.sleep(1.5)  # a second or third run would show up here
        assert len(store.digests()) == 1
    finally:
        service.stop()
    assert outbox(site) == 1


def test_two_processes_on_one_database_send_one_digest(site: Site) -> None:
    due = datetime.now(UTC) - timedelta(minutes=30)
    store = prepare(site, cron_at(due))
    store_next_run(site, store, due)
    code = "import sys; from publisher.cli import main; sys.exit(main())"
    env = {**os.environ, "PUBLISHER_SECRET_KEY": "scheduler-test-key-0123456789"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, "--config", str(site.config), "run", "--port", "0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for _ in range(2)
    ]
    try:
        sent = digests_after(store, 20, 1)
        if sent:
            time.sleep(2)  # give a second scheduler every chance to send again
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        outputs = [process.communicate(timeout=30) for process in processes]
    said = [err.decode() for _out, err in outputs]
    assert sent == 1, said  # what the two processes said, when none sent it in time
    assert [p.returncode for p in processes] == [0, 0]
    assert len(store.digests()) == 1 and outbox(site) == 1
    assert sum("serves the web only" in text for text in said) == 1, said


def test_a_due_digest_that_a_shutdown_consumed_is_caught_up(site: Site) -> None:
    """APScheduler's shutdown can store the next week's run without running this one; the
    service sees a fire time within the grace that no digest covers and sends it."""
    due = datetime.now(UTC) - timedelta(hours=1)
    store = prepare(site, cron_at(due))
    week_ago, _ = store.open_scheduled_digest(lambda: due - timedelta(weeks=1), 7)
    store.plan_deliveries(week_ago.id, [], due - timedelta(weeks=1))
    store.set_digest_status(week_ago.id, "done")
    store_next_run(site, store, due + timedelta(weeks=1))  # consumed: next week's is stored
    service = Scheduler(load_settings(site.config), str(site.config), store)
    assert service.start()
    try:
        assert digests_after(store, 10, 2) == 2
    finally:
        service.stop()
    assert outbox(site) == 1


def test_a_changed_grace_or_zone_reaches_the_stored_jobs(site: Site) -> None:
    store = prepare(site, "0 8 * * mon")
    first = Scheduler(load_settings(site.config), str(site.config), store)
    assert first.start()
    first.stop()
    text = site.config.read_text(encoding="utf-8").replace("misfire_grace = 360", "misfire_grace = 30")
    site.config.write_text(text.replace('timezone = "Asia/Shanghai"', 'timezone = "Europe/Berlin"'), "utf-8")
    second = Scheduler(load_settings(site.config), str(site.config), store)
    assert second.start()
    try:
        job = second.scheduler.get_job(DIGEST_JOB)  # type: ignore[union-attr]
        assert job.misfire_grace_time == 30 * 60 and str(job.trigger.timezone) == "Europe/Berlin"
    finally:
        second.stop()


def test_an_ingest_job_stored_on_the_shared_pool_moves_to_the_ingest_executor(site: Site) -> None:
    """Jobs stored before the ingest had its own (abandonable) threads ran on the shared pool,
    whose threads a stop must wait for: the next start moves the stored job."""
    store = prepare(site, "0 8 * * mon")

    def to_shared_pool(job: Job) -> None:
        assert job.executor == INGEST_EXECUTOR
        job.executor = "default"

    edit_stored_job(site, store, INGEST_JOB, to_shared_pool)
    second = Scheduler(load_settings(site.config), str(site.config), store)
    assert second.start()
    try:
        moved = second.scheduler.get_job(INGEST_JOB)  # type: ignore[union-attr]
        assert moved.executor == INGEST_EXECUTOR
        assert second.scheduler.get_job(DIGEST_JOB).executor == "default"  # type: ignore[union-attr]
        assert second.health()["ingest"] == "idle"
    finally:
        second.stop()
