"""The console's subscriber and digest queries and services, below the web pages: the paged
search on SQLite and PostgreSQL, a reader's timeline, the streamed CSV export read back by the
import, and a send from a thread paused and resumed through the ledger (aiosmtpd)."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from test_bounces import app_on, event
from test_newsletter import Inbox, add_readers, mailing_site
from test_smtp import free_port

from conftest import Site
from publisher.bounces.events import EventKind
from publisher.model import Subscriber, SubscriberStatus
from publisher.newsletter import Newsletter
from publisher.normalize import CategoryIndex
from publisher.send_runs import SendBusy, SendRuns
from publisher.store import Store
from publisher.subscriptions import export_csv, export_lines, import_csv
from publisher.timeline import reader_timeline

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def people(n: int) -> list[Subscriber]:
    statuses = list(SubscriberStatus)
    return [
        Subscriber(
            f"Reader{i:03d}@Example.com",
            f"读者{i}" if i % 2 else f"Smith_{i}",
            ("policy",) if i % 3 else (),
            statuses[i % 4],
            T0,
            "import",
            T0,
        )  # fmt: skip
        for i in range(n)
    ]


def test_the_search_pages_filters_and_escapes_on_both_stores(store_url: str) -> None:
    store = Store(store_url)
    try:
        store.save_subscribers(people(120))
        # Every one, 50 at a time, in sign-up order, each once.
        seen, after = [], 0
        while True:
            page = store.find_subscribers(after_id=after, limit=50)
            seen += [s.email for s in page.subscribers]
            if page.next_after is None:
                break
            after = page.next_after
        assert seen == [s.email for s in people(120)]
        # By address, whatever its case; by name; by status; by category (no categories: all of them).
        assert [s.email for s in store.find_subscribers("READER007@").subscribers] == ["Reader007@Example.com"]
        assert [s.name for s in store.find_subscribers("读者11").subscribers] == [
            "读者11",
            *(f"读者{i}" for i in range(111, 120, 2)),
        ]
        confirmed = store.find_subscribers(status=SubscriberStatus.CONFIRMED, limit=500).subscribers
        assert len(confirmed) == 30 and {s.status for s in confirmed} == {SubscriberStatus.CONFIRMED}
        tech = store.find_subscribers(category="tech", limit=500).subscribers
        assert tech and all(s.categories == () for s in tech)
        assert len(store.find_subscribers(category="policy", limit=500).subscribers) == 120
        # LIKE's wildcards are the text's own characters: "_" matches only an underscore.
        assert len(store.find_subscribers("h_1", limit=500).subscribers) == len(
            [i for i in range(120) if i % 2 == 0 and str(i).startswith("1")]
        )
        assert store.find_subscribers("%").subscribers == []
        assert store.subscriber_counts() == {s.value: 30 for s in SubscriberStatus}
    finally:
        store.close()


def test_a_readers_timeline_has_sign_up_status_deliveries_events_and_suppression(site: Site) -> None:
    app = app_on(site, site.store_url)
    try:
        store = app.store
        store.save_subscribers(
            [Subscriber("a@example.com", "", (), SubscriberStatus.CONFIRMED, T0, "web", T0 - timedelta(days=3))]
        )
        digest_id, _ = store.open_digest("w1", T0 - timedelta(days=7), T0, T0)
        store.plan_deliveries(digest_id, [("a@example.com", "<m1@example.com>")], T0 + timedelta(hours=1))
        delivery = store.next_deliveries(digest_id, 10)[0]
        store.mark_delivery(delivery.id, "sent", T0 + timedelta(hours=1), tried=True)
        app.record_mail_events([event(EventKind.HARD_BOUNCE, "a@example.com", T0 + timedelta(hours=2))])
        key = "a@example.com"
        reader = store.subscriber(key)
        assert reader is not None
        entries = reader_timeline(
            reader, store.reader_deliveries(key), store.mail_events(100, key), store.suppression(key)
        )
    finally:
        app.close()
    kinds = [e.kind for e in entries]
    assert kinds[0] == "signed-up"
    assert "delivery" in kinds and "hard" in kinds and "suppressed" in kinds
    delivery_entry = next(e for e in entries if e.kind == "delivery")
    assert delivery_entry.text == "w1: sent" and delivery_entry.digest_id == digest_id
    assert [e.at for e in entries] == sorted(e.at for e in entries)


def test_the_streamed_export_is_the_files_export_and_imports_back(site: Site, tmp_path: Path) -> None:
    app = site.app()
    try:
        index = CategoryIndex(app.categories)
        app.store.save_subscribers(people(40))
        readers = app.store.find_subscribers(limit=1000).subscribers
        streamed = "".join(export_lines(readers, index))
        whole = io.StringIO()
        assert export_csv(readers, index, whole) == 40
        assert streamed == whole.getvalue()
        path = tmp_path / "back.csv"
        path.write_text(streamed, encoding="utf-8")
    finally:
        app.close()
    other = Site(tmp_path / "other")
    app = other.app()
    try:
        report = import_csv(app.store, path, CategoryIndex(app.categories), SubscriberStatus.CONFIRMED, T0, app.offered)
        assert report.problems == [] and report.added == 20 and report.kept_stopped == 20
        again = {s.email.lower(): (s.name, s.status, s.categories) for s in app.store.subscribers()}
    finally:
        app.close()
    assert again == {s.email.lower(): (s.name, s.status, s.categories) for s in readers}


def test_a_send_from_a_thread_pauses_and_resumes_through_the_ledger(site: Site) -> None:
    box, port = Inbox(delay=0.05), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        mailing_site(site, port)
        add_readers(site, 60)
        site.clock_now = datetime.now(UTC)
        app = site.app()
        letters = Newsletter(app)
        runs = SendRuns(letters, app.transport)
        try:
            run = runs.start_next()
            with pytest.raises(SendBusy):
                runs.start_next()
            deadline = time.monotonic() + 30
            while len(box.received) < 5 and time.monotonic() < deadline:
                time.sleep(0.02)
            row = app.store.digests()[-1]
            assert letters.pause(row)
            assert run.thread is not None
            run.thread.join(10)
            assert not run.running and run.report is not None and run.report.paused
            assert app.store.digest(row.id).status == "paused"
            got = len(box.received)
            time.sleep(1.2)
            assert len(box.received) == got < 60  # nothing goes while paused
            progress = runs.progress(row)
            assert progress.status == "paused" and progress.done == got and progress.total == 60
            again = runs.start(app.store.digest(row.id), "resume")
            assert again.thread is not None
            again.thread.join(30)
            assert app.store.digest(row.id).status == "done"
            assert sorted(r for r, _ in box.received) == sorted(set(r for r, _ in box.received))
            assert len(box.received) == 60
            assert runs.progress(row).done == 60
        finally:
            app.close()
    finally:
        controller.stop()
