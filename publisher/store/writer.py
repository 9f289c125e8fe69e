"""StoreWriter: one ingest pass's writes, in one transaction, with the bulk-insert fast path."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from sqlalchemy import Boolean, DateTime, Table, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

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
)


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

    def __init__(self, engine: Engine, clock: Callable[[], datetime] | None = None, source: str | None = None) -> None:
        self.engine = engine
        self.clock = clock
        self.source = source  # whose folder digests the first batch drops
        self.batches_committed = 0
        self.conn: Connection | None = None
        self._pending: list[tuple[dict[str, object], Article]] = []  # new articles
        self._updates: list[tuple[int, dict[str, object], Article | None]] = []  # row, values, links
        self._dirty: set[str] = set()
        self._first_seen: datetime | None = None

    def __enter__(self) -> StoreWriter:
        self.conn = self.engine.connect()
        self.conn.begin()
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        assert self.conn is not None
        try:
            if kind is None:
                self.flush()
                self._mark_dirty()
                self.conn.commit()
            else:
                self.conn.rollback()
        finally:
            self.conn.close()

    def insert(
        self, article: Article, guid: str, explicit_id: str | None, fingerprint: str | None, now: datetime
    ) -> None:
        """A new article under `guid` (the article's own guid field is not read)."""
        values = _row(article) | {
            "source": article.source, "key": article.key, "guid": guid,
            "explicit_id": explicit_id, "fingerprint": fingerprint,
            "first_seen": naive_utc(now), "withdrawn": False,  # stamped again by flush()
        }  # fmt: skip
        self._pending.append((values, article))
        self._dirty.update((*article.categories, SITE_SCOPE))
        self._commit_when_full()

    def flush(self) -> None:
        """Apply the pending changes, then insert the pending articles (one statement for all)
        and their category links. Changes go first: a renamed article frees its old key for a
        new article there."""
        assert self.conn is not None
        renditions: list[dict[str, object]] = []
        for row_id, values, linked in self._updates:
            self.conn.execute(update(articles_table).where(articles_table.c.id == row_id).values(**values))
            if linked is not None:
                self._unlink([row_id])
                self._link(row_id, linked)
                # A rendition stays until another replaces it: the join on the body hash tells
                # whether it is current (an edit rendered when shown, before this ingest, is kept)
                renditions.extend(_rendition(row_id, linked))
        self._updates.clear()
        if renditions:
            upsert_renditions(self.conn, renditions)
        if not self._pending:
            return
        stamp = self._stamp()
        if stamp is not None:
            for values, _article in self._pending:
                values["first_seen"] = stamp
        # executemany without RETURNING, then one query for the new ids: SQLite would run an
        # ordered RETURNING insert one row at a time (10x slower at 10,000 articles).
        _insert_many(self.conn, articles_table, [values for values, _ in self._pending])
        a = articles_table.c
        source = self._pending[0][1].source
        keys = [article.key for _values, article in self._pending]
        rows = self.conn.execute(select(a.key, a.id).where(a.source == source, a.key.in_(keys)))
        ids = {key: row_id for key, row_id in rows}
        links = [
            {"article_id": ids[article.key], "category_slug": slug, "published": naive_utc(article.published)}
            for _values, article in self._pending
            for slug in article.categories
        ]
        if links:
            _insert_many(self.conn, article_categories_table, links)
        renditions = [row for _values, article in self._pending for row in _rendition(ids[article.key], article)]
        if renditions:
            _insert_many(self.conn, article_renditions_table, renditions)
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
            self._first_seen = naive_utc(self.clock())
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


def _insert_many(conn: Connection, table: Table, rows: list[dict[str, object]]) -> None:
    """Insert rows that all name the same columns. On SQLite straight through the driver:
    SQLAlchemy's per-row parameter processing cost as much as SQLite's own work (0.4 s per
    10,000 articles). Datetimes are written as SQLAlchemy writes them there, so they read
    back, compare and sort the same (a test holds the two formats together)."""
    if conn.dialect.name != "sqlite":
        conn.execute(insert(table), rows)
        return
    columns = list(rows[0])
    dates = [i for i, name in enumerate(columns) if isinstance(table.c[name].type, DateTime)]
    flags = [i for i, name in enumerate(columns) if isinstance(table.c[name].type, Boolean)]
    params = []
    for row in rows:
        values = [row[name] for name in columns]
        for i in dates:
            if values[i] is not None:
                values[i] = sqlite_datetime(values[i])  # type: ignore[arg-type]
        for i in flags:
            if values[i] is not None:
                values[i] = int(values[i])  # type: ignore[call-overload]
        params.append(tuple(values))
    names = ", ".join(f'"{name}"' for name in columns)
    conn.exec_driver_sql(f"INSERT INTO {table.name} ({names}) VALUES ({', '.join('?' * len(columns))})", params)


def sqlite_datetime(moment: datetime) -> str:
    """A naive datetime as SQLAlchemy stores it in SQLite (its DATETIME default format)."""
    return moment.isoformat(" ", "microseconds")


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


def upsert_renditions(conn: Connection, values: list[dict[str, object]]) -> None:
    """Store these renditions, each replacing its article's (two processes rendering one body at
    once both succeed: the later stands)."""
    table = article_renditions_table
    for start in range(0, len(values), 500):
        added = postgresql.insert(table) if conn.dialect.name == "postgresql" else sqlite.insert(table)
        added = added.values(values[start : start + 500])
        excluded = added.excluded
        conn.execute(
            added.on_conflict_do_update(
                index_elements=[table.c.article_id],
                set_={
                    "body_hash": excluded.body_hash,
                    "summary": excluded.summary,
                    "content_html": excluded.content_html,
                },
            )  # fmt: skip
        )


def _rendition(row_id: int, article: Article) -> list[dict[str, object]]:
    """The rendition row of an article rendered as it was read (a web source's), else none."""
    if not article.rendered:
        return []
    return [
        {"article_id": row_id, "body_hash": article.body_hash,
         "summary": article.summary, "content_html": article.content_html}
    ]  # fmt: skip
