"""A long ingest and the store's one write lock (issue 17, item 13): a pass of thousands of
changes commits a batch (StoreWriter.BATCH, 2,000) at a time, so another writer (an
unsubscribe, a digest) waits for a batch, not for the pass; a pass killed between batches
leaves a correct store that the next build finishes.

`publisher build` runs as its own process, as the scheduler's ingest runs beside the web; the
other writer is a plain SQLite connection in this process, like the web's.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from test_serve_first import status_of, unsubscribe_link
from test_smtp import free_port

from conftest import PUBLISHER_MAIN, Service, Site
from publisher.model import SubscriberStatus
from publisher.store import StoreWriter

FILES = 2 * StoreWriter.BATCH + 1000  # three batches
BODY = "正文内容，科技创新与产业政策联动。\n\n" * 40


pytestmark = pytest.mark.sqlite_only(
    "SQLite's one write lock per file, and the unsubscribe queue kept beside the file while it is locked"
)


def many_articles(site: Site, count: int = FILES) -> None:
    """`count` articles in the folders of two categories, written straight to disk (fast)."""
    for folder in (site.content / "tech", site.content / "policy"):
        folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        folder = site.content / ("tech" if n % 2 else "policy")
        (folder / f"a{n}.md").write_text(f"---\ntitle: 文章 {n}\ndate: 2026-05-06 14:00\n---\n{BODY}", encoding="utf-8")


def build_process(site: Site) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", PUBLISHER_MAIN, "--config", str(site.config), "build"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PUBLISHER_WORKERS": "2"},
    )


def articles_in(db: Path) -> int:
    """How many articles are committed; -1 before the store is made."""
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return int(conn.execute("select count(*) from articles").fetchone()[0])
    except sqlite3.OperationalError:  # not made yet
        return -1


class OtherWriter:
    """Writes to the store every 50 ms while the ingest runs, as the web's unsubscribes do; keeps
    how long each write waited for the lock and how many articles the store had meanwhile."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.waits: list[tuple[float, int]] = []  # (seconds waited, articles committed then)
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            committed = articles_in(self.db)
            if committed < 0:
                continue
            started = time.monotonic()
            try:
                with sqlite3.connect(self.db, timeout=30, isolation_level=None) as conn:
                    conn.execute("BEGIN IMMEDIATE")  # the write lock, as an unsubscribe takes it
                    conn.execute("DELETE FROM meta WHERE key = 'other-writer'")
                    conn.execute("INSERT INTO meta (key, value) VALUES ('other-writer', ?)", (str(started),))
                    conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                self.errors.append(str(exc))
            self.waits.append((time.monotonic() - started, committed))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


def test_another_writer_waits_for_a_batch_not_for_the_whole_ingest(site: Site) -> None:
    site.write_config()
    site.build()  # the store exists, empty
    many_articles(site)
    build = build_process(site)
    other = OtherWriter(site.db)
    try:
        _out, errors = build.communicate(timeout=300)
    finally:
        other.close()
    assert build.returncode == 0, errors.decode()
    assert not other.errors, other.errors
    assert len(other.waits) >= 10, f"the ingest was too quick to overlap it: {other.waits}"
    waits = sorted(wait for wait, _committed in other.waits)
    assert waits[-1] < 0.6, other.waits  # before: the rest of the pass after its first batch, seconds
    assert 0 < max(committed for _wait, committed in other.waits if committed < FILES)  # it wrote meanwhile
    assert articles_in(site.db) == FILES


def test_a_pass_killed_between_batches_leaves_a_store_the_next_build_finishes(site: Site) -> None:
    """The build is stopped (SIGSTOP) as soon as its first batch is seen committed, then killed:
    what it committed is what was seen. Six batches, so that the five after the first take far
    longer than this test may wait to be scheduled on a busy machine (with three, one CI run
    saw all of them committed before the kill)."""
    total = 5 * StoreWriter.BATCH + 1000
    site.write_config()
    site.build()
    many_articles(site, total)
    build = build_process(site)
    deadline = time.monotonic() + 120
    while articles_in(site.db) < StoreWriter.BATCH and build.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    build.send_signal(signal.SIGSTOP)
    committed = articles_in(site.db)
    build.send_signal(signal.SIGKILL)
    build.wait(timeout=30)
    assert build.returncode == -signal.SIGKILL and 0 < committed < total, (
        f"not killed between batches ({committed} of {total} stored)"
    )
    assert articles_in(site.db) == committed
    with sqlite3.connect(site.db) as conn:
        dirty = {row[0] for row in conn.execute("select scope from dirty_feeds")}
        stored_in = {row[0] for row in conn.execute("select distinct category_slug from article_categories")}
        digests = conn.execute("select count(*) from folder_digests").fetchone()[0]
        linked = conn.execute(
            "select count(*) from articles where id not in (select article_id from article_categories)"
        ).fetchone()[0]
    assert digests == 0  # none vouches for a folder the pass was writing
    assert linked == 0  # every committed article came with its category links
    assert stored_in and stored_in <= dirty  # their feeds are due, though the pass never ended

    report = site.build()  # finishes the work
    assert report.new == total - committed and report.skipped == 0 and report.withdrawn == 0
    assert articles_in(site.db) == total
    rss = site.feed("tech/rss.xml").decode()
    assert rss.count("<item>") == 50
    again = site.build()
    assert (again.new, again.changed, again.withdrawn) == (0, 0, 0) and again.unchanged == total


# --- a reader's unsubscribe while the store is busy ---------------------------------------------


class HeldLock:
    """SQLite's write lock, taken by another connection and held until `release`."""

    def __init__(self, db: Path) -> None:
        self.conn = sqlite3.connect(db, isolation_level=None)
        self.conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")
        self.conn.close()


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_an_unsubscribe_while_the_store_is_locked_is_answered_and_recorded(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    from publisher.web import create_app, unsubscribes

    monkeypatch.setattr(unsubscribes, "STORE_WAIT", 1.0)
    monkeypatch.setattr(unsubscribes, "RETRY_EVERY", 0.2)
    site.write_config(site.mail_to_outbox() + '\n[web]\npublic_url = "http://127.0.0.1:8080"\n')
    site.build()
    link = unsubscribe_link(site, "http://127.0.0.1:8080", monkeypatch)
    app = site.app()
    web = create_app(app)
    lock = HeldLock(site.db)
    answers: list[Any] = []
    post = threading.Thread(
        target=lambda: answers.append(web.test_client().post(link, data={"List-Unsubscribe": "One-Click"})),
        daemon=True,
    )
    try:
        started = time.monotonic()
        post.start()
        post.join(timeout=5)  # before: the request waited for the lock, 120 s, then a 500
        took = time.monotonic() - started
        queue = Path(f"{site.db}.unsubscribes")
        queued = queue.read_text(encoding="utf-8") if queue.exists() else ""
        status_while_locked = status_of(site, "reader@example.com")
    finally:
        lock.release()
    try:
        applied = wait_for(lambda: status_of(site, "reader@example.com") is SubscriberStatus.UNSUBSCRIBED, 10)
        emptied = wait_for(lambda: not queue.exists() or not queue.read_text(encoding="utf-8").strip(), 10)
    finally:
        post.join(timeout=30)
        app.close()
    assert answers and took < 4, f"no answer within {took:.1f} s while the store was locked"
    assert answers[0].status_code == 200 and "reader@example.com" in answers[0].get_data(as_text=True)
    assert status_while_locked is SubscriberStatus.CONFIRMED and '"how": "one-click"' in queued
    assert queue.stat().st_mode & 0o777 == 0o600
    assert applied and emptied


def test_a_queued_unsubscribe_survives_a_killed_service(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real service answers from the queue, is killed before it could apply it, and the
    next start applies it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    site.write_config(site.mail_to_outbox() + f'\n[web]\npublic_url = "{base}"\n')
    site.build()
    link = unsubscribe_link(site, base, monkeypatch)
    service = Service(site.config, site.root, port, command="serve")
    lock: HeldLock | None = None
    try:
        service.wait_until_serving()
        lock = HeldLock(site.db)
        done = requests.post(link, data={"List-Unsubscribe": "One-Click"}, timeout=30)
        service.process.send_signal(signal.SIGKILL)
        service.process.wait(timeout=10)
    finally:
        if service.process.poll() is None:
            service.stop()
        if lock is not None:
            lock.release()
    assert done.status_code == 200, done.text
    assert status_of(site, "reader@example.com") is SubscriberStatus.CONFIRMED  # only queued so far
    again = Service(site.config, site.root, port, command="serve")
    try:
        again.wait_until_serving()
        applied = wait_for(lambda: status_of(site, "reader@example.com") is SubscriberStatus.UNSUBSCRIBED, 10)
    finally:
        assert again.stop() == 0, again.output()
    assert applied, again.output()


def test_a_torn_line_in_the_queue_is_set_aside_and_blocks_nothing(tmp_path: Path) -> None:
    """A kill or a full disk in the middle of a queued line must not stop every later
    unsubscribe from being applied (it raised on every pass, and nothing after it was applied)."""
    from datetime import UTC, datetime

    from publisher.web.unsubscribes import Unsubscribes

    queue = tmp_path / "publisher.db.unsubscribes"
    queue.write_text('{"id": 7, "at": "2026-12-0', encoding="utf-8")  # torn: no end, no newline
    applied: list[int] = []
    unsubscribes = Unsubscribes(queue, lambda sid, _at, _how: applied.append(sid), wait=5)
    try:
        unsubscribes._queue(8, datetime(2026, 12, 3, tzinfo=UTC), "one-click")
        unsubscribes.apply_pending()  # under the queue's flock, so after it 8 has been applied
        assert 8 in applied
    finally:
        unsubscribes.close()
    assert applied.count(8) >= 1 and 7 not in applied
    aside = tmp_path / "publisher.db.unsubscribes.damaged"
    assert aside.read_text(encoding="utf-8") == '{"id": 7, "at": "2026-12-0\n'
    assert aside.stat().st_mode & 0o777 == 0o600
    assert queue.read_text(encoding="utf-8") == ""
