"""The send loop's connection to the delivery ledger: `Ledger`, one kept connection whose marks,
claims and settles run as statements compiled once, on the driver's own cursor."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import String, Text, bindparam, case, func, literal, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from ..model import Delivery, Subscriber
from .retries import EARLIER
from .schema import deliveries_table, naive_utc, subscribers_table
from .subscribers import subscriber_from_row

_d = deliveries_table.c


class _Prepared:
    """A statement of the send loop, compiled once per dialect to its SQL text and run on the
    driver's own cursor: SQLAlchemy's execution path (parameters, result, events) costs more
    per message than SQLite takes to commit it. Only the marks, claims and settles go this way;
    their datetimes are converted as SQLAlchemy would (`_Driver.at`)."""

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._compiled: dict[str, tuple[str, dict[str, Any], tuple[str, ...] | None]] = {}

    def compiled(self, dialect: Any) -> tuple[str, dict[str, Any], tuple[str, ...] | None]:
        """(SQL, the statement's own values, the order of positional parameters or None)."""
        if dialect.name not in self._compiled:
            compiled = self.statement.compile(dialect=dialect)
            order = tuple(compiled.positiontup) if compiled.positional else None
            self._compiled[dialect.name] = (compiled.string, dict(compiled.params), order)
        return self._compiled[dialect.name]


class _Driver:
    """The kept connection's driver (sqlite3, psycopg): prepared statements in one transaction,
    its errors raised as SQLAlchemy's (what `store_failure` reads). A lost connection (a
    PostgreSQL restart) is invalidated, and the next call runs on a fresh one."""

    def __init__(self, conn: Connection) -> None:
        self.conn, self.dialect = conn, conn.dialect
        self.error: type[Exception] = self.dialect.loaded_dbapi.Error
        self.datetime = deliveries_table.c.updated_at.type.dialect_impl(self.dialect).bind_processor(self.dialect)

    def at(self, now: datetime) -> Any:
        """`now` as the driver takes an `updated_at` (SQLite: the text SQLAlchemy writes)."""
        value = naive_utc(now)
        return self.datetime(value) if self.datetime is not None else value

    def commit(self, statements: Sequence[tuple[_Prepared, dict[str, Any]]]) -> list[int]:
        """Run `statements` and commit: each one's rowcount."""
        counts: list[int] = []
        raw: Any = None
        cursor: Any = None
        sql, values = "", None
        try:
            raw = self.conn.connection.driver_connection  # a fresh one after an invalidation
            cursor = raw.cursor()
            for prepared, params in statements:
                sql, fixed, order = prepared.compiled(self.dialect)
                merged = fixed | params
                values = tuple(merged[name] for name in order) if order is not None else merged
                cursor.execute(sql, values)
                counts.append(cursor.rowcount)
            raw.commit()
        except self.error as exc:
            lost = self._rolled_back(exc, raw, cursor)
            raise DBAPIError.instance(sql, values, exc, self.error, connection_invalidated=lost) from exc
        finally:
            if cursor is not None:
                try:
                    cursor.close()
                except self.error:
                    pass  # a lost connection: invalidated already
        return counts

    def _rolled_back(self, exc: Exception, raw: Any, cursor: Any) -> bool:
        """Roll back after `exc`; True when the connection is lost (then invalidated)."""
        lost = raw is None or self.dialect.is_disconnect(cast(Any, exc), raw, cursor)
        if not lost:
            try:
                raw.rollback()
            except self.error:
                lost = True
        if lost:
            self.conn.invalidate(exc)
        return lost


# Built once: the send loop runs these twice per message.
_MARK_TRIED = _Prepared(
    update(deliveries_table)
    .where(_d.id == bindparam("b_id"))
    .values(status=bindparam("b_status"), updated_at=bindparam("b_at"), attempts=_d.attempts + 1)
)
_MARK_ANSWER = _Prepared(
    update(deliveries_table)
    .where(_d.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        updated_at=bindparam("b_at"),
        last_error=func.coalesce(bindparam("b_error", type_=Text), _d.last_error),
        provider_id=func.coalesce(bindparam("b_provider", type_=String), _d.provider_id),
    )
)
_CLAIM = _Prepared(
    update(deliveries_table)
    .where(_d.id == bindparam("b_id"), _d.status == bindparam("b_was"), _d.attempts == bindparam("b_attempts"))
    .values(status="sending", updated_at=bindparam("b_at"), attempts=_d.attempts + 1)
)
_SETTLE = _Prepared(
    update(deliveries_table)
    .where(_d.id == bindparam("b_id"), _d.status == "sending", _d.attempts == bindparam("b_attempts"))
    .values(status="uncertain", updated_at=bindparam("b_at"), last_error=bindparam("b_error", type_=Text))
)
_UNCLAIM = _Prepared(  # keeps EARLIER, which says a success now may be a second copy
    update(deliveries_table)
    .where(_d.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        attempts=_d.attempts - 1,
        last_error=case(
            (_d.last_error.like(EARLIER + "%"), literal(EARLIER, Text) + bindparam("b_error", type_=Text)),
            else_=bindparam("b_error", type_=Text),
        ),
    )
)
_SUBSCRIBER_BY_KEY = select(subscribers_table).where(subscribers_table.c.email_key == bindparam("b_key"))


class Ledger:
    """A kept connection; every call is its own short transaction, so each mark is durable
    when it returns and no read holds a snapshot between calls; but a mark made `later` (a
    success, in the send loop) waits for the next call and is committed in its transaction:
    one commit per message instead of two (see delivery.Sender.run). `flush` commits it alone."""

    def __init__(self, engine: Engine) -> None:
        self.conn = engine.connect()
        self._driver = _Driver(self.conn)
        self._later: list[tuple[_Prepared, dict[str, Any]]] = []  # statements for the next transaction

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def mark(self, delivery_id: int, status: str, now: datetime, *, tried: bool = False,
             error: str | None = None, provider_id: str | None = None, later: bool = False) -> None:  # fmt: skip
        """Record a delivery's state; `later`: in the transaction of the next call (the next
        claim), or of `flush`, whichever comes first."""
        at = self._driver.at(now)
        if tried:
            self._later.append((_MARK_TRIED, {"b_id": delivery_id, "b_status": status, "b_at": at}))
        if not tried or error is not None or provider_id is not None:
            cut = error[:2000] if error is not None else None
            params = {"b_id": delivery_id, "b_status": status, "b_at": at, "b_error": cut, "b_provider": provider_id}
            self._later.append((_MARK_ANSWER, params))
        if not later:
            self.flush()

    def flush(self) -> None:
        """Commit the marks made `later`, if any."""
        if self._later:
            self._commit(None, {})

    def _commit(self, statement: _Prepared | None, params: dict[str, Any]) -> int:
        """The marks made `later`, then `statement`, in one transaction: `statement`'s rowcount."""
        counts = self._commit_all([(statement, params)] if statement is not None else [])
        return counts[-1] if counts else 0

    def _commit_all(self, statements: list[tuple[_Prepared, dict[str, Any]]]) -> list[int]:
        """The marks made `later`, then `statements`, in one transaction: the rowcount of each
        of `statements`. They run in delivery id order (those of one delivery in the order
        given), the order every transaction that changes several deliveries locks them in
        (locks.in_key_order): a batch's claims come fewest attempts first, and `digest
        retry` beside them deadlocked. When it fails, the marks wait again for the next call
        (`statements` are not kept)."""
        later, self._later = self._later, []
        every = later + statements
        order = sorted(range(len(every)), key=lambda n: every[n][1]["b_id"])
        try:
            done = self._driver.commit([every[n] for n in order])
        except BaseException:  # a database error, or Ctrl-C between execute and commit
            self._later = later + self._later  # rolled back: the next call, or the last flush, commits them
            raise
        counts = [0] * len(every)
        for n, count in zip(order, done, strict=True):
            counts[n] = count
        return counts[len(later) :]

    def claim(self, delivery: Delivery, now: datetime) -> bool:
        """Mark `delivery` sending, one more attempt, if it is still as it was read: False when
        another sender took it first, so no two processes ever send the same delivery."""
        params = {"b_id": delivery.id, "b_was": delivery.status, "b_attempts": delivery.attempts}
        return self._commit(_CLAIM, params | {"b_at": self._driver.at(now)}) == 1

    def claim_all(self, deliveries: Sequence[Delivery], now: datetime) -> list[bool]:
        """`claim` for each of `deliveries`, in one transaction (one provider call's messages):
        whether each was still as it was read, so it is this sender's to send."""
        at = self._driver.at(now)
        claims = [(_CLAIM, {"b_id": d.id, "b_was": d.status, "b_attempts": d.attempts, "b_at": at}) for d in deliveries]
        return [count == 1 for count in self._commit_all(claims)]

    def settle_unanswered(self, delivery: Delivery, now: datetime, error: str) -> bool:
        """Mark a `sending` delivery whose try was never answered (its process stopped mid-send)
        `uncertain`, if it is still as it was read: it may have gone out, so it is not sent again."""
        at = self._driver.at(now)
        return self._commit(_SETTLE, {"b_id": delivery.id, "b_attempts": delivery.attempts, "b_at": at,
                                      "b_error": error[:2000]}) == 1  # fmt: skip

    def unclaim(self, delivery: Delivery, error: str) -> None:
        """Give a claimed delivery back as it was (the attempt did not count): the transport
        could not send anything at all. A delivery put back after a doubt keeps saying so."""
        self._commit(_UNCLAIM, {"b_id": delivery.id, "b_status": delivery.status, "b_error": error[:2000]})

    def subscriber(self, email_key: str) -> Subscriber | None:
        self.flush()
        with self.conn.begin():
            row = self.conn.execute(_SUBSCRIBER_BY_KEY, {"b_key": email_key}).first()
        return subscriber_from_row(row) if row else None

    def close(self) -> None:
        self.conn.close()
