"""Locks every process on a store sees, taken without waiting: one sender, one scheduler, one
build at a time; and the one order rows are locked in where several processes change them.

SQLite: an exclusive flock on a file beside the database, `<database>.<suffix>` (the kernel
releases it when the process ends, however it ends). PostgreSQL: a session advisory lock, one
number each, on a connection of its own kept while the lock is held, in autocommit so it is
never left "idle in transaction" (which `idle_in_transaction_session_timeout` ends). Should the
server end that connection all the same (a restart, `pg_terminate_backend`), the lock went with
it: the unlock's failure is logged, not raised, so the work done under the lock stands.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import ColumnElement, func, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)

SEND_LOCK, SCHEDULER_LOCK, BUILD_LOCK = 7202611, 7202612, 7202613  # PostgreSQL advisory lock keys


@contextmanager
def held_lock(engine: Engine, suffix: str, key: int) -> Iterator[bool]:
    """The store's lock `suffix` (SQLite) or `key` (PostgreSQL): True if this process got it."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        import fcntl

        with open(f"{url.database}.{suffix}", "a+b") as handle:
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
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            got = bool(conn.execute(text("select pg_try_advisory_lock(:key)"), {"key": key}).scalar_one())
            try:
                yield got
            finally:
                if got:
                    _unlock(conn, suffix, key)
        return
    yield True


def _unlock(conn: Connection, suffix: str, key: int) -> None:
    try:
        conn.execute(text("select pg_advisory_unlock(:key)"), {"key": key})
    except DBAPIError as exc:
        log.warning(
            "the %s (advisory lock %d) could not be let go: its connection is gone, and the lock with it (%s)",
            suffix, key, str(exc).splitlines()[0],
        )  # fmt: skip


def in_key_order(conn: Connection, key: ColumnElement[Any], where: ColumnElement[bool]) -> ColumnElement[bool]:
    """`where`, for an UPDATE or DELETE of rows other processes change too: on PostgreSQL, the
    rows it picks locked first in `key` order (`key IN (SELECT key ... ORDER BY key FOR
    UPDATE)`). A statement alone locks rows in the order its plan meets them; two transactions
    that lock the same rows in different orders can each hold one the other waits for, and one
    of them fails ("deadlock detected"). In one order, the second waits. Only the rows locked are
    changed. SQLite has one writer at a time: `where` as it is."""
    if conn.dialect.name == "sqlite":
        return where
    return key.in_(_locking(key, where).correlate(None))


def lock_in_key_order(conn: Connection, key: ColumnElement[Any], where: ColumnElement[bool]) -> None:
    """Lock now, in `conn`'s transaction, the rows `where` picks, in `key` order (PostgreSQL;
    nothing on SQLite): for a transaction that goes on to change them and rows of other tables,
    which every transaction changing both locks in the same order (docs/scale.md)."""
    if conn.dialect.name != "sqlite":
        conn.execute(select(func.count()).select_from(_locking(key, where).subquery())).scalar_one()


def _locking(key: ColumnElement[Any], where: ColumnElement[bool]) -> Any:
    table = key.table
    return select(key).where(where).order_by(key).with_for_update(of=table)
