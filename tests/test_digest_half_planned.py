"""A digest left `planning` half-way (a crash, a kill, a backup's copy taken while planning) is
never sent as it is: whatever sends it (the console's retry or resume, `digest resume`, the
scheduler) plans the rest of its readers first, and the send engine never marks a digest `done`
that is not `sending`, so no reader is left out of a digest that says it is finished."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_delivery import NOW, build
from test_newsletter import Inbox, add_readers, inbox, mailing_site  # noqa: F401  (inbox: fixture)
from test_plan_batches import Crash, readers

import publisher.store.ledger as ledger_module
from conftest import Site
from publisher.app import App
from publisher.delivery import Sender
from publisher.jobs import resume_digests
from publisher.newsletter import Newsletter
from publisher.send_runs import SendRuns
from publisher.store import DigestRow, Store
from publisher.store.backup import backup_sqlite
from publisher.store.ledger import PLAN_BATCH
from publisher.transports.outbox import MemoryTransport

READERS = 30


def test_the_send_engine_never_marks_a_half_planned_digest_done(store: Store) -> None:
    digest_id, _ = store.open_digest("scheduled:2026-11-30T00:00:00Z", NOW - timedelta(days=7), NOW, NOW)
    with pytest.raises(Crash):
        store.plan_deliveries(digest_id, readers(PLAN_BATCH * 2 + 10, crash_after=PLAN_BATCH + 5), NOW)
    memory = MemoryTransport()
    Sender(store, memory, lambda: NOW, messages_per_second=0, refused=lambda d, w: None).run(digest_id, build)
    assert len(memory.sent) == PLAN_BATCH  # what was planned went
    assert store.digest(digest_id).status == "planning"  # not `done`: the next run plans the rest
    assert [d.id for d in store.digests(unfinished_only=True)] == [digest_id]


@pytest.fixture
def half_planned(site: Site, inbox: tuple[Inbox, int], monkeypatch: pytest.MonkeyPatch) -> Iterator[DigestRow]:  # noqa: F811
    """The scheduled digest of READERS readers, killed while planning its second batch of 10."""
    _box, port = inbox
    mailing_site(site, port)
    add_readers(site, READERS)
    site.clock_now = datetime.now(UTC)
    real = ledger_module._batches

    def killed_after_one(items, size):  # type: ignore[no-untyped-def]
        batches = real(items, 10)
        yield next(batches)
        raise Crash

    monkeypatch.setattr(ledger_module, "_batches", killed_after_one)
    app = site.app()
    try:
        with pytest.raises(Crash):
            Newsletter(app).plan_scheduled()
        [row] = app.store.digests()
    finally:
        app.close()
    monkeypatch.setattr(ledger_module, "_batches", real)
    assert row.status == "planning"
    yield row


def delivered(site: Site) -> tuple[str, dict[str, int]]:
    app = site.app()
    try:
        [row] = app.store.digests()
        return row.status, app.store.delivery_counts(row.id)
    finally:
        app.close()


@pytest.mark.parametrize("action", ["retry", "resume"])
def test_the_consoles_buttons_plan_the_rest_of_a_half_planned_digest_first(
    site: Site,
    inbox: tuple[Inbox, int],  # noqa: F811
    half_planned: DigestRow,
    action: str,
) -> None:
    box, _port = inbox
    app = site.app()
    try:
        assert app.store.delivery_counts(half_planned.id) == {"pending": 10}
        run = SendRuns(Newsletter(app), app.transport).start(half_planned, action)
        assert run.thread is not None
        run.thread.join(60)
        assert not run.error, run.error
    finally:
        app.close()
    assert sorted(rcpt for rcpt, _mid in box.received) == sorted(f"reader{n:04d}@example.com" for n in range(READERS))
    assert delivered(site) == ("done", {"sent": READERS})


@pytest.mark.sqlite_only("restores a SQLite backup")
def test_resuming_a_digest_a_backup_paused_while_planning_plans_the_rest_first(
    site: Site,
    inbox: tuple[Inbox, int],  # noqa: F811
    half_planned: DigestRow,
    tmp_path: Path,
) -> None:
    box, _port = inbox
    copy = tmp_path / "publisher.db"
    taken = backup_sqlite(site.db, copy)
    assert [(d.key, d.was) for d in taken.paused] == [(half_planned.key, "planning")]
    for leftover in site.db.parent.glob(site.db.name + "-*"):
        leftover.unlink()
    shutil.copy(copy, site.db)  # restored

    resume_digests(str(site.config))  # the service's start: a paused digest waits for the operator
    assert box.received == [] and delivered(site) == ("paused", {"pending": 10})

    app: App = site.app()
    try:
        letters = Newsletter(app)
        [row] = letters.unfinished()
        report = letters.send(row, app.transport())  # `digest resume`, the console's resume
        note = json.loads(app.store.get_meta("backup") or "{}")
    finally:
        app.close()
    assert report.sent == READERS and len(box.received) == READERS
    assert delivered(site) == ("done", {"sent": READERS})
    assert note["planning"] == [] and note["paused"] == [half_planned.key]  # planned once, not at each resume


@pytest.mark.sqlite_only("restores a SQLite backup")
def test_a_backup_made_before_copies_noted_planning_digests_still_plans_the_rest_first(
    site: Site,
    inbox: tuple[Inbox, int],  # noqa: F811
    half_planned: DigestRow,
    tmp_path: Path,
) -> None:
    """A copy made by an older version notes only which digests it paused: any of them may be
    half-planned, so resuming plans the rest first (planning again adds only readers not planned)."""
    box, _port = inbox
    copy = tmp_path / "publisher.db"
    backup_sqlite(site.db, copy)
    for leftover in site.db.parent.glob(site.db.name + "-*"):
        leftover.unlink()
    shutil.copy(copy, site.db)
    app: App = site.app()
    try:
        note = json.loads(app.store.get_meta("backup") or "{}")
        del note["planning"]  # as the older version wrote it
        app.store.set_meta("backup", json.dumps(note))
        letters = Newsletter(app)
        [row] = letters.unfinished()
        report = letters.send(row, app.transport())
    finally:
        app.close()
    assert report.sent == READERS and len(box.received) == READERS
    assert delivered(site) == ("done", {"sent": READERS})
