"""The store's PostgreSQL advisory locks (send, scheduler, build) on a real server: held on a
connection of their own that is never left "idle in transaction", and a holder whose connection
the server ended (a restart, `idle_in_transaction_session_timeout`) finishes its work: the lock
went with the connection, and letting it go is not an error."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text

from publisher.store import Store
from publisher.store.locks import BUILD_LOCK, SEND_LOCK

pytestmark = pytest.mark.postgresql_only("PostgreSQL's advisory locks and its backends")

HOLDERS = """
    select a.pid, a.state from pg_locks l join pg_stat_activity a on a.pid = l.pid
    where l.locktype = 'advisory' and l.granted and l.objid = :key
      and l.database = (select oid from pg_database where datname = current_database())
"""


def holders(store: Store, key: int) -> list[tuple[int, str]]:
    with store.engine.connect() as conn:
        return [(row.pid, row.state) for row in conn.execute(text(HOLDERS), {"key": key})]


def terminate(store: Store, pid: int) -> None:
    """End the lock holder's backend, in this test's own database only."""
    with store.engine.connect() as conn:
        query = (
            "select pg_terminate_backend(pid) from pg_stat_activity where pid = :pid and datname = current_database()"
        )
        assert conn.execute(text(query), {"pid": pid}).scalar_one()


def test_a_held_lock_waits_idle_not_idle_in_a_transaction(store: Store) -> None:
    with store.build_lock() as got:
        assert got
        [(_pid, state)] = holders(store, BUILD_LOCK)
        assert state == "idle"  # no open transaction for the server's idle timeout to end
    assert holders(store, BUILD_LOCK) == []


def test_a_build_whose_lock_connection_was_ended_still_finishes(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="publisher.store.locks"), store.build_lock() as got:
        assert got
        [(pid, _state)] = holders(store, BUILD_LOCK)
        terminate(store, pid)
        store.set_meta("built", "yes")  # the build's work, on the store's other connections
    assert store.get_meta("built") == "yes"
    assert "could not be let go" in caplog.text
    with store.build_lock() as again:  # the lock went with the connection
        assert again


def test_a_send_whose_lock_connection_was_ended_still_finishes(store: Store) -> None:
    finished = False
    with store.send_lock():
        [(pid, _state)] = holders(store, SEND_LOCK)
        terminate(store, pid)
        finished = True
    assert finished
    with store.send_lock():
        assert len(holders(store, SEND_LOCK)) == 1
