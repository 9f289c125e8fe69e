"""The scheduler's jobs. Their import paths are stored in the job store: keep them stable.

APScheduler keeps `"publisher.jobs:<name>"` and the arguments in the database; a path it can
no longer import makes it delete the job silently (research: library-pitfalls 2.3). So each
job takes only the configuration file's path, builds its own App, and decides what to do from
the store: a late, doubled or caught-up run does the right thing exactly once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .app import App
from .config import load_settings
from .metrics import Metrics
from .model import WEEKLY, BuildReport

if TYPE_CHECKING:
    from .newsletter import Newsletter
    from .websub import HubPings

log = logging.getLogger(__name__)

# The Metrics of the App that `publisher run` serves, by configuration file: the jobs count
# into it, so its /metrics shows their work (a job run elsewhere counts into a throwaway one).
_SHARED_METRICS: dict[str, Metrics] = {}
# Its WebSub pings likewise: one thread per process retries a hub, beyond the job that built.
_SHARED_PINGS: dict[str, HubPings] = {}


def share_metrics(config_path: str, metrics: Metrics) -> None:
    """The jobs of `config_path` count into `metrics` from now on."""
    _SHARED_METRICS[config_path] = metrics


def share_hub_pings(config_path: str, pings: HubPings) -> None:
    """The jobs of `config_path` hand their WebSub pings to `pings` from now on."""
    _SHARED_PINGS[config_path] = pings


def _app(config_path: str) -> App:
    metrics = _SHARED_METRICS.get(config_path)
    settings = load_settings(Path(config_path))
    app = App(settings, metrics=metrics) if metrics is not None else App(settings)
    shared = _SHARED_PINGS.get(config_path)
    app.hub_pings = shared if shared is not None and not shared.closed else None
    return app


# Set on SIGTERM/SIGINT: a digest being sent stops after the message in flight (its ledger is
# consistent at every step) and the next start finishes it.
STOP = threading.Event()


@contextmanager
def _explained(app: App) -> Iterator[None]:
    """A store error explained (a full disk, a lock held too long, a damaged store), so the job's
    failure is logged as one line naming the store and what to do."""
    from sqlalchemy.exc import DBAPIError

    from .store import store_failure

    try:
        yield
    except DBAPIError as exc:
        raise store_failure(exc, app.settings.store.url) from exc


def ingest_and_build(config_path: str) -> None:
    """Ingest and build, unless a build started from the console (in any web process on the
    store) is running: then this run is skipped, and the next interval builds."""
    app = _app(config_path)
    try:
        with _explained(app), app.store.build_lock() as got:
            if not got:
                log.info("ingest skipped: another build of this store is running (the console's ingest now)")
                return
            report = BuildReport()
            app.build(report)
            log.info(
                "ingest: %d new, %d changed, %d withdrawn; %d files written",
                report.new, report.changed, report.withdrawn, report.feeds_written,
            )  # fmt: skip
            for failed in report.failed_sources:
                log.error("source failed: %s", failed)
            for failed in report.failed_parts:
                log.error("part failed: %s", failed)
    finally:
        app.close()


def poll_bounce_mailbox(config_path: str) -> None:
    """Read the bounce mailbox once. A mailbox that cannot be reached fails the job (logged as
    one line, `bounce-mailbox failed: …`, and shown by /healthz); the next interval tries again."""
    app = _app(config_path)
    try:
        if app.settings.bounces.mailbox is None:
            return  # removed from the config since this job was stored; the next start drops it
        with _explained(app):
            report = app.poll_bounce_mailbox()
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(report.by_kind.items())) or "no events"
        log.info(
            "bounce mailbox: %d read (%s), %d left; %d suppressed, %d unsubscribed",
            report.processed, kinds, report.left, len(report.suppressed), len(report.unsubscribed),
        )  # fmt: skip
        if report.left:
            log.warning("bounce mailbox: %d message(s) it could not read are left in it for a person", report.left)
    finally:
        app.close()


def send_digest(config_path: str, cadence: str = WEEKLY) -> datetime | None:
    """The digest job of a cadence (`run_digest` on the configuration's App). The weekly job is
    stored without its cadence, as it was before cadences existed."""
    app = _app(config_path)
    try:
        if cadence not in app.settings.digest.cadences:
            log.info("no %s digest: it is not in [digest] cadences any more", cadence)
            return None
        with _explained(app):
            return run_digest(app, cadence)
    finally:
        app.close()


def run_digest(app: App, cadence: str) -> datetime | None:
    """Finish any unfinished digest, then open and send the cadence's one due now (by `app`'s
    clock). However many runs were missed, this opens one digest with everything since the
    cadence's last. Returns when the first delivery left waiting for another try is due (the
    scheduler runs `resume_digests` then)."""
    from .newsletter import Newsletter

    letters = Newsletter(app)
    next_try = _resume(letters, app)
    if STOP.is_set():
        return next_try
    plan = letters.plan_scheduled(cadence)
    log.info("digest %s: %d deliveries planned", plan.digest.key, plan.planned)
    report = letters.send(plan.digest, app.transport(), should_stop=STOP.is_set)
    log.info(
        "digest %s: sent %d, failed %d, skipped %d, waiting %d; %d chunk(s) handed to the workers",
        plan.digest.key, report.sent, report.failed, report.skipped, report.waiting, report.queued,
    )  # fmt: skip
    return _first(next_try, report.next_try)


def resume_digests(config_path: str) -> datetime | None:
    """At start-up, and when a delivery waiting for another try is due: finish what is due of
    every unfinished digest. Returns when the next delivery left waiting is due, if any."""
    from .newsletter import Newsletter

    app = _app(config_path)
    try:
        with _explained(app):
            return _resume(Newsletter(app), app)
    finally:
        app.close()


def _resume(letters: Newsletter, app: App) -> datetime | None:
    next_try = None
    for row in letters.unfinished():
        if STOP.is_set():
            break
        if row.status == "paused":
            continue  # an operator's decision: `publisher digest resume`
        log.info("resuming digest %s", row.key)
        report = letters.send(row, app.transport(), should_stop=STOP.is_set)
        next_try = _first(next_try, report.next_try)
    return next_try


def _first(a: datetime | None, b: datetime | None) -> datetime | None:
    return min(a, b) if a is not None and b is not None else a or b
