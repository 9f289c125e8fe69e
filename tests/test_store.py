"""The store's own contracts: what bulk writes leave behind reads back, compares and sorts
exactly as SQLAlchemy's own writes do."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import DateTime, insert, select
from sqlalchemy.exc import IntegrityError

from publisher.model import Article
from publisher.store import Store, sqlite_datetime
from publisher.store.schema import article_categories_table, article_renditions_table, articles_table
from publisher.store.writer import SQLITE_MAX_ROWID, StoreWriter, sqlite_datetime_utc


@pytest.mark.parametrize(
    "moment", [datetime(2026, 5, 6, 7, 8, 9, 123456), datetime(2026, 5, 6), datetime(999, 1, 2, 3, 4, 5, 6)]
)
@pytest.mark.sqlite_only("SQLite's datetime text and its WAL")
def test_bulk_insert_writes_datetimes_in_sqlalchemys_sqlite_format(tmp_path: Path, moment: datetime) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        dialect = store.engine.dialect
        sqlalchemys = DateTime().dialect_impl(dialect).bind_processor(dialect)
        assert sqlalchemys is not None and sqlite_datetime(moment) == sqlalchemys(moment)
        # An article's moments, aware, as the writer encodes them: the same text
        aware = moment.replace(tzinfo=UTC)
        assert sqlite_datetime_utc(aware) == sqlalchemys(moment)
        assert sqlite_datetime_utc(aware.astimezone(timezone(timedelta(hours=8)))) == sqlalchemys(moment)
    finally:
        store.close()


def test_bulk_inserted_articles_read_back_and_sort_as_written(store_url: str) -> None:
    store = Store(store_url)
    base = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)
    whens = [base, base + timedelta(microseconds=1), base - timedelta(days=400), base + timedelta(seconds=1)]
    try:
        with store.writer() as writer:
            for n, when in enumerate(whens):
                article = Article("s", f"k{n}", "", f"标题{n}", "<p>x</p>", "摘要", when, when, ("tech",), f"h{n}")
                writer.insert(article, f"tag:x,2026:{n}", None, "1:2", base)
        newest = store.latest("tech", 10)
        assert [(a.title, a.published) for a in newest] == sorted(
            ((f"标题{n}", when) for n, when in enumerate(whens)), key=lambda pair: pair[1], reverse=True
        )
        assert [a.title for a in store.latest(None, 10)] == [a.title for a in newest]
        assert [a.title for a in store.articles_between(base, base + timedelta(seconds=1), "published")] == [
            "标题3",
            "标题1",
        ]
    finally:
        store.close()


def test_a_pass_holds_the_write_lock_only_while_it_writes(store_url: str) -> None:
    """Changes and new articles wait in the writer until 500 are due or it commits: a slow
    pass (a web crawl) does not keep digests and subscribers out of the database meanwhile."""
    store = Store(store_url)
    when = datetime(2026, 5, 6, tzinfo=UTC)
    try:
        with store.writer(lambda: when) as writer:
            for n in range(2):
                article = Article("s", f"k{n}", "", f"标题{n}", "<p>x</p>", "摘要", when, when, ("tech",), f"h{n}")
                writer.insert(article, f"tag:x,2026:{n}", None, "1:2", when)
        known = store.known("s", ["k0", "k1"])
        with store.writer(lambda: when) as writer:
            edited = Article("s", "k0", "", "改过的标题", "<p>y</p>", "摘要", when, when, ("tech",), "h9")
            writer.replace(known["k0"].id, edited, None, "3:4")
            writer.set_fingerprint(known["k1"].id, "5:6")
            new = Article("s", "k2", "", "新的", "<p>z</p>", "摘要", when, when, ("tech",), "h2")
            writer.insert(new, "tag:x,2026:2", None, "7:8", when)
            other = threading.Thread(target=lambda: store.set_meta("subscriber-write", "done"))
            other.start()
            other.join(10)
            assert not other.is_alive() and store.get_meta("subscriber-write") == "done"
        assert [a.title for a in store.latest("tech", 10)] == ["新的", "标题1", "改过的标题"]  # newest id first
        assert store.fingerprints("s") == {"k0": "3:4", "k1": "5:6", "k2": "7:8"}
    finally:
        store.close()


@pytest.mark.parametrize(
    "largest", [1000, pytest.param(SQLITE_MAX_ROWID, marks=pytest.mark.sqlite_only("past PostgreSQL's integer range"))]
)
def test_new_articles_are_linked_and_rendered_under_their_own_ids(
    store: Store, largest: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer learns its new rows' ids without asking for them where it can (SQLite:
    one more than the largest, see writer._insert_new): each article's category links and
    rendition land on its own row, batch after batch, after another source's row, and where
    the largest id is the largest possible (SQLite then picks free ids at random)."""
    when = datetime(2026, 5, 6, tzinfo=UTC)
    with store.engine.begin() as conn:
        conn.execute(
            insert(articles_table).values(
                id=largest,
                source="other",
                key="k",
                guid="tag:x,2026:other",
                content_hash="h",
                body_hash="h",
                published=when.replace(tzinfo=None),
                updated=when.replace(tzinfo=None),
                first_seen=when.replace(tzinfo=None),
                title="其他",
            )  # fmt: skip
        )
    monkeypatch.setattr(StoreWriter, "BATCH", 3)
    with store.writer(lambda: when, "s") as writer:
        for n in range(7):
            article = Article("s", f"k{n}", "", f"标题{n}", f"<p>{n}</p>", f"摘要{n}", when, when, (f"c{n}",), f"h{n}")
            writer.insert(article, f"tag:x,2026:{n}", None, "1:2")
    a, ac, ar = articles_table.c, article_categories_table.c, article_renditions_table.c
    with store.engine.connect() as conn:
        links = conn.execute(select(a.key, ac.category_slug).join_from(articles_table, article_categories_table))
        shown = conn.execute(select(a.key, ar.content_html).join_from(articles_table, article_renditions_table))
        assert sorted(links) == [(f"k{n}", f"c{n}") for n in range(7)]
        assert sorted(shown) == [(f"k{n}", f"<p>{n}</p>") for n in range(7)]


@pytest.fixture
def shanghai_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone is Asia/Shanghai (the reference site's servers'), not UTC."""
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_new_articles_are_first_seen_at_the_clocks_moment_whatever_the_local_zone(
    store: Store, shanghai_time: None
) -> None:
    """A batch's stamp is the clock's moment, stored in UTC, on a server whose local time is not
    UTC: a scheduled digest picks articles by it (eight hours early, they fell in a window that was
    sent already, and were never mailed)."""
    assert time.localtime(0).tm_hour == 8  # the zone took
    when = datetime(2026, 5, 6, 12, 0, tzinfo=UTC)
    with store.writer(lambda: when, "s") as writer:
        writer.insert(
            Article("s", "k", "", "标题", "<p>x</p>", "摘要", when, when, ("tech",), "h"), "tag:x,2026:k", None, "1:2"
        )
    with store.engine.connect() as conn:
        assert conn.execute(select(articles_table.c.first_seen)).scalar_one() == datetime(2026, 5, 6, 12, 0)


@pytest.mark.sqlite_only("SQLite's WAL")
def test_while_the_thread_copies_the_log_the_other_connections_leave_it_to_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small write just after an ingest (its reading signature, its health) committed past
    1,000 pages of log: it copied them itself, the build waiting, whenever it got there before
    `checkpoint_soon`'s thread. A connection taken meanwhile leaves the copy to the thread, and
    copies as usual once given back."""
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    copying, done = threading.Event(), threading.Event()
    copy = Store._checkpoint

    def slow(self: Store, begun: threading.Event) -> None:
        begun.set()  # checkpoint_soon goes on: the copy runs from now until `done`
        copying.set()
        done.wait(10)
        copy(self, threading.Event())

    monkeypatch.setattr(Store, "_checkpoint", slow)

    def setting() -> int:
        with store.engine.connect() as conn:
            value = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one()
            assert isinstance(value, int)
            return value

    try:
        assert setting() == 1000
        store.checkpoint_soon()
        assert copying.wait(10)
        assert [setting() for _ in range(3)] == [0, 0, 0]  # the pool's connections, one after the other
        done.set()
        store._checkpointed()
        assert [setting() for _ in range(3)] == [1000, 1000, 1000]
    finally:
        done.set()
        store.close()


@pytest.mark.sqlite_only("SQLite's datetime text and its WAL")
def test_a_writer_returns_its_connection_checkpointing_as_usual_even_after_a_failure(tmp_path: Path) -> None:
    """The writer lets SQLite's log grow between its own commits; its last commit checkpoints
    what it wrote (or, asked to, a thread of the store's copies it after the commit), and the
    connection goes back to the pool at the usual setting, also when the pass failed at its end
    (here: the same guid twice, refused at the final flush)."""
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    when = datetime(2026, 5, 6, tzinfo=UTC)

    def in_the_file_alone() -> int:
        """Articles in the database file itself, its log left aside."""
        alone = tmp_path / "alone.db"
        shutil.copyfile(tmp_path / "store.db", alone)
        with closing(sqlite3.connect(alone)) as raw:
            count = raw.execute("SELECT count(*) FROM articles").fetchone()[0]
        alone.unlink()
        assert isinstance(count, int)
        return count

    try:
        for later, keys in ((False, range(50)), (True, range(50, 80))):
            with store.writer(lambda: when, "s", checkpoint_later=lambda: later) as writer:  # noqa: B023
                for n in keys:
                    writer.insert(
                        Article("s", f"k{n}", "", "标题", "<p>x</p>", "摘要", when, when, ("tech",), "h"),
                        f"g{n}",
                        None,
                        "1:2",
                    )
            assert (store._checkpointing is not None) is later  # copied on a thread only when asked
            store._checkpointed()
        assert in_the_file_alone() == 80  # the thread copied the whole log: the first pass's too
        wal = tmp_path / "store.db-wal"
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == 1000
            busy, logged, copied = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
            assert (busy, logged - copied) == (0, 0) and wal.exists()
        with pytest.raises(IntegrityError), store.writer(lambda: when, "s") as writer:
            for key in ("x", "y"):  # two new articles under one guid
                writer.insert(
                    Article("s", key, "", "标题", "<p>x</p>", "摘要", when, when, ("tech",), "h"), "g-same", None, "1:2"
                )
        for _ in range(3):  # every pooled connection, the writer's included
            with store.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == 1000
    finally:
        store.close()
