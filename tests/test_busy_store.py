"""A long ingest and the store's one write lock (issue 17, item 13): a pass of thousands of
changes commits 500 at a time, so another writer (an unsubscribe, a digest) waits for a batch,
not for the pass; a pass killed between batches leaves a correct store that the next build
finishes.

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
from pathlib import Path

from conftest import PUBLISHER_MAIN, Site

FILES = 4000
BODY = "正文内容，科技创新与产业政策联动。\n\n" * 40


def many_articles(site: Site, count: int = FILES) -> None:
    """`count` articles in the folders of two categories, written straight to disk (fast)."""
    for folder in (site.content / "tech", site.content / "policy"):
        folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        folder = site.content / ("tech" if n % 2 else "policy")
        (folder / f"a{n}.md").write_text(
            f"---\ntitle: 文章 {n}\ndate: 2026-05-06 14:00\n---\n{BODY}", encoding="utf-8"
        )


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
    site.write_config()
    site.build()
    many_articles(site)
    build = build_process(site)
    deadline = time.monotonic() + 120
    while articles_in(site.db) < 1000 and build.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    build.send_signal(signal.SIGKILL)
    build.wait(timeout=30)
    committed = articles_in(site.db)
    assert build.returncode == -signal.SIGKILL and 0 < committed < FILES, (
        f"not killed between batches ({committed} of {FILES} stored)"
    )
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
    assert report.new == FILES - committed and report.skipped == 0 and report.withdrawn == 0
    assert articles_in(site.db) == FILES
    rss = site.feed("tech/rss.xml").decode()
    assert rss.count("<item>") == 50
    again = site.build()
    assert (again.new, again.changed, again.withdrawn) == (0, 0, 0) and again.unchanged == FILES

