"""The delivery ledger: one digest per cadence and window, one delivery per digest and subscriber."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from ..errors import StoreError
from ..model import CADENCES, WEEKLY, Delivery, cadence_key, first_scheduled
from .ledger_connection import Ledger
from .locks import SEND_LOCK, held_lock, in_key_order
from .retries import EARLIER, OPEN, due_clause
from .schema import aware_utc, deliveries_table, digests_table, naive_utc, subscribers_table, take_turnstile
from .subscribers import subscriber_from_row

# Defers the job of a digest's chunk (its number) in the connection's transaction (publisher.fanout).
QueueChunk = Callable[[Connection, int], None]
PLAN_BATCH = 1000  # deliveries written per transaction while planning (and subscribers read per query)


@dataclass(frozen=True, slots=True)
class DigestRow:
    id: int
    key: str
    start: datetime
    end: datetime
    status: str  # planning | sending | paused | done
    created_at: datetime
    cadence: str = WEEKLY  # whose digest: the readers of this cadence

    @property
    def by(self) -> str:
        """Scheduled digests pick by first ingest, explicit windows by publication date; the very
        first scheduled one by both (a new install does not mail its whole archive)."""
        key = self.key.removeprefix(cadence_key(self.cadence, ""))
        if key.startswith("scheduled-first:"):
            return "first"
        return "ingested" if key.startswith("scheduled:") else "published"


class LedgerStore:
    """The Store's delivery ledger: digests, their deliveries, and the send lock."""

    engine: Engine

    def open_digest(
        self, key: str, start: datetime, end: datetime, now: datetime, cadence: str = WEEKLY
    ) -> tuple[int, bool]:
        """(digest id, created now?) for a window key; the unique key makes a re-run create nothing."""
        with self.engine.begin() as conn:
            return _open_digest(conn, key, start, end, now, cadence)

    def open_scheduled_digest(
        self, clock: Callable[[], datetime], first_days: int, cadence: str = WEEKLY
    ) -> tuple[DigestRow, bool]:
        """Open the scheduled digest of `cadence` that ends now, after its previous one (each
        cadence's windows chain on their own).

        `now` is read while holding the turnstile row that every ingest takes before its first
        new article and holds to its commit, stamping them with the time it took it: an
        article is either stamped and committed before the window ends (and in this digest) or
        stamped after it (and in the next); an ingest that is still running cannot lose an
        article between two digests.
        """
        d = digests_table.c
        with self.engine.begin() as conn:
            take_turnstile(conn)
            end = clock().astimezone(UTC)  # to the microsecond, as first_seen (see digest.scheduled_window)
            previous = conn.execute(_last_scheduled_end(cadence)).scalar_one()
            if previous is None:  # the cadence's first: after another's last, or a new install's
                other = conn.execute(_last_scheduled_end(None)).scalar_one()
                key, start = first_scheduled(end, cadence, first_days, aware_utc(other) if other else None)
            else:
                key, start = cadence_key(cadence, f"scheduled:{end:%Y-%m-%dT%H:%M:%SZ}"), aware_utc(previous)
            digest_id, created = _open_digest(conn, key, start, end, clock(), cadence)
            row = conn.execute(select(digests_table).where(d.id == digest_id)).one()
        return _digest_row(row), created

    def plan_deliveries(
        self,
        digest_id: int,
        planned: Iterable[tuple[str, str]],
        now: datetime,
        *,
        chunk_size: int = PLAN_BATCH,
        queue: QueueChunk | None = None,
    ) -> None:
        """A pending delivery per (email key, message id) not yet planned for this digest, then
        the digest from `planning` to `sending`. `planned` is read lazily, `chunk_size` at a
        time, each chunk written in its own short transaction (the write lock is not held while
        the next chunk is read and rendered; memory holds one chunk, however many readers):
        a crash before the last commit leaves a digest still `planning`, planned again by the
        next run (the rows written stay, with their Message-IDs, and the rest are added); a
        crash after it leaves one that is resumed.

        With `queue` (fan-out), each chunk's rows carry its number, the next of the digest's,
        and `queue(conn, number)` defers its job in the same transaction: a chunk's rows and
        its job exist together or not at all. A digest whose every delivery was sent before
        its planning ended (fast workers) is `done` at once."""
        x, d = deliveries_table.c, digests_table.c
        at = naive_utc(now)
        number = None
        if queue is not None:
            with self.engine.connect() as conn:
                last = conn.execute(select(func.max(x.chunk)).where(x.digest_id == digest_id)).scalar_one()
            number = -1 if last is None else last
        for batch in _batches(planned, chunk_size):
            with self.engine.begin() as conn:
                keys = [key for key, _mid in batch]
                planned_before = select(x.email_key).where(x.digest_id == digest_id, x.email_key.in_(keys))
                have = set(conn.execute(planned_before).scalars())
                if number is not None and len(have) < len(batch):
                    number += 1
                rows = [
                    {"digest_id": digest_id, "email_key": key, "message_id": mid, "status": "pending",
                     "attempts": 0, "updated_at": at, "chunk": number}
                    for key, mid in batch if key not in have
                ]  # fmt: skip
                if rows:
                    conn.execute(insert(deliveries_table), rows)
                    if queue is not None and number is not None:
                        queue(conn, number)
        with self.engine.begin() as conn:
            conn.execute(
                update(digests_table).where(d.id == digest_id, d.status == "planning").values(status="sending")
            )
        if queue is not None:
            self.finish_digest(digest_id)

    def finish_digest(self, digest_id: int) -> bool:
        """The digest, if `sending`, is `done` when none of its deliveries is open; True when this
        call finished it. One statement: of two senders ending their last chunks at once, the
        one committing last sees the other's marks and finishes it."""
        x, d = deliveries_table.c, digests_table.c
        still_open = select(x.id).where(x.digest_id == digest_id, x.status.in_(OPEN)).exists()
        query = update(digests_table).where(d.id == digest_id, d.status == "sending", ~still_open)
        with self.engine.begin() as conn:
            return conn.execute(query.values(status="done")).rowcount == 1

    def hand_over(self, digest_id: int, chunk_size: int, queue: QueueChunk) -> int:
        """Defer a job for every chunk of the digest with an open delivery (fan-out resumes a
        digest this way), in one transaction; open deliveries planned for one process (no
        chunk: planned before fan-out was on) get chunks first, by id. How many chunks."""
        x = deliveries_table.c
        unchunked = and_(x.digest_id == digest_id, x.status.in_(OPEN), x.chunk.is_(None))
        with self.engine.begin() as conn:
            first = conn.execute(select(func.min(x.id)).where(unchunked)).scalar_one()
            if first is not None:
                last = conn.execute(select(func.max(x.chunk)).where(x.digest_id == digest_id)).scalar_one()
                base = 0 if last is None else last + 1
                numbered = base + (x.id - first) // chunk_size
                chunking = update(deliveries_table).where(in_key_order(conn, x.id, unchunked))
                conn.execute(chunking.values(chunk=numbered))
            query = select(x.chunk).where(x.digest_id == digest_id, x.status.in_(OPEN)).distinct().order_by(x.chunk)
            chunks = list(conn.execute(query).scalars())
            for chunk in chunks:
                queue(conn, chunk)
        return len(chunks)

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

    def next_deliveries(
        self,
        digest_id: int,
        limit: int,
        due: tuple[datetime, Sequence[timedelta]] | None = None,
        chunk: int | None = None,
    ) -> list[Delivery]:
        """Up to `limit` open deliveries, fewest attempts first (a retried one waits behind
        the rest), each with its subscriber read now, in one query. `due` (now, the waits of
        `retry_after`): only those whose wait after an error is over (see store.retries);
        `chunk`: of that chunk only (fan-out).

        The untried ones come first, in plan order, and are asked for alone while there are
        any: the status index holds a digest's pending rows in id order, so that query reads
        `limit` rows where the one over every open delivery sorted them all (at 100,000
        readers, 100,000 rows sorted for every 200 sent). Either way the answer starts the
        order of (attempts, id), so a run sends in the same order as with one query."""
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
            .where(x.digest_id == digest_id)
            .limit(limit)
        )
        if chunk is not None:
            query = query.where(x.chunk == chunk)
        untried = query.where(x.status == "pending", x.attempts == 0).order_by(x.id)  # always due
        with self.engine.connect() as conn:
            rows = conn.execute(untried).all()
            if not rows:
                query = query.where(x.status.in_(("pending", "sending"))).order_by(x.attempts, x.id)
                if due is not None:
                    query = query.where(due_clause(*due))
                rows = conn.execute(query).all()
        return [
            Delivery(
                r.d_id,
                r.d_key,
                r.d_message_id,
                r.d_status,
                r.d_attempts,
                subscriber_from_row(r) if r.email else None,
                aware_utc(r.d_updated_at),
                r.d_last_error is not None,
                (r.d_last_error or "").startswith(EARLIER),
            )  # fmt: skip
            for r in rows
        ]

    def mark_delivery(self, delivery_id: int, status: str, now: datetime, *, tried: bool = False,
                      error: str | None = None, provider_id: str | None = None) -> None:  # fmt: skip
        """Record a delivery's state in its own transaction: it must survive a crash right after."""
        with self.ledger() as ledger:
            ledger.mark(delivery_id, status, now, tried=tried, error=error, provider_id=provider_id)

    @contextmanager
    def send_lock(self) -> Iterator[None]:
        """Only one process plans or sends digests from a store at a time. SQLite: an exclusive
        lock on `<database>.send-lock` (the kernel drops it when the process dies, so a killed
        sender never blocks `digest resume`); PostgreSQL: a session advisory lock. Threads of
        one process (the scheduler's jobs) wait for each other instead."""
        with _SEND_THREADS, held_lock(self.engine, "send-lock", SEND_LOCK) as got:
            if not got:
                raise StoreError(
                    f"another process is sending a digest from this store ({_send_lock_name(self.engine)})",
                    "wait for it to finish, or stop it; then `publisher digest resume`",
                )
            yield

    def ledger(self) -> Ledger:
        """One connection for a send run: the marks and look-ups of the hot path."""
        return Ledger(self.engine)

    def last_scheduled_end(self, cadence: str | None = WEEKLY) -> datetime | None:
        """Where the next scheduled digest of `cadence` starts: the end of its last one
        (`None`: the latest end of any cadence's, where a cadence's first digest starts)."""
        with self.engine.connect() as conn:
            value = conn.execute(_last_scheduled_end(cadence)).scalar_one()
        return aware_utc(value) if value is not None else None

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

    def last_digest(self) -> DigestRow | None:
        """The newest digest, whatever its status (for /healthz: one row, not the history)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(digests_table).order_by(digests_table.c.id.desc()).limit(1)).first()
        return _digest_row(row) if row is not None else None

    def set_digest_status(self, digest_id: int, status: str, *, was: str | None = None) -> bool:
        """Set the digest's status (`was`: only if it is that now); False when it was not."""
        d = digests_table.c
        query = update(digests_table).where(d.id == digest_id).values(status=status)
        if was is not None:
            query = query.where(d.status == was)
        with self.engine.begin() as conn:
            return conn.execute(query).rowcount == 1

    def delivery_counts(self, digest_id: int) -> dict[str, int]:

        x = deliveries_table.c
        query = select(x.status, func.count()).where(x.digest_id == digest_id).group_by(x.status)
        with self.engine.connect() as conn:
            return {status: count for status, count in conn.execute(query).all()}


_SEND_THREADS = threading.RLock()


def _send_lock_name(engine: Engine) -> str:
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return f"{url.database}.send-lock is locked"
    return f"it holds advisory lock {SEND_LOCK}"


def _batches(items: Iterable[tuple[str, str]], size: int) -> Iterator[list[tuple[str, str]]]:
    batch: list[tuple[str, str]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _last_scheduled_end(cadence: str | None) -> Select[Any]:
    """The end of the cadence's last scheduled digest (None before its first); `None`: of any cadence's."""
    d = digests_table.c
    if cadence is None:
        each = [and_(d.key.like(cadence_key(c, "scheduled") + "%"), d.cadence == c) for c in CADENCES]
        return select(func.max(d.window_end)).where(or_(*each))
    scheduled = d.key.like(cadence_key(cadence, "scheduled") + "%")
    return select(func.max(d.window_end)).where(scheduled, d.cadence == cadence)


def _open_digest(
    conn: Connection, key: str, start: datetime, end: datetime, now: datetime, cadence: str
) -> tuple[int, bool]:
    d = digests_table.c
    row = conn.execute(select(d.id).where(d.key == key)).first()
    if row is not None:
        return row.id, False
    values = {"key": key, "window_start": naive_utc(start), "window_end": naive_utc(end), "cadence": cadence}
    try:
        with conn.begin_nested():
            conn.execute(insert(digests_table).values(status="planning", created_at=naive_utc(now), **values))
    except IntegrityError:  # another process opened it between our read and our insert
        return conn.execute(select(d.id).where(d.key == key)).scalar_one(), False
    return conn.execute(select(d.id).where(d.key == key)).scalar_one(), True


def _digest_row(r: Any) -> DigestRow:
    start, end, created = aware_utc(r.window_start), aware_utc(r.window_end), aware_utc(r.created_at)
    return DigestRow(r.id, r.key, start, end, r.status, created, r.cadence)
