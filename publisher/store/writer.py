"""StoreWriter: one ingest pass's writes, in one transaction, with the bulk-insert fast path."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from ..model import Article
from .schema import (
    SITE_SCOPE,
    article_categories_table,
    article_renditions_table,
    articles_table,
    dirty_table,
    folder_digests_table,
    naive_utc,
    take_turnstile,
    upsert_into,
)

# SQLite copies the write-ahead log into the database (a checkpoint, with an fsync of each) at
# the first commit that finds the log past this many pages: by default 1,000 (4 MB), which each
# batch of 2,000 new articles passed at 100,000 articles. A writer lets the log grow to 40 MB:
# a cold build of 100,000 articles takes a tenth less CPU in the writer, half the commit time.
WRITER_CHECKPOINT_PAGES = 10_000
SQLITE_CHECKPOINT_PAGES = 1_000


class StoreWriter:
    """Writes of one ingest pass. New and changed articles wait here and are written and
    committed 2,000 at a time (`commit_batch`), the rest, the withdrawals and the folder digests
    at the end: SQLite has one write lock for the whole file, taken at a transaction's first
    write and held to its commit, so a pass of thousands of changes holds it for one batch's
    writes at a time, and a reader's unsubscribe waits a batch, not the whole pass.

    Every committed batch leaves the store correct for the next build: its articles come with
    their category links, fingerprints and dirty marks, and the source's folder digests are
    dropped in the first batch (a digest vouches for a whole folder, which the rest of the pass
    may still be writing) and written anew at the end. A crash between batches loses nothing
    committed; the next build finds the batches' files unchanged by their fingerprints and
    compares the folders file by file, so it finishes the work."""

    BATCH = 2000

    def __init__(
        self,
        engine: Engine,
        clock: Callable[[], datetime] | None = None,
        source: str | None = None,
        checkpoint: Callable[[], None] | None = None,
        checkpoint_later: Callable[[], bool] = lambda: False,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.source = source  # whose folder digests the first batch drops
        self.checkpoint, self.checkpoint_later = checkpoint, checkpoint_later  # see __exit__
        self.batches_committed = 0
        self.conn: Connection | None = None
        self._encode: Callable[[datetime], object] = (
            sqlite_datetime_utc if engine.dialect.name == "sqlite" else naive_utc
        )
        # New articles: their row (NEW_COLUMNS but first_seen), their own first_seen (None
        # under a clock: the batch's stamp), the article (for its links and rendition).
        self._pending: list[tuple[tuple[object, ...], object, Article]] = []
        self._updates: list[tuple[int, dict[str, object], Article | None]] = []  # row, values, links
        self._dirty: set[str] = set()
        self._first_seen: datetime | None = None

    def __enter__(self) -> StoreWriter:
        self.conn = self.engine.connect()
        self.conn.begin()
        if self.conn.dialect.name == "sqlite":
            self.conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint={WRITER_CHECKPOINT_PAGES}")
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        assert self.conn is not None
        committed = False
        # SQLite: the last commit checkpoints what the pass wrote (left to the next commit, a reader's
        # sign-up would wait for 40 MB to be copied), or `checkpoint` just after, if `checkpoint_later()`.
        later = self.checkpoint is not None and self.conn.dialect.name == "sqlite" and self.checkpoint_later()
        try:
            if kind is None:
                self.flush()
                self._mark_dirty()
                if not later:
                    self._checkpoint_as_usual()
                self.conn.commit()
                committed = True
        finally:
            try:  # whatever failed above: the connection goes back to the pool as it came
                if self.conn.in_transaction():
                    self.conn.rollback()
                self._checkpoint_as_usual()
            except SQLAlchemyError:
                self.conn.invalidate()  # not reused in an unknown state
            finally:
                self.conn.close()
        if committed and later and self.checkpoint is not None:
            self.checkpoint()  # copied while the build queries and renders its feeds

    def _checkpoint_as_usual(self) -> None:
        assert self.conn is not None
        if self.conn.dialect.name == "sqlite":
            self.conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint={SQLITE_CHECKPOINT_PAGES}")

    def insert(
        self, article: Article, guid: str, explicit_id: str | None, fingerprint: str | None, now: datetime | None = None
    ) -> None:
        """A new article under `guid` (the article's own guid field is not read), first seen at
        the batch's stamp with a clock (see _stamp), else `now`."""
        encode = self._encode
        published = encode(article.published)
        updated = published if article.updated == article.published else encode(article.updated)
        tags = json.dumps(list(article.tags), ensure_ascii=False) if article.tags else "[]"
        row = (
            article.source, article.key, guid, explicit_id, fingerprint, False,
            article.title, article.url, article.author, article.image, tags,
            published, updated, article.content_hash, article.body_hash,
        )  # fmt: skip
        if self.clock is None:
            assert now is not None, "a writer without a clock is told when each article was seen"
            first_seen: object = encode(now)
        else:
            first_seen = None
        self._pending.append((row, first_seen, article))
        self._dirty.update(article.categories)
        self._dirty.add(SITE_SCOPE)
        self._commit_when_full()

    def flush(self) -> None:
        """Apply the pending changes, then insert the pending articles (one statement for all)
        and their category links. Changes go first: a renamed article frees its old key for a
        new article there."""
        assert self.conn is not None
        changed: list[tuple[object, ...]] = []  # renditions
        for row_id, values, linked in self._updates:
            self.conn.execute(update(articles_table).where(articles_table.c.id == row_id).values(**values))
            if linked is not None:
                self._unlink([row_id])
                self._link(row_id, linked)
                # A rendition stays until another replaces it: the join on the body hash tells
                # whether it is current (an edit rendered when shown, before this ingest, is kept)
                changed.extend(_rendition(row_id, linked))
        self._updates.clear()
        if changed:
            upsert_renditions(self.conn, changed)
        if not self._pending:
            return
        stamp = self._stamp()
        first_seen = None if stamp is None else self._encode(stamp)
        rows = [(*row, own if first_seen is None else first_seen) for row, own, _article in self._pending]
        ids = _insert_new(self.conn, rows)
        links = [
            (row_id, slug, row[PUBLISHED])
            for row_id, (row, _own, article) in zip(ids, self._pending, strict=True)
            for slug in article.categories
        ]
        if links:
            _insert_rows(self.conn, article_categories_table, LINK_COLUMNS, links)
        renditions = [
            rendition
            for row_id, (_row, _own, article) in zip(ids, self._pending, strict=True)
            for rendition in _rendition(row_id, article)
        ]
        if renditions:
            _insert_rows(self.conn, article_renditions_table, RENDITION_COLUMNS, renditions)
        self._pending.clear()

    def replace(self, row_id: int, article: Article, explicit_id: str | None, fingerprint: str | None) -> None:
        """New content for a known article: guid and first_seen stay."""
        assert self.conn is not None
        values = _row(article) | {
            "key": article.key,
            "explicit_id": explicit_id,
            "fingerprint": fingerprint,
            "withdrawn": False,
        }
        self._updates.append((row_id, values, article))
        self._dirty.update((*article.categories, SITE_SCOPE))
        self._commit_when_full()

    def set_folder_digests(self, source: str, digests: Mapping[str, str]) -> None:
        """The source's folder digests from now on (the folders not named have none)."""
        assert self.conn is not None
        self.flush()
        f = folder_digests_table.c
        self.conn.execute(delete(folder_digests_table).where(f.source == source))
        if digests:
            rows = [{"source": source, "folder": folder, "digest": digest} for folder, digest in digests.items()]
            self.conn.execute(insert(folder_digests_table), rows)

    def set_fingerprint(self, row_id: int, fingerprint: str | None) -> None:
        self._updates.append((row_id, {"fingerprint": fingerprint}, None))
        self._commit_when_full()

    def _commit_when_full(self) -> None:
        if len(self._pending) + len(self._updates) >= self.BATCH:
            self.commit_batch()

    def commit_batch(self) -> None:
        """Write what waits, with its dirty marks, and commit: the write lock is let go until
        the next batch. The first batch also drops the source's folder digests (see above)."""
        assert self.conn is not None
        self.flush()
        if self.batches_committed == 0 and self.source is not None:
            self.conn.execute(delete(folder_digests_table).where(folder_digests_table.c.source == self.source))
        self._mark_dirty()
        self.conn.commit()
        self.batches_committed += 1
        self._dirty.clear()
        self._first_seen = None  # the next batch takes the turnstile again, at its own time

    def withdraw(self, row_ids: Iterable[int]) -> None:
        """Articles whose item is gone from the source leave the feeds but stay in the store."""
        assert self.conn is not None
        self.flush()  # in the order they were asked for
        ids = list(row_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            self.conn.execute(
                update(articles_table).where(articles_table.c.id.in_(chunk)).values(withdrawn=True, fingerprint=None)
            )
            self._unlink(chunk)
        self._dirty.add(SITE_SCOPE)

    def _unlink(self, row_ids: list[int]) -> None:
        """Remove category links, marking the categories they were in as dirty."""
        assert self.conn is not None
        ac = article_categories_table.c
        self._dirty.update(self.conn.execute(select(ac.category_slug).where(ac.article_id.in_(row_ids))).scalars())
        self.conn.execute(delete(article_categories_table).where(ac.article_id.in_(row_ids)))

    def _stamp(self) -> datetime | None:
        """When this batch's new articles are first seen: the time this transaction took the
        turnstile, just before its first insert, which it then holds to its commit. A
        scheduled digest reads the end of its window under the same turnstile, so it either
        ended before this (and the articles are in the next one) or waits for this commit (and
        they are in it): each new article lands in exactly one scheduled window, however long
        the ingest runs (see Store.open_scheduled_digest). Each batch is its own transaction
        with its own stamp; a short pass takes the turnstile only at its end. Without a clock,
        articles keep the time they were processed."""
        if self.clock is None:
            return None
        if self._first_seen is None:
            assert self.conn is not None
            take_turnstile(self.conn)
            self._first_seen = self.clock().astimezone(UTC)  # aware: encoded as every date is
        return self._first_seen

    def _mark_dirty(self) -> None:
        assert self.conn is not None
        if not self._dirty:
            return
        wanted = self._dirty
        present = set(self.conn.execute(select(dirty_table.c.scope)).scalars())
        missing = sorted(wanted - present)
        if missing:
            self.conn.execute(insert(dirty_table), [{"scope": scope} for scope in missing])

    def _link(self, row_id: int, article: Article) -> None:
        assert self.conn is not None
        if article.categories:
            self.conn.execute(
                insert(article_categories_table),
                [
                    {"article_id": row_id, "category_slug": s, "published": naive_utc(article.published)}
                    for s in article.categories
                ],
            )


# The columns of a new article's row, as StoreWriter.insert lays them out (first_seen last: it is
# the batch's stamp), and of its category links and rendition.
NEW_COLUMNS = (
    "source", "key", "guid", "explicit_id", "fingerprint", "withdrawn",
    "title", "url", "author", "image", "tags", "published", "updated", "content_hash", "body_hash",
    "first_seen",
)  # fmt: skip
PUBLISHED = NEW_COLUMNS.index("published")
LINK_COLUMNS = ("article_id", "category_slug", "published")
RENDITION_COLUMNS = ("article_id", "body_hash", "summary", "content_html")
SQLITE_MAX_ROWID = 2**63 - 1


def _insert_new(conn: Connection, rows: list[tuple[object, ...]]) -> list[int]:
    """Insert new articles' rows (NEW_COLUMNS) and answer their ids, in order.

    On SQLite without asking for them: a row inserted without an id gets one more than the
    largest in the table (https://sqlite.org/autoinc.html), and this transaction holds the
    write lock from its first write to its commit, so the rows of one executemany get
    consecutive ids ending at the largest now. The exception, a table whose largest id is
    already the largest possible (SQLite then picks free ids at random), leaves that largest id
    in the table: then the ids are looked up by key. (An ordered RETURNING would run the insert
    a row at a time there: 10x slower at 10,000 articles.)"""
    _insert_rows(conn, articles_table, NEW_COLUMNS, rows)
    if conn.dialect.name == "sqlite":
        last = conn.exec_driver_sql("SELECT max(id) FROM articles").scalar_one()
        if last < SQLITE_MAX_ROWID:
            return list(range(last - len(rows) + 1, last + 1))
    a = articles_table.c
    source_at, key_at = NEW_COLUMNS.index("source"), NEW_COLUMNS.index("key")
    ids: dict[tuple[object, object], int] = {}
    for source in {row[source_at] for row in rows}:
        keys = [row[key_at] for row in rows if row[source_at] == source]
        found = conn.execute(select(a.key, a.id).where(a.source == source, a.key.in_(keys)))
        ids.update(((source, key), row_id) for key, row_id in found)
    return [ids[(row[source_at], row[key_at])] for row in rows]


def _insert_rows(conn: Connection, table: Table, columns: tuple[str, ...], rows: Sequence[tuple[object, ...]]) -> None:
    """Insert rows of `columns`' values, their moments already as StoreWriter._encode makes
    them. On SQLite straight through the driver, the statement written once: SQLAlchemy's
    per-row parameter processing cost as much as SQLite's own work."""
    if conn.dialect.name == "sqlite":
        names = ", ".join(f'"{name}"' for name in columns)
        marks = ", ".join("?" * len(columns))
        conn.exec_driver_sql(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", rows)
    else:
        conn.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])


def sqlite_datetime(moment: datetime) -> str:
    """A naive datetime as SQLAlchemy stores it in SQLite (its DATETIME default format)."""
    return moment.isoformat(" ", "microseconds")


def sqlite_datetime_utc(moment: datetime) -> str:
    """A moment as the store keeps it (naive_utc) and SQLAlchemy writes that in SQLite. An
    article's dates are UTC already: formatted from their fields, in SQLAlchemy's own format,
    without a naive copy (a cold build of 100,000 articles formats 100,000 of them; this takes
    half the time of isoformat's on an aware datetime)."""
    if moment.tzinfo is not UTC:
        moment = naive_utc(moment)
    return _SQLITE_DATETIME % (
        moment.year,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
        moment.microsecond,
    )


_SQLITE_DATETIME = "%04d-%02d-%02d %02d:%02d:%02d.%06d"


def _row(article: Article) -> dict[str, object]:
    return {
        "title": article.title,
        "url": article.url,
        "author": article.author,
        "image": article.image,
        "tags": json.dumps(list(article.tags), ensure_ascii=False) if article.tags else "[]",
        "published": naive_utc(article.published),
        "updated": naive_utc(article.updated),
        "content_hash": article.content_hash,
        "body_hash": article.body_hash,
    }


def upsert_renditions(conn: Connection, rows: Sequence[tuple[object, ...]]) -> None:
    """Store these renditions (RENDITION_COLUMNS), each replacing its article's (two processes
    rendering one body at once both succeed: the later stands). One statement, written once:
    SQLAlchemy compiling a multi-row INSERT of 500 rows took 0.05 s of the 0.08 s that storing
    the 650 bodies a cold build of 10,000 articles shows took. On SQLite through the driver, as
    `_insert_rows`; elsewhere SQLAlchemy's upsert run once for all rows (its compiled form cached).
    The rows go in article order: a build and a digest's plan storing the same bodies in
    different orders deadlocked on PostgreSQL, each holding a row the other wanted."""
    if not rows:
        return
    rows = sorted(rows, key=lambda row: cast(int, row[0]))  # by article: two upserts lock rows in one order
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(_SQLITE_UPSERT_RENDITION, rows)
        return
    table = article_renditions_table
    added = upsert_into(conn, table)
    excluded = added.excluded
    statement = added.on_conflict_do_update(
        index_elements=[table.c.article_id],
        set_={"body_hash": excluded.body_hash, "summary": excluded.summary, "content_html": excluded.content_html},
    )
    conn.execute(statement, [dict(zip(RENDITION_COLUMNS, row, strict=True)) for row in rows])


_SQLITE_UPSERT_RENDITION = (
    f"INSERT INTO {article_renditions_table.name} ({', '.join(RENDITION_COLUMNS)}) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (article_id) DO UPDATE SET " + ", ".join(f"{name} = excluded.{name}" for name in RENDITION_COLUMNS[1:])
)


def _rendition(row_id: int, article: Article) -> list[tuple[object, ...]]:
    """The rendition row (RENDITION_COLUMNS) of an article rendered as it was read (a web
    source's), else none."""
    if not article.rendered:
        return []
    return [(row_id, article.body_hash, article.summary, article.content_html)]
