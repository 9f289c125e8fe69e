"""The store: SQLAlchemy 2 Core tables and the queries services need. Returns model objects."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError

from .errors import StoreError
from .model import Article, Category, Delivery, Subscriber, SubscriberStatus

metadata = MetaData()
_PARAMETER = re.compile(r"(?<![:\w]):(\w+)")

categories_table = Table(
    "categories",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("slug", String(100), nullable=False, unique=True),
    Column("first_seen", DateTime, nullable=False),
)

articles_table = Table(
    "articles",
    metadata,
    Column("id", Integer, primary_key=True),
    # Small bookkeeping columns first, the article's text last.
    Column("source", String(200), nullable=False),
    Column("key", String(1000), nullable=False),
    Column("fingerprint", String(100)),
    Column("withdrawn", Boolean, nullable=False, default=False),
    Column("explicit_id", String(500)),
    Column("guid", String(600), nullable=False, unique=True),
    Column("content_hash", String(64), nullable=False),
    Column("published", DateTime, nullable=False),
    Column("updated", DateTime, nullable=False),
    Column("first_seen", DateTime, nullable=False),
    Column("title", Text, nullable=False),
    Column("url", Text),
    Column("author", Text),
    Column("image", Text),
    Column("tags", Text, nullable=False, default="[]"),
    Column("summary", Text, nullable=False),
    Column("content_html", Text, nullable=False),
    UniqueConstraint("source", "key", name="uq_articles_source_key"),
    Index("ix_articles_published", "published"),
    # Covers fingerprints() and live_ids(): an unchanged build reads this index, never the
    # articles' text.
    Index("ix_articles_state", "source", "key", "fingerprint", "withdrawn"),
)

# One row per article and category while the article is live; `published` is copied here so
# that "the newest N of a category" is one index range scan.
article_categories_table = Table(
    "article_categories",
    metadata,
    Column("article_id", Integer, ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True),
    Column("category_slug", String(100), primary_key=True),
    Column("published", DateTime, nullable=False),
    # "The newest N of a category" walks this index backwards and stops after N rows.
    Index("ix_article_categories_feed", "category_slug", "published", "article_id"),
)

# Feeds whose articles changed since they were last written: "" is the whole site, else a
# category slug. Marked in the ingest transaction, cleared once the feeds are written, so a
# crash between the two never leaves a feed stale.
dirty_table = Table(
    "dirty_feeds",
    metadata,
    Column("scope", String(100), primary_key=True),
)

SITE_SCOPE = ""

# Per source and folder, the digest of the folder's listing (names and fingerprints) when
# every item in it was last stored as listed: an unchanged folder is then skipped as a whole
# (see model.Folder). Written in the ingest transaction, with the articles it vouches for.
folder_digests_table = Table(
    "folder_digests",
    metadata,
    Column("source", String(200), primary_key=True),
    Column("folder", String(1000), primary_key=True),
    Column("digest", String(64), nullable=False),
)

subscribers_table = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False),  # as normalised by email-validator
    Column("email_key", String(320), nullable=False, unique=True),  # lower-cased: one row per address
    Column("name", String(200), nullable=False, default=""),
    Column("categories", Text, nullable=False, default="[]"),  # JSON list of slugs; [] = all
    Column("status", String(20), nullable=False),
    Column("status_at", DateTime, nullable=False),
    Column("status_via", String(100), nullable=False),
    Column("created_at", DateTime, nullable=False),
)

# The delivery ledger: one digest per window key, one delivery per digest and subscriber.
digests_table = Table(
    "digests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("key", String(100), nullable=False, unique=True),  # a second run of a window creates nothing
    Column("window_start", DateTime, nullable=False),
    Column("window_end", DateTime, nullable=False),
    Column("status", String(20), nullable=False),  # planning | sending | paused | done
    Column("created_at", DateTime, nullable=False),
)

deliveries_table = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("digest_id", Integer, ForeignKey("digests.id", ondelete="CASCADE"), nullable=False),
    Column("email_key", String(320), nullable=False),
    Column("message_id", String(300), nullable=False),  # the same on every attempt
    # pending | sending (the transport was called, no answer recorded) | sent | failed | skipped
    # | uncertain (sent after a crash mid-send: the first try may have gone out as well)
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("provider_id", String(300)),
    Column("updated_at", DateTime, nullable=False),
    UniqueConstraint("digest_id", "email_key", name="uq_deliveries_digest_subscriber"),
    Index("ix_deliveries_status", "digest_id", "status"),
)

meta_table = Table(
    "meta",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)


@dataclass(frozen=True, slots=True)
class Known:
    """What the store remembers of one source item, to decide new / changed / unchanged."""

    id: int
    fingerprint: str | None
    content_hash: str
    guid: str
    updated: datetime
    withdrawn: bool
    explicit_id: str | None


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class DigestRow:
    id: int
    key: str
    start: datetime
    end: datetime
    status: str  # planning | sending | paused | done
    created_at: datetime

    @property
    def by(self) -> str:
        """Scheduled digests pick by first ingest, explicit windows by publication date; the very
        first scheduled one by both (a new install does not mail its whole archive)."""
        if self.key.startswith("scheduled-first:"):
            return "first"
        return "ingested" if self.key.startswith("scheduled:") else "published"


class Store:
    """All persistence. One instance per process; connections are short-lived."""

    def __init__(self, url: str) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise StoreError(f"store.url {url!r} is not a database URL", str(exc)) from exc
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(parsed)
        if parsed.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            metadata.create_all(self.engine)
        except OperationalError as exc:
            raise StoreError(f"cannot open the store at {url}: {exc.orig}", "check [store] url") from exc

    def close(self) -> None:
        self.engine.dispose()

    # --- categories --------------------------------------------------------------------------

    def sync_categories(
        self, wanted: Sequence[tuple[str, str | None, str]], slugify: Callable[[str], str], now: datetime
    ) -> list[Category]:
        """Categories in config order, each with its slug: a configured slug wins, else the one
        stored at first sight, else a new pinyin slug (made unique with -2, -3 ...).

        Slugs change in two steps (through temporary ones), so swapping two configured slugs
        swaps the categories instead of merging them; a category no longer configured that
        holds a wanted slug moves aside to `<slug>~<id>` with its articles."""
        c, ac = categories_table, article_categories_table
        with self.engine.begin() as conn:
            rows = conn.execute(select(c.c.id, c.c.name, c.c.slug)).all()
            stored = {r.name: (r.id, r.slug) for r in rows}
            names = {name for name, _slug, _d in wanted}
            desired = {name: slug for name, slug, _d in wanted if slug}
            used = set(desired.values()) | {r.slug for r in rows if r.name not in names}
            for name, _configured, _d in wanted:
                if name in desired:
                    continue
                slug = stored[name][1] if name in stored and stored[name][1] not in used else None
                if slug is None:
                    base = slugify(name) or "category"
                    slug, n = base, 1
                    while slug in used:
                        n += 1
                        slug = f"{base}-{n}"
                desired[name] = slug
                used.add(slug)

            def move(row_id: int, old: str, new: str) -> None:
                conn.execute(update(c).where(c.c.id == row_id).values(slug=new))
                conn.execute(update(ac).where(ac.c.category_slug == old).values(category_slug=new))

            wanted_slugs = set(desired.values())
            for r in rows:  # unconfigured categories step aside from wanted slugs
                if r.name not in names and r.slug in wanted_slugs:
                    move(r.id, r.slug, f"{r.slug}~{r.id}")
            changing = [
                (stored[n][0], stored[n][1], desired[n]) for n in names if n in stored and stored[n][1] != desired[n]
            ]
            for row_id, old, _new in changing:
                move(row_id, old, f"~{row_id}")
            for row_id, _old, new in changing:
                move(row_id, f"~{row_id}", new)
            for name, _slug, _d in wanted:
                if name not in stored:
                    conn.execute(insert(c).values(name=name, slug=desired[name], first_seen=_naive_utc(now)))
            return [Category(name=name, slug=desired[name], description=d) for name, _s, d in wanted]

    # --- ingest ------------------------------------------------------------------------------

    def _raw_rows(self, sql: str, **params: Any) -> list[Any]:
        """Rows straight from the driver's cursor for `sql` with `:name` parameters: the lean
        queries of an unchanged build (100,000 rows in a few hundredths of a second, without
        SQLAlchemy's per-row result processing)."""
        style = self.engine.dialect.paramstyle
        names = _PARAMETER.findall(sql)
        args: Sequence[Any] | Mapping[str, Any] = params
        if style == "pyformat":
            sql = _PARAMETER.sub(r"%(\1)s", sql)
        elif style != "named":
            marker = {"qmark": "?", "format": "%s"}.get(style)
            if marker is None:  # numeric
                numbers = {name: f":{n}" for n, name in enumerate(dict.fromkeys(names), 1)}
                sql = _PARAMETER.sub(lambda m: numbers[m.group(1)], sql)
                args = [params[name] for name in numbers]
            else:
                sql = _PARAMETER.sub(marker, sql)
                args = [params[name] for name in names]
        with self.engine.connect() as conn:
            cursor = conn.connection.cursor()
            try:
                cursor.execute(sql, args)
                return list(cursor.fetchall())
            finally:
                cursor.close()

    def fingerprints(self, source: str, folder: str | None = None) -> dict[str, str | None]:
        """key -> fingerprint of every live item of a source (read from a covering index), or
        only of the items directly in `folder` (a key prefix: "" or ending in "/")."""
        sql = "SELECT key, fingerprint FROM articles WHERE source = :source AND NOT withdrawn"
        if not folder:
            rows = self._raw_rows(sql, source=source)
        elif self.engine.dialect.name == "sqlite":
            # Keys compare by their bytes here, so a folder's keys are one range of the index.
            end = folder[:-1] + chr(ord("/") + 1)
            rows = self._raw_rows(f"{sql} AND key >= :low AND key < :high", source=source, low=folder, high=end)
        else:  # other collations may not sort "/" where its code point says
            rows = self._raw_rows(
                f"{sql} AND substr(key, 1, :length) = :prefix", source=source, length=len(folder), prefix=folder
            )
        if folder is None:
            return dict(rows)
        start = len(folder)
        return {key: fp for key, fp in rows if key.startswith(folder) and "/" not in key[start:]}

    def live_count(self, source: str) -> int:
        """How many live items a source has."""
        [(count,)] = self._raw_rows(
            "SELECT count(*) FROM articles WHERE source = :source AND NOT withdrawn", source=source
        )
        return int(count)

    def folder_digests(self, source: str) -> dict[str, str]:
        """folder -> digest of its listing when all its items were last stored as listed."""
        f = folder_digests_table.c
        with self.engine.connect() as conn:
            return {
                folder: digest for folder, digest in conn.execute(select(f.folder, f.digest).where(f.source == source))
            }

    def live_ids(self, source: str) -> dict[str, int]:
        """key -> row id of every live item of a source."""
        return dict(
            self._raw_rows("SELECT key, id FROM articles WHERE source = :source AND NOT withdrawn", source=source)
        )

    def has_items(self, source: str) -> bool:
        """Whether the store knows any item of this source, live or withdrawn."""
        with self.engine.connect() as conn:
            query = select(articles_table.c.id).where(articles_table.c.source == source).limit(1)
            return conn.execute(query).first() is not None

    def known(self, source: str, keys: Iterable[str]) -> dict[str, Known]:
        """What is remembered of these items, to decide new / changed / unchanged."""
        a = articles_table.c
        wanted = list(keys)
        out: dict[str, Known] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                query = select(
                    a.key, a.id, a.fingerprint, a.content_hash, a.guid, a.updated, a.withdrawn, a.explicit_id
                ).where(a.source == source, a.key.in_(wanted[start : start + 500]))
                for r in conn.execute(query).all():
                    out[r.key] = Known(
                        r.id, r.fingerprint, r.content_hash, r.guid, _aware(r.updated), r.withdrawn, r.explicit_id
                    )
        return out

    def find_explicit(self, source: str, explicit_id: str) -> tuple[int, str] | None:
        """(row id, key) of the article that carries front matter id `explicit_id`."""
        a = articles_table.c
        with self.engine.connect() as conn:
            row = conn.execute(
                select(a.id, a.key).where(and_(a.source == source, a.explicit_id == explicit_id))
            ).first()
        return (row.id, row.key) if row else None

    def guids(self) -> set[str]:
        """Every guid in the store: new ones must not collide with any of them."""
        with self.engine.connect() as conn:
            return set(conn.execute(select(articles_table.c.guid)).scalars().all())

    def guid_exists(self, guid: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(articles_table.c.id).where(articles_table.c.guid == guid)).first() is not None

    def dirty_scopes(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(select(dirty_table.c.scope)).scalars())

    def clear_dirty(self, scopes: Iterable[str]) -> None:
        scopes = list(scopes)
        if scopes:
            with self.engine.begin() as conn:
                conn.execute(delete(dirty_table).where(dirty_table.c.scope.in_(scopes)))

    def get_meta(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(meta_table.c.value).where(meta_table.c.key == key)).scalar_one_or_none()

    def set_meta(self, key: str, value: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(meta_table).where(meta_table.c.key == key))
            conn.execute(insert(meta_table).values(key=key, value=value))

    # --- the delivery ledger -------------------------------------------------------------------

    def open_digest(self, key: str, start: datetime, end: datetime, now: datetime) -> tuple[int, bool]:
        """(digest id, created now?) for a window key; the unique key makes a re-run create nothing."""
        with self.engine.begin() as conn:
            return _open_digest(conn, key, start, end, now)

    def open_scheduled_digest(self, clock: Callable[[], datetime], first_days: int) -> tuple[DigestRow, bool]:
        """Open the scheduled digest that ends now, after the previous scheduled one.

        `now` is read while holding the turnstile row that every ingest takes before its first
        new article and holds to its commit, stamping them with the time it took it: an
        article is either stamped and committed before the window ends (and in this digest) or
        stamped after it (and in the next); an ingest that is still running cannot lose an
        article between two digests.
        """
        d = digests_table.c
        with self.engine.begin() as conn:
            _turnstile(conn)
            end = clock().astimezone(UTC).replace(microsecond=0)
            previous = conn.execute(select(func.max(d.window_end)).where(d.key.like("scheduled%"))).scalar_one()
            if previous is None:  # the very first: what was published and first seen in the last days
                key, start = f"scheduled-first:{end:%Y-%m-%dT%H:%M:%SZ}", end - timedelta(days=first_days)
            else:
                key, start = f"scheduled:{end:%Y-%m-%dT%H:%M:%SZ}", _aware(previous)
            digest_id, created = _open_digest(conn, key, start, end, clock())
            row = conn.execute(select(digests_table).where(d.id == digest_id)).one()
        return _digest_row(row), created

    def plan_deliveries(self, digest_id: int, planned: Sequence[tuple[str, str]], now: datetime) -> None:
        """A pending delivery per (email key, message id) not yet planned for this digest, and
        the digest from `planning` to `sending`, in one transaction: a crash before it leaves a
        digest that is planned again, a crash after it one that is resumed."""
        x = deliveries_table.c
        with self.engine.begin() as conn:
            d = digests_table.c
            conn.execute(
                update(digests_table).where(d.id == digest_id, d.status == "planning").values(status="sending")
            )
            have = set(conn.execute(select(x.email_key).where(x.digest_id == digest_id)).scalars())
            rows = [
                {"digest_id": digest_id, "email_key": key, "message_id": mid, "status": "pending",
                 "attempts": 0, "updated_at": _naive_utc(now)}
                for key, mid in planned if key not in have
            ]  # fmt: skip
            if rows:
                conn.execute(insert(deliveries_table), rows)

    def open_deliveries(self, digest_id: int) -> list[tuple[int, str, str, str, int]]:
        """(id, email key, message id, status, attempts) of deliveries still to send, in plan order."""
        x = deliveries_table.c
        query = (
            select(x.id, x.email_key, x.message_id, x.status, x.attempts)
            .where(x.digest_id == digest_id, x.status.in_(("pending", "sending")))
            .order_by(x.id)
        )
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(query).all()]

    def next_deliveries(self, digest_id: int, limit: int) -> list[Delivery]:
        """Up to `limit` open deliveries, fewest attempts first (a retried one waits behind
        the rest), each with its subscriber read now, in one query."""
        x, s = deliveries_table.c, subscribers_table
        query = (
            select(
                x.id.label("d_id"),
                x.email_key.label("d_key"),
                x.message_id.label("d_message_id"),
                x.status.label("d_status"),
                x.attempts.label("d_attempts"),
                x.updated_at.label("d_updated_at"),
                x.last_error.label("d_last_error"),
                s,
            )  # fmt: skip
            .select_from(deliveries_table.outerjoin(s, s.c.email_key == x.email_key))
            .where(x.digest_id == digest_id, x.status.in_(("pending", "sending")))
            .order_by(x.attempts, x.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            Delivery(
                r.d_id,
                r.d_key,
                r.d_message_id,
                r.d_status,
                r.d_attempts,
                _subscriber(r) if r.email else None,
                _aware(r.d_updated_at),
                r.d_last_error is not None,
            )  # fmt: skip
            for r in rows
        ]

    def mark_delivery(self, delivery_id: int, status: str, now: datetime, *, tried: bool = False,
                      error: str | None = None, provider_id: str | None = None) -> None:  # fmt: skip
        """Record a delivery's state in its own transaction: it must survive a crash right after."""
        with self.ledger() as ledger:
            ledger.mark(delivery_id, status, now, tried=tried, error=error, provider_id=provider_id)

    @contextmanager
    def scheduler_lock(self) -> Iterator[bool]:
        """Held for the life of the scheduling process: True if this process got it. SQLite: an
        exclusive lock on `<database>.scheduler-lock` (released by the kernel when the process
        ends, however it ends); PostgreSQL: a session advisory lock."""
        url = self.engine.url
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            import fcntl

            with open(f"{url.database}.scheduler-lock", "a+b") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    yield False
                    return
                try:
                    yield True
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
            return
        if url.get_backend_name() == "postgresql":
            with self.engine.connect() as conn:
                got = bool(conn.execute(text("select pg_try_advisory_lock(7202612)")).scalar_one())
                try:
                    yield got
                finally:
                    if got:
                        conn.execute(text("select pg_advisory_unlock(7202612)"))
            return
        yield True

    @contextmanager
    def send_lock(self) -> Iterator[None]:
        """Only one process plans or sends digests from a store at a time. SQLite: an exclusive
        lock on `<database>.send-lock` (the kernel drops it when the process dies, so a killed
        sender never blocks `digest resume`); PostgreSQL: a session advisory lock. Threads of
        one process (the scheduler's jobs) wait for each other instead."""
        with _SEND_THREADS:
            with self._process_send_lock():
                yield

    @contextmanager
    def _process_send_lock(self) -> Iterator[None]:
        url = self.engine.url
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            import fcntl

            path = Path(f"{url.database}.send-lock")
            with open(path, "a+b") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise StoreError(
                        f"another process is sending a digest from this store ({path} is locked)",
                        "wait for it to finish, or stop it; then `publisher digest resume`",
                    ) from None
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
            return
        if url.get_backend_name() == "postgresql":
            with self.engine.connect() as conn:
                if not conn.execute(text("select pg_try_advisory_lock(7202611)")).scalar_one():
                    raise StoreError("another process is sending a digest from this store", "wait for it to finish")
                try:
                    yield
                finally:
                    conn.execute(text("select pg_advisory_unlock(7202611)"))
            return
        yield

    def ledger(self) -> Ledger:
        """One connection for a send run: the marks and look-ups of the hot path."""
        return Ledger(self.engine)

    def last_scheduled_end(self) -> datetime | None:
        """Where the next scheduled digest's window starts: the end of the last one."""
        d = digests_table.c
        with self.engine.connect() as conn:
            value = conn.execute(select(func.max(d.window_end)).where(d.key.like("scheduled%"))).scalar_one()
        return _aware(value) if value is not None else None

    def digest(self, digest_id: int) -> DigestRow:
        with self.engine.connect() as conn:
            return _digest_row(conn.execute(select(digests_table).where(digests_table.c.id == digest_id)).one())

    def digests(self, unfinished_only: bool = False) -> list[DigestRow]:
        """Digests, oldest first; `unfinished_only`: those still planning, sending or paused."""
        d = digests_table.c
        query = select(digests_table).order_by(d.id)
        if unfinished_only:
            query = query.where(d.status.in_(("planning", "sending", "paused")))
        with self.engine.connect() as conn:
            return [_digest_row(r) for r in conn.execute(query).all()]

    def set_digest_status(self, digest_id: int, status: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(digests_table).where(digests_table.c.id == digest_id).values(status=status))

    def delivery_counts(self, digest_id: int) -> dict[str, int]:

        x = deliveries_table.c
        query = select(x.status, func.count()).where(x.digest_id == digest_id).group_by(x.status)
        with self.engine.connect() as conn:
            return {status: count for status, count in conn.execute(query).all()}

    # --- subscribers -------------------------------------------------------------------------

    def subscriber(self, email_key: str) -> Subscriber | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(subscribers_table).where(subscribers_table.c.email_key == email_key)).first()
        return _subscriber(row) if row else None

    def subscriber_by_id(self, subscriber_id: int) -> Subscriber | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(subscribers_table).where(subscribers_table.c.id == subscriber_id)).first()
        return _subscriber(row) if row else None

    def subscribers(self, status: SubscriberStatus | None = None) -> list[Subscriber]:
        """Subscribers in sign-up order, all of them or those with one status."""
        query = select(subscribers_table).order_by(subscribers_table.c.id)
        if status is not None:
            query = query.where(subscribers_table.c.status == status.value)
        with self.engine.connect() as conn:
            return [_subscriber(row) for row in conn.execute(query).all()]

    def save_subscribers(self, subscribers: Iterable[Subscriber]) -> None:
        """Insert or update each subscriber (by address), all in one transaction."""
        s = subscribers_table
        with self.engine.begin() as conn:
            for sub in subscribers:
                values = {
                    "email": sub.email,
                    "name": sub.name,
                    "categories": json.dumps(list(sub.categories), ensure_ascii=False),
                    "status": sub.status.value,
                    "status_at": _naive_utc(sub.status_at),
                    "status_via": sub.status_via,
                }
                key = sub.email.lower()
                done = conn.execute(update(s).where(s.c.email_key == key).values(**values)).rowcount
                if not done:
                    conn.execute(insert(s).values(email_key=key, created_at=_naive_utc(sub.created_at), **values))

    def mark_bounced(self, email_key: str, now: datetime, reason: str) -> None:
        """The address does not exist: no more digests (an import never signs it up again)."""
        s = subscribers_table.c
        with self.engine.begin() as conn:
            conn.execute(
                update(subscribers_table)
                .where(s.email_key == email_key)
                .values(status="bounced", status_at=_naive_utc(now), status_via=f"bounce: {reason}"[:100])
            )

    def delete_subscriber(self, email_key: str) -> bool:
        with self.engine.begin() as conn:
            deleted = conn.execute(delete(subscribers_table).where(subscribers_table.c.email_key == email_key))
            return bool(deleted.rowcount)

    def writer(self, clock: Callable[[], datetime] | None = None) -> StoreWriter:
        """A transaction for one source's ingest; commit on success, roll back on error. With
        `clock`, new articles are stamped first seen under the turnstile (see StoreWriter._stamp)."""
        return StoreWriter(self.engine, clock)

    # --- feeds -------------------------------------------------------------------------------

    def articles_between(self, start: datetime, end: datetime, by: str) -> list[Article]:
        """Live articles first ingested (`by="ingested"`) or published (`"published"`) in
        (start, end], newest first: a digest window's candidates."""
        a = articles_table
        column = a.c.published if by == "published" else a.c.first_seen
        query = (
            select(a)
            .where(a.c.withdrawn.is_(False), column > _naive_utc(start), column <= _naive_utc(end))
            .order_by(a.c.published.desc(), a.c.id.desc())
        )
        if by == "first":
            query = query.where(a.c.published > _naive_utc(start))
        with self.engine.connect() as conn:
            return self._with_categories(conn, conn.execute(query).all())

    def latest(self, category_slug: str | None, limit: int) -> list[Article]:
        """The newest live articles, of one category or of the whole site, newest first."""
        a, ac = articles_table, article_categories_table
        if category_slug is None:
            query = select(a).where(a.c.withdrawn.is_(False)).order_by(a.c.published.desc(), a.c.id.desc())
        else:
            # Order by the link table's copy of `published`, so the index gives the order and
            # only `limit` articles are read (ordering by the article's columns read them all).
            query = (
                select(a)
                .join(ac, ac.c.article_id == a.c.id)
                .where(ac.c.category_slug == category_slug)
                .order_by(ac.c.published.desc(), ac.c.article_id.desc())
            )
        query = query.limit(limit)
        with self.engine.connect() as conn:
            return self._with_categories(conn, conn.execute(query).all())

    @staticmethod
    def _with_categories(conn: Connection, rows: Sequence[Any]) -> list[Article]:
        ids = [r.id for r in rows]
        cats: dict[int, list[str]] = {i: [] for i in ids}
        ac = article_categories_table
        for start in range(0, len(ids), 500):
            query = (
                select(ac.c.article_id, ac.c.category_slug)
                .where(ac.c.article_id.in_(ids[start : start + 500]))
                .order_by(ac.c.article_id, ac.c.category_slug)
            )
            for r in conn.execute(query):
                cats[r.article_id].append(r.category_slug)
        return [_article(r, tuple(cats[r.id])) for r in rows]


_SEND_THREADS = threading.RLock()
TURNSTILE = "turnstile"  # the meta row that orders ingest commits and digest windows


def _turnstile(conn: Connection) -> None:
    """Take the turnstile row (a write: SQLite's write lock, a row lock elsewhere) until commit."""
    m = meta_table.c
    if not conn.execute(update(meta_table).where(m.key == TURNSTILE).values(value=m.value)).rowcount:
        conn.execute(insert(meta_table).values(key=TURNSTILE, value=""))


def _open_digest(conn: Connection, key: str, start: datetime, end: datetime, now: datetime) -> tuple[int, bool]:
    d = digests_table.c
    row = conn.execute(select(d.id).where(d.key == key)).first()
    if row is not None:
        return row.id, False
    values = {"key": key, "window_start": _naive_utc(start), "window_end": _naive_utc(end)}
    try:
        with conn.begin_nested():
            conn.execute(insert(digests_table).values(status="planning", created_at=_naive_utc(now), **values))
    except IntegrityError:  # another process opened it between our read and our insert
        return conn.execute(select(d.id).where(d.key == key)).scalar_one(), False
    return conn.execute(select(d.id).where(d.key == key)).scalar_one(), True


def _digest_row(r: Any) -> DigestRow:
    return DigestRow(r.id, r.key, _aware(r.window_start), _aware(r.window_end), r.status, _aware(r.created_at))


_d = deliveries_table.c
# Built once: the send loop runs these twice per message, and building a statement costs more
# than SQLite takes to commit it.
_MARK_TRIED = (
    update(deliveries_table)
    .where(_d.id == bindparam("b_id"))
    .values(status=bindparam("b_status"), updated_at=bindparam("b_at"), attempts=_d.attempts + 1)
)
_MARK_ANSWER = (
    update(deliveries_table)
    .where(_d.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        updated_at=bindparam("b_at"),
        last_error=func.coalesce(bindparam("b_error", type_=Text), _d.last_error),
        provider_id=func.coalesce(bindparam("b_provider", type_=String), _d.provider_id),
    )
)
_CLAIM = (
    update(deliveries_table)
    .where(_d.id == bindparam("b_id"), _d.status == bindparam("b_was"), _d.attempts == bindparam("b_attempts"))
    .values(status="sending", updated_at=bindparam("b_at"), attempts=_d.attempts + 1)
)
_UNCLAIM = (
    update(deliveries_table)
    .where(_d.id == bindparam("b_id"))
    .values(status=bindparam("b_status"), attempts=_d.attempts - 1, last_error=bindparam("b_error", type_=Text))
)
_SUBSCRIBER_BY_KEY = select(subscribers_table).where(subscribers_table.c.email_key == bindparam("b_key"))


class Ledger:
    """A kept connection; every call is its own short transaction, so each mark is durable
    when it returns and no read holds a snapshot between calls."""

    def __init__(self, engine: Engine) -> None:
        self.conn = engine.connect()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def mark(self, delivery_id: int, status: str, now: datetime, *, tried: bool = False,
             error: str | None = None, provider_id: str | None = None) -> None:  # fmt: skip
        at = _naive_utc(now)
        with self.conn.begin():
            if tried:
                self.conn.execute(_MARK_TRIED, {"b_id": delivery_id, "b_status": status, "b_at": at})
            if not tried or error is not None or provider_id is not None:
                cut = error[:2000] if error is not None else None
                params = {"b_id": delivery_id, "b_status": status, "b_at": at, "b_error": cut}
                self.conn.execute(_MARK_ANSWER, params | {"b_provider": provider_id})

    def claim(self, delivery: Delivery, now: datetime) -> bool:
        """Mark `delivery` sending, one more attempt, if it is still as it was read: False when
        another sender took it first, so no two processes ever send the same delivery."""
        params = {"b_id": delivery.id, "b_was": delivery.status, "b_attempts": delivery.attempts}
        with self.conn.begin():
            claimed = self.conn.execute(_CLAIM, params | {"b_at": _naive_utc(now)}).rowcount
        return claimed == 1

    def unclaim(self, delivery: Delivery, error: str) -> None:
        """Give a claimed delivery back as it was (the attempt did not count): the transport
        could not send anything at all."""
        with self.conn.begin():
            self.conn.execute(_UNCLAIM, {"b_id": delivery.id, "b_status": delivery.status, "b_error": error[:2000]})

    def subscriber(self, email_key: str) -> Subscriber | None:
        with self.conn.begin():
            row = self.conn.execute(_SUBSCRIBER_BY_KEY, {"b_key": email_key}).first()
        return _subscriber(row) if row else None

    def close(self) -> None:
        self.conn.close()


class StoreWriter:
    """Writes of one ingest pass, in one transaction. New and changed articles are written in
    batches of 500 or at commit, so a pass that reads slowly (a web crawl) takes the
    database's write lock (SQLite has one for the whole file) only for its writes, not from
    its first change to its commit, and digests and subscribers are not kept waiting."""

    BATCH = 500

    def __init__(self, engine: Engine, clock: Callable[[], datetime] | None = None) -> None:
        self.engine = engine
        self.clock = clock
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
            "first_seen": _naive_utc(now), "withdrawn": False,  # stamped again by flush()
        }  # fmt: skip
        self._pending.append((values, article))
        self._dirty.update((*article.categories, SITE_SCOPE))
        if len(self._pending) + len(self._updates) >= self.BATCH:
            self.flush()

    def flush(self) -> None:
        """Apply the pending changes, then insert the pending articles (one statement for all)
        and their category links. Changes go first: a renamed article frees its old key for a
        new article there."""
        assert self.conn is not None
        for row_id, values, linked in self._updates:
            self.conn.execute(update(articles_table).where(articles_table.c.id == row_id).values(**values))
            if linked is not None:
                self._unlink([row_id])
                self._link(row_id, linked)
        self._updates.clear()
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
            {"article_id": ids[article.key], "category_slug": slug, "published": _naive_utc(article.published)}
            for _values, article in self._pending
            for slug in article.categories
        ]
        if links:
            _insert_many(self.conn, article_categories_table, links)
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
        if len(self._pending) + len(self._updates) >= self.BATCH:
            self.flush()

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
        if len(self._pending) + len(self._updates) >= self.BATCH:
            self.flush()

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
        """When this pass's new articles are first seen: the time this transaction took the
        turnstile, just before its first insert, which it then holds to its commit. A
        scheduled digest reads the end of its window under the same turnstile, so it either
        ended before this (and the articles are in the next one) or waits for this commit (and
        they are in it): each new article lands in exactly one scheduled window, however long
        the ingest runs (see Store.open_scheduled_digest). New articles are inserted 500 at a
        time or at commit, so a short pass takes the turnstile only at its end. Without a
        clock, articles keep the time they were processed."""
        if self.clock is None:
            return None
        if self._first_seen is None:
            assert self.conn is not None
            _turnstile(self.conn)
            self._first_seen = _naive_utc(self.clock())
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
                    {"article_id": row_id, "category_slug": s, "published": _naive_utc(article.published)}
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
        "summary": article.summary,
        "content_html": article.content_html,
        "image": article.image,
        "tags": json.dumps(list(article.tags), ensure_ascii=False),
        "published": _naive_utc(article.published),
        "updated": _naive_utc(article.updated),
        "content_hash": article.content_hash,
    }


def _article(row: object, categories: tuple[str, ...]) -> Article:
    r = row  # a Row; attribute access by column name
    return Article(
        source=r.source,  # type: ignore[attr-defined]
        key=r.key,  # type: ignore[attr-defined]
        guid=r.guid,  # type: ignore[attr-defined]
        title=r.title,  # type: ignore[attr-defined]
        content_html=r.content_html,  # type: ignore[attr-defined]
        summary=r.summary,  # type: ignore[attr-defined]
        published=_aware(r.published),  # type: ignore[attr-defined]
        updated=_aware(r.updated),  # type: ignore[attr-defined]
        categories=categories,
        content_hash=r.content_hash,  # type: ignore[attr-defined]
        url=r.url,  # type: ignore[attr-defined]
        author=r.author,  # type: ignore[attr-defined]
        image=r.image,  # type: ignore[attr-defined]
        tags=tuple(json.loads(r.tags)),  # type: ignore[attr-defined]
    )


def _subscriber(row: Any) -> Subscriber:
    return Subscriber(
        email=row.email,
        name=row.name,
        categories=tuple(json.loads(row.categories)),
        status=SubscriberStatus(row.status),
        status_at=_aware(row.status_at),
        status_via=row.status_via,
        created_at=_aware(row.created_at),
        id=row.id,
    )


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # A digest waits for a running ingest's commit rather than failing with "database is locked".
    cursor.execute("PRAGMA busy_timeout=120000")
    cursor.close()
